//! The run directory, the contract between a run and everything that reads it:
//!
//! ```text
//! RUN_DIR/config.json                  effective config of the run
//! RUN_DIR/events.jsonl                 every event, one JSON object a line
//! RUN_DIR/status/training_status.json  current status, replaced atomically
//! RUN_DIR/training_output.log          the lines headless mode prints
//! ```

use std::borrow::Cow;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::events::{Event, RunStatus, SCHEMA_VERSION, StepMetrics};
use crate::runfile;

pub const EVENTS_FILE: &str = "events.jsonl";
pub const STATUS_FILE: &str = "status/training_status.json";
pub const LOG_FILE: &str = "training_output.log";
pub const CONFIG_FILE: &str = "config.json";

/// Creates `root` and the folders above it that are missing, each with mode
/// 0755 less the umask: never writable by others (the control folder's
/// checks refuse a run directory that others could write).
pub fn create_dirs(root: &Path) -> io::Result<()> {
    std::os::unix::fs::DirBuilderExt::mode(fs::DirBuilder::new().recursive(true), 0o755)
        .create(root)
}

/// One line of events.jsonl: the event with its schema version and time.
#[derive(Serialize)]
struct EventRecord<'a> {
    v: u32,
    /// RFC 3339, UTC, milliseconds.
    time: String,
    #[serde(flatten)]
    event: &'a Event,
}

/// The events.jsonl line of `event` written at `time`, without its newline:
/// at most [`runfile::MAX_EVENT_LINE`] bytes, which readers take whole (a
/// longer event has its longest texts cut, each marked, until it fits).
#[must_use]
pub fn event_line(event: &Event, time: SystemTime) -> Vec<u8> {
    recorded(event, time).1
}

/// `event` as it is recorded at `time`, and its line: itself, or, when its
/// line would be longer than [`runfile::MAX_EVENT_LINE`] (a model's output
/// is as long as `eval.max_new_tokens` lets it be), a copy with its longest
/// texts cut, each marked, until it fits. The status folds what was
/// recorded.
fn recorded(event: &Event, time: SystemTime) -> (Cow<'_, Event>, Vec<u8>) {
    let line = |event: &Event| {
        let record = EventRecord {
            v: SCHEMA_VERSION,
            time: humantime::format_rfc3339_millis(time).to_string(),
            event,
        };
        serde_json::to_vec(&record).expect("an event serialises")
    };
    let mut written = line(event);
    if written.len() <= runfile::MAX_EVENT_LINE {
        return (Cow::Borrowed(event), written);
    }
    let mut cut = event.clone();
    while written.len() > runfile::MAX_EVENT_LINE {
        let Some(longest) = texts_mut(&mut cut)
            .into_iter()
            .max_by_key(|text| text.len())
        else {
            break;
        };
        let keep = longest.floor_char_boundary(longest.len() / 2);
        let dropped = longest.len() - keep;
        longest.truncate(keep);
        let _ = write!(longest, "... ({dropped} more bytes not recorded)");
        let shorter = line(&cut);
        // The long part is elsewhere (texts too short to cut further): the
        // line stays long, and readers skip it and say so.
        if shorter.len() >= written.len() {
            break;
        }
        written = shorter;
    }
    (Cow::Owned(cut), written)
}

/// The texts of an event that can be long: a model's output and what it
/// was given, and messages.
fn texts_mut(event: &mut Event) -> Vec<&mut String> {
    match event {
        Event::GenerationStarted(start) => vec![&mut start.prompt, &mut start.golden],
        Event::GenerationProgress { text, .. } => vec![text],
        Event::Sample(sample) => vec![&mut sample.prompt, &mut sample.golden, &mut sample.output],
        Event::Warning { message, .. }
        | Event::Failed { message, .. }
        | Event::CommandAck { message, .. }
        | Event::Control { message, .. } => vec![message],
        _ => Vec::new(),
    }
}

/// Writes events, status and log lines of one run.
pub struct RunDir {
    root: PathBuf,
    events: LineFile,
    log: LineFile,
    status: RunStatus,
}

impl RunDir {
    /// Opens the run directory for writing, creating it if needed. Earlier
    /// events and log lines are kept: a resumed run appends to them.
    pub fn open(root: &Path, config: &Config, status: RunStatus) -> Result<Self> {
        let status_dir = root.join("status");
        create_dirs(&status_dir)
            .map_err(Error::io("cannot create the run directory", &status_dir))?;
        let events = LineFile::open(&root.join(EVENTS_FILE))?;
        let log = LineFile::open(&root.join(LOG_FILE))?;
        let config_json = serde_json::to_vec_pretty(config).expect("a validated config serialises");
        let config_path = root.join(CONFIG_FILE);
        write_atomically(&config_path, &config_json)
            .map_err(Error::io("cannot write the config", &config_path))?;
        let mut run_dir = Self {
            root: root.to_owned(),
            events,
            log,
            status,
        };
        let status_path = root.join(STATUS_FILE);
        run_dir
            .write_status()
            .map_err(Error::io("cannot write the status file", &status_path))?;
        Ok(run_dir)
    }

    /// Folds the event into the status, appends it to events.jsonl and, when
    /// it changes what the status file shows, rewrites that too. The status
    /// in memory follows every event even when the disk refuses a write.
    pub fn record(&mut self, event: &Event) -> io::Result<()> {
        let (event, line) = recorded(event, SystemTime::now());
        let shown = !matches!(
            *event,
            Event::GenerationStarted(_) | Event::GenerationProgress { .. }
        );
        if shown {
            self.status.apply(&event);
        }
        let appended = self.events.append(&line);
        let status = if shown { self.write_status() } else { Ok(()) };
        appended.and(status)
    }

    /// Appends one line to training_output.log.
    pub fn log_line(&mut self, line: &str) -> io::Result<()> {
        self.log.append(line.as_bytes())
    }

    /// The GPUs' latest readings, written with the next status change.
    pub fn set_gpus(&mut self, gpus: Vec<crate::events::GpuStatus>) {
        self.status.gpus = gpus;
    }

    #[must_use]
    pub fn status(&self) -> &RunStatus {
        &self.status
    }

    fn write_status(&mut self) -> io::Result<()> {
        self.status.updated_at = now_rfc3339();
        let json = serde_json::to_vec_pretty(&self.status).expect("the status serialises");
        write_atomically(&self.root.join(STATUS_FILE), &json)
    }
}

/// A file of whole lines, appended to: a line the disk takes only in part
/// is cut off again, so the file never ends mid-line, and a file that does
/// (left by a process killed mid-write) gets its line ended first.
struct LineFile {
    file: File,
    /// Bytes of whole lines in the file.
    len: u64,
    /// A partial line could not be cut off: the next line starts a new one.
    broken: bool,
}

impl LineFile {
    fn open(path: &Path) -> Result<Self> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = open_own(
            path,
            OpenOptions::new().create(true).read(true).append(true),
            0o644,
        )?;
        let mut len = file
            .metadata()
            .map_err(Error::io("cannot read", path))?
            .len();
        if len > 0 {
            let mut last = [0u8];
            file.seek(SeekFrom::Start(len - 1))
                .and_then(|_| file.read_exact(&mut last))
                .map_err(Error::io("cannot read", path))?;
            if last[0] != b'\n' {
                file.write_all(b"\n")
                    .map_err(Error::io("cannot end the last line of", path))?;
                len += 1;
            }
        }
        Ok(Self {
            file,
            len,
            broken: false,
        })
    }

    fn append(&mut self, line: &[u8]) -> io::Result<()> {
        let mut whole = Vec::with_capacity(line.len() + 2);
        if self.broken {
            whole.push(b'\n');
        }
        whole.extend_from_slice(line);
        whole.push(b'\n');
        // Another program may have cut the file (logrotate's copytruncate).
        let start = self.file.metadata().map_or(self.len, |m| m.len());
        match self.file.write_all(&whole) {
            Ok(()) => {
                self.len = start + whole.len() as u64;
                self.broken = false;
                Ok(())
            }
            Err(err) => {
                self.broken = self.file.set_len(start).is_err();
                self.len = start;
                Err(err)
            }
        }
    }
}

/// Opens a file of the run's own (a log, the lock) with `options`, made
/// with mode `mode` less the umask: never through a link, never a FIFO or
/// a device (a write to a FIFO that nobody reads would hold the run up),
/// only a regular file of this user; a file others could write to, left by
/// an older run, is made no more open than `mode`.
pub fn open_own(path: &Path, options: &mut OpenOptions, mode: u32) -> Result<File> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    let refuse = |what: String| {
        Error::Usage(format!(
            "{}: {what}; a run writes this file itself: remove it, or pick another run \
             directory",
            path.display()
        ))
    };
    let file = options
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|err| match err.raw_os_error() {
            Some(libc::ELOOP) => refuse("is a symbolic link".into()),
            Some(libc::ENXIO) => refuse("is a FIFO (named pipe), not a regular file".into()),
            _ => Error::io("cannot open", path)(err),
        })?;
    let meta = file.metadata().map_err(Error::io("cannot read", path))?;
    if let Some(kind) = runfile::kind_of(&meta) {
        return Err(refuse(format!("is {kind}, not a regular file")));
    }
    let (me, _) = crate::process::effective_ids()?;
    if meta.uid() != me {
        return Err(refuse(format!(
            "belongs to user {}, not to you ({me})",
            meta.uid()
        )));
    }
    if meta.mode() & 0o777 & !mode != 0 {
        file.set_permissions(fs::Permissions::from_mode(meta.mode() & 0o777 & mode))
            .map_err(Error::io("cannot make it the owner's alone", path))?;
    }
    Ok(file)
}

/// Replaces `path` with `contents` so that a reader sees the old file or the
/// new one, never a mix: write a temporary file beside it, then rename.
pub fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut temp_name = path.file_name().unwrap_or_default().to_os_string();
    temp_name.push(format!(".tmp.{}", std::process::id()));
    let temp = path.with_file_name(temp_name);
    let written = create_file(&temp).and_then(|mut file| {
        file.write_all(contents)?;
        file.write_all(b"\n")
    });
    let placed = written.and_then(|()| fs::rename(&temp, path));
    if placed.is_err() {
        let _ = fs::remove_file(&temp);
    }
    placed
}

/// Creates a new file for a run directory, in place of anything at `path`
/// (a link there is replaced, not followed): mode 0644 less the umask, so
/// never writable by others whatever the umask.
pub fn create_file(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
        _ => {}
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

#[must_use]
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// Reads events.jsonl as it grows: whole lines only (a line still being
/// written waits for its end), garbage lines counted and skipped. The file
/// stays open between reads; it is opened again only when the path names
/// another file (the run directory was replaced) or the file shrank.
pub struct EventTail {
    path: PathBuf,
    file: Option<File>,
    offset: u64,
    partial: Vec<u8>,
    /// The bytes up to the next newline belong to an over-long line.
    skipping: bool,
    /// Lines that were not events.
    pub garbage: u64,
    /// Lines longer than [`runfile::MAX_EVENT_LINE`], skipped unread.
    pub overlong: u64,
    /// The newest protocol version of the lines left out for being newer
    /// than this trainui reads.
    pub newer: Option<u64>,
    /// Times the file was found replaced or cut shorter and read again
    /// from its start: what was read before belongs to another run.
    pub restarts: u64,
    /// Why the file cannot be read (not a regular file, no permission),
    /// while that lasts.
    pub problem: Option<String>,
}

/// Only the version of an events.jsonl line.
#[derive(Deserialize)]
struct LineVersion {
    #[serde(default)]
    v: u64,
}

/// Lines in one read from which parsing is split over two threads.
const PARALLEL_LINES: usize = 8192;

/// What a run of events.jsonl lines holds.
#[derive(Default)]
struct Lines {
    /// The events, each with the time written on its line (now, when not
    /// asked for or not readable).
    events: Vec<(Event, SystemTime)>,
    /// Lines that were not events.
    garbage: u64,
    /// The newest protocol version of the lines left out for being newer
    /// than this trainui reads.
    newer: Option<u64>,
}

impl Lines {
    fn read(lines: &[&[u8]], timed: bool) -> Self {
        let mut read = Self {
            events: Vec::with_capacity(lines.len()),
            ..Self::default()
        };
        for line in lines {
            if let Some(version) = newer_version(line) {
                read.newer = read.newer.max(Some(version));
                continue;
            }
            match parse_line(line) {
                Some(event) => {
                    let at = if timed { line_time(line) } else { None };
                    read.events
                        .push((event, at.unwrap_or_else(SystemTime::now)));
                }
                None => read.garbage += 1,
            }
        }
        read
    }
}

/// An events.jsonl line as an event. Step lines, nearly all of a long
/// run's history, are read straight into their metrics when they start as
/// trainui and the Python package write them (`{"v":N,"time":"…","type":
/// "step",`): the tagged enum's generic path buffers every field first and
/// costs three times as much.
fn parse_line(line: &[u8]) -> Option<Event> {
    // One check of the whole line is cheaper than serde_json's of each
    // string in it.
    let line = std::str::from_utf8(line).ok()?;
    let is_step = written_time(line.as_bytes())
        .is_some_and(|(_, rest)| rest.starts_with(br#","type":"step","#));
    if is_step && let Ok(metrics) = serde_json::from_str::<StepMetrics>(line) {
        return Some(Event::Step(metrics));
    }
    serde_json::from_str::<Event>(line).ok()
}

/// The time string of a line that starts as trainui writes it
/// (`{"v":N,"time":"…"`), and what follows its closing quote.
fn written_time(line: &[u8]) -> Option<(&str, &[u8])> {
    let rest = line.strip_prefix(br#"{"v":"#)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let rest = rest[digits..].strip_prefix(br#","time":""#)?;
    let end = rest.iter().position(|&b| b == b'"')?;
    Some((std::str::from_utf8(&rest[..end]).ok()?, &rest[end + 1..]))
}

/// The time an events.jsonl line was written, if it says.
fn line_time(line: &[u8]) -> Option<SystemTime> {
    if let Some((time, _)) = written_time(line) {
        return humantime::parse_rfc3339_weak(time).ok();
    }
    let time = serde_json::from_slice::<LineTime>(line).ok()?.time?;
    humantime::parse_rfc3339_weak(&time).ok()
}

/// Only the time of an events.jsonl line.
#[derive(Deserialize)]
struct LineTime {
    #[serde(default)]
    time: Option<String>,
}

impl EventTail {
    /// Reads `RUN_DIR/events.jsonl` from byte `offset` on (0: the whole run).
    #[must_use]
    pub fn new(run_dir: &Path, offset: u64) -> Self {
        Self {
            path: run_dir.join(EVENTS_FILE),
            file: None,
            offset,
            partial: Vec::new(),
            skipping: false,
            garbage: 0,
            overlong: 0,
            newer: None,
            restarts: 0,
            problem: None,
        }
    }

    /// Warns on stderr of the lines that were skipped: longer than any
    /// event, or not events at all.
    pub fn warn_skipped(&self) {
        if self.overlong > 0 {
            crate::process::say(format!(
                "warning: {}: skipped {} line{} longer than {} bytes, more than any event",
                self.path.display(),
                self.overlong,
                if self.overlong == 1 { "" } else { "s" },
                runfile::MAX_EVENT_LINE
            ));
        }
        if self.garbage > 0 {
            let what = if self.garbage == 1 {
                "line that is not a trainui event"
            } else {
                "lines that are not trainui events"
            };
            crate::process::say(format!(
                "warning: {}: skipped {} {what}",
                self.path.display(),
                self.garbage
            ));
        }
    }

    /// Bytes of the file read so far (whole lines and the partial one).
    #[must_use]
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The events appended since the last call (none while the file does not
    /// exist yet). At most `max_bytes` are read at a time.
    pub fn read_new(&mut self, max_bytes: u64) -> Vec<Event> {
        self.read_lines(max_bytes, false)
            .into_iter()
            .map(|(event, _)| event)
            .collect()
    }

    /// As [`Self::read_new`], each event with the time of its line (now,
    /// for a line without a readable time).
    pub fn read_new_timed(&mut self, max_bytes: u64) -> Vec<(Event, SystemTime)> {
        self.read_lines(max_bytes, true)
    }

    fn read_lines(&mut self, max_bytes: u64, timed: bool) -> Vec<(Event, SystemTime)> {
        if self.read_chunk(max_bytes) == 0 && self.replaced() {
            // Start over on the file the path names now.
            self.file = None;
            self.offset = 0;
            self.partial.clear();
            self.skipping = false;
            self.restarts += 1;
            self.read_chunk(max_bytes);
        }
        if self.skipping {
            // The rest of an over-long line, up to its end.
            match memchr::memchr(b'\n', &self.partial) {
                Some(newline) => {
                    self.partial.drain(..=newline);
                    self.skipping = false;
                }
                None => self.partial.clear(),
            }
        }
        let Some(end) = memchr::memrchr(b'\n', &self.partial) else {
            if self.partial.len() > runfile::MAX_EVENT_LINE {
                // Never held whole: dropped now, and up to its end later.
                self.partial.clear();
                self.skipping = true;
                self.overlong += 1;
            }
            return Vec::new();
        };
        let mut lines = Vec::new();
        let mut start = 0;
        for newline in memchr::memchr_iter(b'\n', &self.partial[..=end]) {
            let line = &self.partial[start..newline];
            start = newline + 1;
            if line.len() > runfile::MAX_EVENT_LINE {
                self.overlong += 1;
            } else if !line.iter().all(u8::is_ascii_whitespace) {
                lines.push(line);
            }
        }
        // A long history is parsed on two threads: a week-long run's first
        // screen waits on this.
        let (mut read, later) = if lines.len() >= PARALLEL_LINES {
            let (first, second) = lines.split_at(lines.len() / 2);
            std::thread::scope(|scope| {
                let later = scope.spawn(|| Lines::read(second, timed));
                let read = Lines::read(first, timed);
                (read, later.join().unwrap_or_default())
            })
        } else {
            (Lines::read(&lines, timed), Lines::default())
        };
        read.events.extend(later.events);
        self.garbage += read.garbage + later.garbage;
        self.newer = self.newer.max(read.newer).max(later.newer);
        let events = read.events;
        self.partial.drain(..=end);
        events
    }

    /// Appends up to `max_bytes` past the offset, from the open file
    /// (opened if it is not yet), to the partial line; returns how many.
    fn read_chunk(&mut self, max_bytes: u64) -> usize {
        use std::io::{Read, Seek, SeekFrom};
        if self.file.is_none() {
            match runfile::open(&self.path) {
                Ok(file) => {
                    self.file = Some(file);
                    self.problem = None;
                }
                Err(runfile::ReadError::Missing) => self.problem = None,
                Err(err) => self.problem = Some(err.at(&self.path)),
            }
        }
        let Some(file) = self.file.as_mut() else {
            return 0;
        };
        if file.seek(SeekFrom::Start(self.offset)).is_err() {
            return 0;
        }
        let before = self.partial.len();
        // A failed read keeps what it had read: whole lines are taken later.
        let _ = file.take(max_bytes).read_to_end(&mut self.partial);
        let read = self.partial.len() - before;
        self.offset += read as u64;
        read
    }

    /// The open file is no longer the one to follow: the path names another
    /// file, or the file is shorter than what was read of it.
    fn replaced(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        // Nothing open, nothing read that another file could replace.
        let Some(open) = self.file.as_ref().and_then(|f| f.metadata().ok()) else {
            return false;
        };
        if open.len() < self.offset {
            return true;
        }
        fs::metadata(&self.path).is_ok_and(|now| (now.dev(), now.ino()) != (open.dev(), open.ino()))
    }
}

/// The error for a run directory without an events.jsonl (nothing there,
/// or a link to nothing), if it has none; `fix` ends the message.
#[must_use]
pub fn missing_events(run_dir: &Path, fix: &str) -> Option<Error> {
    let path = run_dir.join(EVENTS_FILE);
    if path.exists() {
        return None;
    }
    Some(Error::Usage(match std::fs::read_link(&path) {
        Ok(target) => format!(
            "{}: is a link to {}, which does not exist; {fix}",
            path.display(),
            target.display()
        ),
        Err(_) => format!("{}: no events.jsonl here; {fix}", run_dir.display()),
    }))
}

/// The error for an events.jsonl that is there but cannot be read:
/// `problem` names the file and why ([`EventTail::problem`]); `command`
/// is the command that needs it.
#[must_use]
pub fn unreadable_events(problem: &str, command: &str) -> Error {
    Error::Usage(format!(
        "{problem}; {command} needs a readable events.jsonl: fix that file, or give another \
         run directory"
    ))
}

/// The version of an events.jsonl line when it is newer than this trainui
/// reads (its fields may not mean what they say here). Lines start with
/// `{"v":N,` as trainui and the Python package write them, which is read
/// without parsing the line twice; other lines are parsed for `v`.
fn newer_version(line: &[u8]) -> Option<u64> {
    let version = match line.strip_prefix(br#"{"v":"#) {
        Some(rest) => {
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?
        }
        None => serde_json::from_slice::<LineVersion>(line).ok()?.v,
    };
    (version > u64::from(SCHEMA_VERSION)).then_some(version)
}

/// Reads the status file of a run directory (see [`read_status_fields`]).
pub fn read_status(root: &Path) -> Result<RunStatus> {
    read_status_fields(root).map(|(status, _)| status)
}

/// A field of a status file whose value this trainui cannot take.
#[derive(Debug, Clone, PartialEq)]
pub struct UnknownField {
    /// The field's name, as the file spells it (`current_step`).
    pub name: String,
    /// What is wrong with it, at its place (`current_step: invalid value ...`).
    pub why: String,
}

/// Reads the status file of a run directory: a regular file of at most
/// [`runfile::STATUS_LIMIT`] bytes. A field whose value this trainui cannot
/// take (a step beyond 2^64, a word it does not know) is read as it is in
/// a status that knows nothing, and named in the list returned beside the
/// status, for its readers to show as unknown; the others are kept.
pub fn read_status_fields(root: &Path) -> Result<(RunStatus, Vec<UnknownField>)> {
    let path = root.join(STATUS_FILE);
    let bytes = runfile::read(&path, runfile::STATUS_LIMIT).map_err(|err| {
        Error::Usage(format!(
            "{}: cannot read the status file: {err}; is this a trainui run directory?",
            path.display()
        ))
    })?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|err| {
        Error::Input(format!(
            "{}: not a trainui status file: {err}",
            path.display()
        ))
    })?;
    if let Some(version) = value["schema_version"]
        .as_u64()
        .filter(|&v| v > u64::from(SCHEMA_VERSION))
    {
        return Err(Error::Input(format!(
            "{}: written by a newer trainui (protocol {version}); this one reads up to \
             protocol {SCHEMA_VERSION}: update trainui to read this run",
            path.display()
        )));
    }
    status_from_value(value).map_err(|err| {
        Error::Input(format!(
            "{}: not a trainui status file: {err}",
            path.display()
        ))
    })
}

/// A status from its JSON, each field that does not read replaced by its
/// value in a status that knows nothing (`pid` 0: no process), and named.
/// Missing fields and what is not an object are refused whole.
fn status_from_value(
    mut value: serde_json::Value,
) -> Result<(RunStatus, Vec<UnknownField>), String> {
    let mut unknown = RunStatus::new(String::new(), 0);
    unknown.pid = 0;
    let unknown = serde_json::to_value(unknown).expect("a status serialises");
    let mut bad = Vec::new();
    loop {
        let err = match serde_path_to_error::deserialize::<_, RunStatus>(&value) {
            Ok(status) => return Ok((status, bad)),
            Err(err) => err,
        };
        let field = err.path().iter().next().and_then(|segment| match segment {
            serde_path_to_error::Segment::Map { key } => Some(key.clone()),
            _ => None,
        });
        let (Some(field), Some(fields)) = (field, value.as_object_mut()) else {
            return Err(err.into_inner().to_string());
        };
        let Some(replacement) = unknown.get(&field).cloned() else {
            return Err(err.into_inner().to_string());
        };
        if fields.get(&field) == Some(&replacement) {
            return Err(err.into_inner().to_string());
        }
        let at = err.path().to_string();
        let why = format!("{at}: {}", err.into_inner());
        fields.insert(field.clone(), replacement);
        bad.push(UnknownField { name: field, why });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::RunState;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn step(step: u64) -> Event {
        crate::events::examples::step(step, 1_000_000, 1.0 / (step as f64 + 1.0))
    }

    #[test]
    fn step_lines_read_the_same_by_the_short_path_and_the_generic_one() {
        let mut with_norm = step(7);
        if let Event::Step(m) = &mut with_norm {
            m.grad_norm = Some(2.5);
            m.loss = f64::NAN;
        }
        let written = [
            // As trainui and the Python package write them.
            String::from_utf8(event_line(&step(3), SystemTime::UNIX_EPOCH)).unwrap(),
            String::from_utf8(event_line(&with_norm, SystemTime::UNIX_EPOCH)).unwrap(),
            // Another writer's field order: the generic path.
            r#"{"type":"step","v":3,"step":9,"max_steps":10,"loss":1.5,"learning_rate":0.1,"tokens_per_sec":5.0,"elapsed_secs":1.0,"eta_secs":0.5}"#.to_owned(),
        ];
        for line in &written {
            let generic: Event = serde_json::from_str(line).unwrap();
            let short = parse_line(line.as_bytes()).unwrap();
            // NaN is not equal to itself: compare the lines they make again.
            assert_eq!(
                event_line(&short, SystemTime::UNIX_EPOCH),
                event_line(&generic, SystemTime::UNIX_EPOCH),
                "{line}"
            );
        }
        assert!(
            written[0].starts_with(r#"{"v":3,"time":"1970-01-01T00:00:00.000Z","type":"step","#)
        );
        assert_eq!(
            line_time(written[0].as_bytes()),
            Some(SystemTime::UNIX_EPOCH)
        );
        // A step line that is not a step event is garbage on both paths.
        let broken = written[0].replace(r#""loss":"#, r#""lost":"#);
        assert!(parse_line(broken.as_bytes()).is_none());
        assert!(parse_line(b"\xff\xfe not utf-8").is_none());
    }

    #[test]
    fn a_history_read_in_pieces_on_two_threads_keeps_every_event_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = Vec::new();
        for n in 1..=3 * PARALLEL_LINES as u64 {
            text.extend(event_line(&step(n), SystemTime::UNIX_EPOCH));
            text.push(b'\n');
            if n % 1000 == 0 {
                text.extend_from_slice(b"not an event\n\n");
            }
        }
        fs::write(dir.path().join(EVENTS_FILE), &text).unwrap();
        let mut tail = EventTail::new(dir.path(), 0);
        let mut steps = Vec::new();
        let step_of = |event: &Event| match event {
            Event::Step(m) => m.step,
            other => panic!("{other:?}"),
        };
        loop {
            let read = tail.read_new_timed(100_000);
            if read.is_empty() {
                break;
            }
            steps.extend(read.iter().map(|(event, _)| step_of(event)));
        }
        let expected: Vec<u64> = (1..=3 * PARALLEL_LINES as u64).collect();
        assert_eq!(steps, expected);
        assert_eq!(tail.garbage, 3 * PARALLEL_LINES as u64 / 1000);
        // And one read of it all takes the two-thread path.
        let all = EventTail::new(dir.path(), 0).read_new(u64::MAX);
        assert_eq!(all.len(), 3 * PARALLEL_LINES);
        assert_eq!(all.last().map(step_of), Some(3 * PARALLEL_LINES as u64));
    }

    #[test]
    fn events_and_status_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut run = RunDir::open(
            dir.path(),
            &Config::default(),
            RunStatus::new("t".into(), 9),
        )
        .unwrap();
        run.record(&step(4)).unwrap();
        run.record(&Event::State {
            step: 4,
            state: RunState::Paused,
        })
        .unwrap();
        let events = fs::read_to_string(dir.path().join(EVENTS_FILE)).unwrap();
        let lines: Vec<serde_json::Value> = events
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["type"], "step");
        assert_eq!(lines[0]["v"], SCHEMA_VERSION);
        assert_eq!(lines[1]["state"], "paused");
        let status = read_status(dir.path()).unwrap();
        assert_eq!((status.current_step, status.state), (4, RunState::Paused));
        let config: Config =
            serde_json::from_slice(&fs::read(dir.path().join(CONFIG_FILE)).unwrap()).unwrap();
        assert_eq!(config, Config::default());
    }

    #[test]
    fn the_tail_waits_for_whole_lines_and_skips_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(EVENTS_FILE);
        let mut tail = EventTail::new(dir.path(), 0);
        assert!(tail.read_new(1 << 20).is_empty(), "no file yet");
        let line = |event: &Event| serde_json::to_string(event).unwrap();
        let first = Event::State {
            step: 1,
            state: RunState::Training,
        };
        let second = Event::State {
            step: 2,
            state: RunState::Paused,
        };
        let text = format!("{}\nnot json\n{}", line(&first), line(&second));
        let (done, half) = text.split_at(text.len() - 5);
        fs::write(&path, done).unwrap();
        assert_eq!(tail.read_new(1 << 20), std::slice::from_ref(&first));
        assert_eq!(tail.garbage, 1);
        fs::write(&path, format!("{done}{half}\n")).unwrap();
        assert_eq!(tail.read_new(1 << 20), std::slice::from_ref(&second));

        // A new file in its place (a run started over) is read from its start.
        fs::remove_file(&path).unwrap();
        fs::write(&path, format!("{}\n", line(&first))).unwrap();
        assert_eq!(tail.read_new(1 << 20), std::slice::from_ref(&first));
        // So is a file cut shorter than what was read.
        fs::write(&path, format!("{}\n", line(&second))).unwrap();
        fs::write(&path, "").unwrap();
        assert!(tail.read_new(1 << 20).is_empty());
        fs::write(&path, format!("{}\n", line(&second))).unwrap();
        assert_eq!(tail.read_new(1 << 20), [second]);
    }

    #[test]
    fn a_concurrent_reader_never_sees_a_partial_status_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut run = RunDir::open(
            dir.path(),
            &Config::default(),
            RunStatus::new("t".into(), 9),
        )
        .unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let path = dir.path().join(STATUS_FILE);
        let reader = {
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let mut reads = 0;
                while !done.load(Ordering::Relaxed) {
                    let text = fs::read_to_string(&path).expect("the status file always exists");
                    let status: RunStatus = serde_json::from_str(&text)
                        .unwrap_or_else(|err| panic!("partial status file ({err}): {text}"));
                    assert!(status.current_step < 2000);
                    reads += 1;
                }
                reads
            })
        };
        for n in 0..2000 {
            run.record(&step(n)).unwrap();
        }
        done.store(true, Ordering::Relaxed);
        let reads = reader.join().unwrap();
        assert!(reads > 0, "the reader never ran");
    }

    #[test]
    fn a_run_from_a_newer_protocol_is_named_not_misread() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("status")).unwrap();
        let mut status = serde_json::to_value(RunStatus::new("future".into(), 10)).unwrap();
        status["schema_version"] = 99.into();
        fs::write(root.join(STATUS_FILE), status.to_string()).unwrap();
        let error = read_status(root).unwrap_err().to_string();
        assert!(
            error.contains("training_status.json")
                && error.contains("newer trainui (protocol 99)")
                && error.contains("update trainui"),
            "{error}"
        );

        let now = serde_json::to_string(&step(1)).unwrap();
        let lines = [
            format!("{{\"v\":{SCHEMA_VERSION},{}", &now[1..]),
            format!("{{\"v\":4,{}", &now[1..]),
            // Not written by trainui's writers, whose lines start with "v".
            format!("{},\"v\":7}}", &now[..now.len() - 1]),
            r#"{"v":5,"type":"teleported"}"#.to_owned(),
        ];
        fs::write(root.join(EVENTS_FILE), lines.join("\n") + "\n").unwrap();
        let mut tail = EventTail::new(root, 0);
        assert_eq!(tail.read_new(1 << 20), [step(1)]);
        assert_eq!((tail.newer, tail.garbage), (Some(7), 0));
    }
}

#[cfg(test)]
mod timed_tests {
    use super::*;

    #[test]
    fn each_event_comes_with_its_time_and_a_bad_time_reads_as_now() {
        let dir = tempfile::tempdir().unwrap();
        let event = serde_json::to_string(&crate::events::examples::step(1, 9, 1.0)).unwrap();
        let with = |time: &str| format!("{{\"v\":3,\"time\":{time},{}", &event[1..]);
        let lines = [
            with("\"2026-11-29T15:00:01.250Z\""),
            with("\"yesterday\""),
            with("17"),
            format!("{{\"v\":3,{}", &event[1..]),
        ];
        fs::write(dir.path().join(EVENTS_FILE), lines.join("\n") + "\n").unwrap();
        let before = SystemTime::now();
        let read = EventTail::new(dir.path(), 0).read_new_timed(1 << 20);
        assert_eq!(read.len(), 4, "every line is still an event");
        let written = humantime::parse_rfc3339("2026-11-29T15:00:01.250Z").unwrap();
        assert_eq!(read[0].1, written);
        for (_, at) in &read[1..] {
            assert!(*at >= before, "a missing or unreadable time is now");
        }
    }
}

#[cfg(test)]
mod hostile_tests {
    use super::*;

    #[test]
    fn a_run_never_writes_its_logs_through_a_link_or_into_a_fifo() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let open = |root: &Path| {
            RunDir::open(root, &Config::default(), RunStatus::new("t".into(), 9)).map(|_| ())
        };
        // A copied run whose log is a link to a file of the user's shell.
        let profile = dir.path().join("profile");
        fs::write(&profile, "kept\n").unwrap();
        let linked = dir.path().join("linked");
        fs::create_dir(&linked).unwrap();
        std::os::unix::fs::symlink(&profile, linked.join(LOG_FILE)).unwrap();
        let err = open(&linked).unwrap_err().to_string();
        assert!(
            err.contains("training_output.log: is a symbolic link"),
            "{err}"
        );
        assert_eq!(fs::read_to_string(&profile).unwrap(), "kept\n");
        // events.jsonl as a FIFO nobody reads: refused at once.
        let fifo = dir.path().join("fifo");
        fs::create_dir(&fifo).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(fifo.join(EVENTS_FILE))
            .status()
            .unwrap();
        assert!(made.success());
        let err = open(&fifo).unwrap_err().to_string();
        assert!(err.contains("events.jsonl: is a FIFO"), "{err}");
        // A log others could write to is made the owner's.
        let open_to_all = dir.path().join("open");
        fs::create_dir(&open_to_all).unwrap();
        fs::write(open_to_all.join(EVENTS_FILE), "").unwrap();
        fs::set_permissions(
            open_to_all.join(EVENTS_FILE),
            fs::Permissions::from_mode(0o666),
        )
        .unwrap();
        open(&open_to_all).unwrap();
        let events_mode = fs::metadata(open_to_all.join(EVENTS_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(events_mode & 0o777, 0o644);
    }

    #[test]
    fn a_status_field_that_cannot_be_read_is_named_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("status")).unwrap();
        let mut status = serde_json::to_value(RunStatus::new("kept".into(), 10)).unwrap();
        status["loss"] = 1.25.into();
        let text = status.to_string().replace(
            "\"current_step\":0",
            "\"current_step\":100000000000000000000",
        );
        let text = text.replace(&format!("\"pid\":{}", std::process::id()), "\"pid\":-4");
        fs::write(root.join(STATUS_FILE), text).unwrap();
        let (read, bad) = read_status_fields(root).unwrap();
        assert_eq!((read.run_name.as_str(), read.loss), ("kept", Some(1.25)));
        assert_eq!(
            (read.current_step, read.pid),
            (0, 0),
            "unknown, not this process"
        );
        let names: Vec<&str> = bad.iter().map(|field| field.name.as_str()).collect();
        assert_eq!(names, ["current_step", "pid"], "{bad:?}");
        assert!(bad[0].why.starts_with("current_step: invalid"), "{bad:?}");

        // A file that is no status at all is still refused whole.
        fs::write(root.join(STATUS_FILE), "[1, 2]").unwrap();
        assert!(read_status(root).is_err());
        fs::write(root.join(STATUS_FILE), r#"{"run_name": "x"}"#).unwrap();
        let err = read_status(root).unwrap_err().to_string();
        assert!(err.contains("missing field"), "{err}");
    }

    #[test]
    fn an_over_long_event_line_is_skipped_unread_and_reading_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(EVENTS_FILE);
        let first = String::from_utf8(event_line(
            &crate::events::examples::step(1, 9, 1.0),
            SystemTime::UNIX_EPOCH,
        ))
        .unwrap();
        let after = String::from_utf8(event_line(
            &crate::events::examples::step(2, 9, 1.0),
            SystemTime::UNIX_EPOCH,
        ))
        .unwrap();
        let mut file = File::create(&path).unwrap();
        writeln!(file, "{first}").unwrap();
        let mut tail = EventTail::new(dir.path(), 0);
        let mut steps = 0;
        // Reads to the end of the file in pieces, never holding much more
        // than the longest line.
        let mut drain = |tail: &mut EventTail| loop {
            steps += tail.read_new(256 << 10).len();
            assert!(tail.partial.len() <= runfile::MAX_EVENT_LINE + (256 << 10));
            if tail.offset() == fs::metadata(&path).unwrap().len() {
                break;
            }
        };
        drain(&mut tail);
        // Three times the longest line, written a piece at a time.
        for _ in 0..3 {
            file.write_all(&vec![b'x'; runfile::MAX_EVENT_LINE])
                .unwrap();
            drain(&mut tail);
        }
        writeln!(file, "\n{after}").unwrap();
        drain(&mut tail);
        assert_eq!(steps, 2, "the lines around it are read");
        assert_eq!(tail.overlong, 1);
        assert_eq!(tail.garbage, 0);
    }

    #[test]
    fn an_event_too_long_to_be_read_is_written_cut_to_fit() {
        let long = Event::Warning {
            step: 3,
            message: "é".repeat(runfile::MAX_EVENT_LINE),
        };
        let line = event_line(&long, SystemTime::UNIX_EPOCH);
        assert!(line.len() <= runfile::MAX_EVENT_LINE, "{}", line.len());
        assert!(line.len() > runfile::MAX_EVENT_LINE / 4, "{}", line.len());
        let Some(Event::Warning { step, message }) = parse_line(&line) else {
            panic!("the line is an event");
        };
        assert_eq!(step, 3);
        assert!(message.starts_with("ééé"), "{}", &message[..10]);
        assert!(message.ends_with("more bytes not recorded)"));
        // The status folds the event as recorded, and stays readable.
        let dir = tempfile::tempdir().unwrap();
        let mut run = RunDir::open(
            dir.path(),
            &Config::default(),
            RunStatus::new("t".into(), 9),
        )
        .unwrap();
        run.record(&long).unwrap();
        let status = read_status(dir.path()).unwrap();
        let last = status.last_message.unwrap();
        assert!(last.len() < runfile::MAX_EVENT_LINE, "{}", last.len());
        assert!(last.ends_with("more bytes not recorded)"));
        // A long text that is not one of those cut (a command file's id)
        // leaves the line long, and ends the cutting.
        let long_id = Event::Control {
            id: "x".repeat(runfile::MAX_EVENT_LINE),
            command: "stop".into(),
            accepted: false,
            message: "m".into(),
        };
        let line = event_line(&long_id, SystemTime::UNIX_EPOCH);
        assert!(line.len() > runfile::MAX_EVENT_LINE);
        let short = Event::Warning {
            step: 3,
            message: "short".into(),
        };
        assert_eq!(
            parse_line(&event_line(&short, SystemTime::UNIX_EPOCH)),
            Some(short)
        );
    }

    #[test]
    fn events_that_are_no_regular_file_are_named_and_a_replaced_file_is_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(EVENTS_FILE);
        std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
        let mut tail = EventTail::new(dir.path(), 0);
        assert!(tail.read_new(1 << 20).is_empty());
        let problem = tail.problem.clone().unwrap();
        assert!(problem.contains("a character device"), "{problem}");
        fs::remove_file(&path).unwrap();
        let line = |step| {
            let mut line = event_line(
                &crate::events::examples::step(step, 9, 1.0),
                SystemTime::UNIX_EPOCH,
            );
            line.push(b'\n');
            line
        };
        fs::write(&path, [line(1), line(2)].concat()).unwrap();
        assert_eq!(tail.read_new(1 << 20).len(), 2);
        assert_eq!((tail.problem.as_deref(), tail.restarts), (None, 0));
        // Replaced by a shorter file: read again from its start, and counted.
        fs::remove_file(&path).unwrap();
        fs::write(&path, line(7)).unwrap();
        let read = tail.read_new(1 << 20);
        assert_eq!(read, [crate::events::examples::step(7, 9, 1.0)]);
        assert_eq!(tail.restarts, 1);
    }
}
