//! The far side: `trainui serve --stdio`, started by the near side's ssh
//! on the machine where runs live. It answers the near side's hello, then
//! streams the run directories asked for ([`wire`]): new
//! lines of events.jsonl (a long history thinned on the first read), the
//! small files whole when they change, the tail of job_output.log, and
//! whether the run's process is alive; it places the command files sent
//! to it, each once. It reads its files as every reader of a run directory
//! does (`runfile`: regular files only, never blocking, within limits),
//! listens on nothing, and ends when its input ends.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::wire::{self, Depth, Resume, ToFar, ToNear, WIRE_VERSION};
use crate::run_list;
use trainui_protocol::control;
use trainui_protocol::error::{Error, Result};
use trainui_protocol::events::SCHEMA_VERSION;
use trainui_protocol::ranks::RANKS_DIR;
use trainui_protocol::rundir::{self, is_step_line};
use trainui_protocol::runfile::{self, ReadError};
use trainui_protocol::runlock;

/// How often the followed runs' files are looked at.
const POLL: Duration = Duration::from_millis(200);
/// A heartbeat after this long without a message.
pub const BEAT: Duration = Duration::from_secs(1);
/// How often whether a run's process is alive is checked.
const ALIVE_EVERY: Duration = Duration::from_secs(2);
/// The most text one message carries (whole lines; one longer line goes
/// alone).
const CHUNK: usize = 1 << 20;
/// Step events kept by a thinned first read: between this and twice this.
pub const THIN_TO: usize = 20_000;
/// How much of a long job_output.log the first read sends: its tail.
const OUTPUT_TAIL: u64 = 64 << 10;
/// The most rank files followed in one run.
const MAX_RANK_FILES: usize = 1024;
/// The far side ends after this long without a word from the near side
/// (it beats every second).
const QUIET: Duration = Duration::from_secs(15);
/// How long the far side waits for the near side's hello.
const HELLO_WAIT: Duration = Duration::from_mins(1);

/// Serves the near side on standard input and output until its input ends
/// or stays silent for 15 s (the near side beats every second: a
/// connection that died without a word ends this too).
pub fn serve_stdio() -> Result<()> {
    let asks = wire::read::<ToFar>(std::io::stdin(), "serve-input");
    let writer = Beating::new(std::io::stdout());
    let mut out = Out {
        writer: writer.clone(),
        last: Instant::now(),
    };
    match asks.recv_timeout(HELLO_WAIT) {
        Ok(ToFar::Hello { wire, .. }) => {
            out.send(&ToNear::Hello {
                wire: WIRE_VERSION,
                version: env!("CARGO_PKG_VERSION").to_owned(),
                protocol: SCHEMA_VERSION,
            })?;
            if wire != WIRE_VERSION {
                // The near side names both versions; nothing else is said.
                return Ok(());
            }
        }
        Ok(_) => {
            return Err(Error::Usage(
                "serve: the first message must be a hello".into(),
            ));
        }
        Err(_) => return Ok(()),
    }
    // Beats go out from a thread of their own, so that a long read (the
    // first read of a week-long history) does not pass for a dead far side.
    writer.beat_every(BEAT);
    let mut runs: Vec<Served> = Vec::new();
    let mut next_poll = Instant::now();
    let mut heard = Instant::now();
    loop {
        let wait = next_poll.saturating_duration_since(Instant::now());
        match asks.recv_timeout(wait) {
            Ok(ask) => {
                heard = Instant::now();
                answer(ask, &mut runs, &mut out)?;
                continue;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        }
        if heard.elapsed() > QUIET {
            return Ok(());
        }
        for run in &mut runs {
            run.poll(&mut out)?;
        }
        next_poll = Instant::now() + POLL;
    }
}

/// Standard output shared by the serving thread and the beats: each line
/// written whole under one lock.
#[derive(Clone)]
struct Beating {
    inner: Arc<Mutex<(BufWriter<std::io::Stdout>, Instant)>>,
}

impl Beating {
    fn new(stdout: std::io::Stdout) -> Self {
        Self {
            inner: Arc::new(Mutex::new((BufWriter::new(stdout), Instant::now()))),
        }
    }

    /// A beat after every `every` without another line, until the output
    /// is gone.
    fn beat_every(&self, every: Duration) {
        let inner = Arc::clone(&self.inner);
        let mut line = wire::line(&ToNear::Beat);
        line.push('\n');
        let _ = thread::Builder::new()
            .name("serve-beat".into())
            .spawn(move || {
                loop {
                    thread::sleep(every / 4);
                    let Ok(mut out) = inner.lock() else { return };
                    if out.1.elapsed() < every {
                        continue;
                    }
                    let written = out
                        .0
                        .write_all(line.as_bytes())
                        .and_then(|()| out.0.flush());
                    if written.is_err() {
                        return;
                    }
                    out.1 = Instant::now();
                }
            });
    }
}

impl Write for Beating {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let mut out = self
            .inner
            .lock()
            .map_err(|_| std::io::Error::other("serve: the output lock is poisoned"))?;
        out.0.write_all(buf)?;
        out.0.flush()?;
        out.1 = Instant::now();
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Out<W: Write> {
    writer: W,
    last: Instant,
}

impl<W: Write> Out<W> {
    fn send(&mut self, message: &ToNear) -> Result<()> {
        let mut text = wire::line(message);
        text.push('\n');
        self.writer
            .write_all(text.as_bytes())
            .and_then(|()| self.writer.flush())
            .map_err(|e| Error::Failed(format!("serve: the connection is gone: {e}")))?;
        self.last = Instant::now();
        Ok(())
    }
}

fn answer<W: Write>(ask: ToFar, runs: &mut Vec<Served>, out: &mut Out<W>) -> Result<()> {
    match ask {
        ToFar::Hello { .. } | ToFar::Beat => Ok(()),
        ToFar::Follow {
            run,
            path,
            depth,
            resume,
        } => {
            runs.retain(|served| served.run != run);
            let mut served = Served::new(run, far_path(&path), depth, resume);
            served.poll(out)?;
            runs.push(served);
            Ok(())
        }
        ToFar::List { id, path, depth } => {
            let root = far_path(&path);
            let (found, error) = if run_list::is_run(&root) {
                (vec![root], None)
            } else if !root.is_dir() {
                (Vec::new(), Some(format!("{path}: no such folder")))
            } else {
                match run_list::find(&root, depth) {
                    Ok(found) => (found, None),
                    Err(err) => (Vec::new(), Some(err.to_string())),
                }
            };
            out.send(&ToNear::Listed {
                id,
                runs: found
                    .iter()
                    .map(|p| p.to_string_lossy().into_owned())
                    .collect(),
                error,
            })
        }
        ToFar::Deliver { run, name, body } => {
            let Some(served) = runs.iter().find(|served| served.run == run) else {
                return out.send(&ToNear::Delivered {
                    run,
                    name,
                    placed: false,
                    error: Some("no such run on this connection".into()),
                });
            };
            let (placed, error) = match control::deliver(&served.dir, &name, &body) {
                Ok(placed) => (placed, None),
                Err(err) => (false, Some(err.to_string())),
            };
            out.send(&ToNear::Delivered {
                run,
                name,
                placed,
                error,
            })
        }
    }
}

/// A path the near side named: `~/x` and relative paths are the home
/// folder's (where ssh starts the far side), others as they are.
fn far_path(path: &str) -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    match (path.strip_prefix("~/"), home) {
        (Some(rest), Some(home)) => home.join(rest),
        _ if path == "~" => std::env::var_os("HOME").map_or_else(|| ".".into(), PathBuf::from),
        _ => PathBuf::from(path),
    }
}

/// Where one appended file stands: bytes sent, of which file.
#[derive(Default)]
struct Stream {
    at: u64,
    file: Option<(u64, u64)>,
}

/// A file's look: changes of any part mean it is sent again.
type Stamp = (u64, u64, u64, i64, i64);

fn stamp(meta: &std::fs::Metadata) -> Stamp {
    (
        meta.dev(),
        meta.ino(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
    )
}

/// One run directory served.
struct Served {
    run: u32,
    dir: PathBuf,
    depth: Depth,
    events: Stream,
    output: Stream,
    /// The small files sent, by their path inside the run directory, with
    /// how they looked (None: sent as gone).
    files: BTreeMap<String, Option<Stamp>>,
    alive: Option<bool>,
    alive_at: Option<Instant>,
    synced: bool,
    problem: Option<String>,
    /// Whether the resumed offset was checked to end a line.
    checked: bool,
    /// The events file a start-over was sent for.
    started: Option<(u64, u64)>,
}

impl Served {
    fn new(run: u32, dir: PathBuf, depth: Depth, resume: Resume) -> Self {
        Self {
            run,
            dir,
            depth,
            events: Stream {
                at: resume.events,
                file: resume.events_file,
            },
            output: Stream {
                at: resume.output,
                file: resume.output_file,
            },
            files: BTreeMap::new(),
            alive: None,
            alive_at: None,
            synced: false,
            problem: None,
            checked: false,
            started: None,
        }
    }

    fn poll<W: Write>(&mut self, out: &mut Out<W>) -> Result<()> {
        if !self.dir.is_dir() {
            let missing = "no such run directory".to_owned();
            self.say_problem(out, Some(missing))?;
        } else if self
            .problem
            .as_deref()
            .is_some_and(|p| p.ends_with("no such run directory"))
        {
            self.say_problem(out, None)?;
        }
        if !matches!(self.depth, Depth::Small | Depth::Ranks) {
            self.send_events(out)?;
            self.send_output(out)?;
        }
        if self.depth != Depth::Ranks {
            self.send_file(out, rundir::STATUS_FILE, runfile::STATUS_LIMIT)?;
            self.send_file(out, rundir::CONFIG_FILE, runfile::CONFIG_LIMIT)?;
            if self.alive_at.is_none_or(|at| at.elapsed() >= ALIVE_EVERY) {
                self.alive_at = Some(Instant::now());
                // No status file (yet): nothing to say; the near side
                // takes a run that has not started for alive.
                let alive = rundir::read_status(&self.dir)
                    .ok()
                    .map(|status| runlock::run_alive(&self.dir, status.pid));
                if let Some(alive) = alive
                    && self.alive != Some(alive)
                {
                    self.alive = Some(alive);
                    out.send(&ToNear::Alive {
                        run: self.run,
                        alive,
                    })?;
                }
            }
        }
        for name in rank_files(&self.dir) {
            self.send_file(out, &name, runfile::RANK_LIMIT)?;
        }
        if !self.synced {
            self.synced = true;
            out.send(&ToNear::Synced { run: self.run })?;
        }
        Ok(())
    }

    fn say_problem<W: Write>(&mut self, out: &mut Out<W>, problem: Option<String>) -> Result<()> {
        if problem != self.problem {
            self.problem.clone_from(&problem);
            // An empty message: the problem is over.
            out.send(&ToNear::Problem {
                run: self.run,
                message: problem.unwrap_or_default(),
            })?;
        }
        Ok(())
    }

    /// A small file, whole, when it is new or changed (or gone).
    fn send_file<W: Write>(&mut self, out: &mut Out<W>, name: &str, limit: u64) -> Result<()> {
        let path = self.dir.join(name);
        let now = std::fs::metadata(&path).ok().map(|meta| stamp(&meta));
        let before = self.files.get(name).copied();
        if before == Some(now) {
            return Ok(());
        }
        let text = match now {
            None => None,
            Some(_) => match runfile::read(&path, limit) {
                Ok(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
                // Gone between the look and the read: the next poll says so.
                Err(ReadError::Missing) => return Ok(()),
                Err(err) => {
                    self.files.insert(name.to_owned(), now);
                    return self.say_problem(out, Some(err.at(&path)));
                }
            },
        };
        // A file never seen, still not there, needs no word; at a
        // reconnection the near side's copy may hold it, so status and
        // config are always said.
        let told_gone = before.is_none() && now.is_none() && name.starts_with(RANKS_DIR);
        self.files.insert(name.to_owned(), now);
        if told_gone {
            return Ok(());
        }
        out.send(&ToNear::File {
            run: self.run,
            name: name.to_owned(),
            text,
        })
    }

    /// New whole lines of events.jsonl; the first read of a long one,
    /// thinned when so asked.
    fn send_events<W: Write>(&mut self, out: &mut Out<W>) -> Result<()> {
        let path = self.dir.join(rundir::EVENTS_FILE);
        let file = match runfile::open(&path) {
            Ok(file) => file,
            Err(ReadError::Missing) => return Ok(()),
            Err(err) => return self.say_problem(out, Some(err.at(&path))),
        };
        let Ok(meta) = file.metadata() else {
            return Ok(());
        };
        let identity = (meta.dev(), meta.ino());
        // Another file, a shorter one, or a copy of no known file; and, on
        // a resume, one whose byte before the offset ends no line (cut in
        // place and written again under the same inode).
        let resumed_mid_line = !std::mem::replace(&mut self.checked, true)
            && self.events.at > 0
            && !ends_a_line(&file, self.events.at);
        let replaced = self.events.file.is_some_and(|known| known != identity)
            || meta.len() < self.events.at
            || (self.events.file.is_none() && self.events.at > 0)
            || resumed_mid_line;
        if replaced {
            self.events.at = 0;
        }
        self.events.file = Some(identity);
        if meta.len() == self.events.at && !replaced {
            return Ok(());
        }
        // A read from the start replaces whatever the copy holds.
        let mut start_over = self.events.at == 0;
        if self.events.at == 0 && self.depth == Depth::Thinned {
            return self.send_thinned(out, file, meta.len(), identity, start_over);
        }
        let mut reader = BufReader::new(file);
        if let Err(err) = reader.seek(SeekFrom::Start(self.events.at)) {
            return self.say_problem(out, Some(format!("{}: {err}", path.display())));
        }
        let mut lines = Lines::new(reader, meta.len() - self.events.at);
        let mut text = String::new();
        let mut from = self.events.at;
        while let Some((line, end)) = lines.next_line() {
            if let Some(line) = line {
                text.push_str(&String::from_utf8_lossy(line));
            }
            self.events.at = from + end;
            if text.len() >= CHUNK {
                out.send(&ToNear::Events {
                    run: self.run,
                    from,
                    to: self.events.at,
                    file: identity,
                    start_over: std::mem::take(&mut start_over),
                    lines: std::mem::take(&mut text),
                })?;
                from = self.events.at;
                lines.rebase();
            }
        }
        // A start-over with nothing whole yet is said once per file.
        let said = start_over && self.events.at == 0 && self.started == Some(identity);
        if (!text.is_empty() || start_over || from != self.events.at) && !said {
            if start_over {
                self.started = Some(identity);
            }
            out.send(&ToNear::Events {
                run: self.run,
                from,
                to: self.events.at,
                file: identity,
                start_over,
                lines: text,
            })?;
        }
        Ok(())
    }

    /// The whole file up to its last complete line, every event but step
    /// events kept, and of those at most twice [`THIN_TO`], evenly spaced,
    /// the last one always among them.
    fn send_thinned<W: Write>(
        &mut self,
        out: &mut Out<W>,
        file: File,
        len: u64,
        identity: (u64, u64),
        start_over: bool,
    ) -> Result<()> {
        let mut lines = Lines::new(BufReader::with_capacity(1 << 20, file), len);
        // Kept lines, each with its step ordinal (None: not a step).
        let mut kept: Vec<(Option<u64>, Vec<u8>)> = Vec::new();
        let mut every = 1u64;
        let mut steps = 0u64;
        let mut kept_steps = 0usize;
        // The latest step line when it was not kept, and where it goes.
        let mut last_step: Option<(usize, Vec<u8>)> = None;
        let mut end = 0;
        while let Some((line, at)) = lines.next_line() {
            end = at;
            let Some(line) = line else { continue };
            if !is_step_line(line) {
                kept.push((None, line.to_vec()));
                continue;
            }
            let ordinal = steps;
            steps += 1;
            if !ordinal.is_multiple_of(every) {
                last_step = Some((kept.len(), line.to_vec()));
                continue;
            }
            last_step = None;
            kept.push((Some(ordinal), line.to_vec()));
            kept_steps += 1;
            if kept_steps >= 2 * THIN_TO {
                every *= 2;
                kept.retain(|(ordinal, _)| ordinal.is_none_or(|o| o.is_multiple_of(every)));
                kept_steps = kept.iter().filter(|(o, _)| o.is_some()).count();
            }
        }
        if let Some((at, line)) = last_step {
            kept.insert(at.min(kept.len()), (Some(steps), line));
        }
        let mut text = String::new();
        let mut start_over = start_over;
        let count = kept.len();
        for (index, (_, line)) in kept.into_iter().enumerate() {
            text.push_str(&String::from_utf8_lossy(&line));
            if text.len() >= CHUNK && index + 1 < count {
                // Cut at a kept line. Until the last chunk the copy stands
                // at 0: cut off here, it is read again from the start.
                out.send(&ToNear::Events {
                    run: self.run,
                    from: 0,
                    to: 0,
                    file: identity,
                    start_over: std::mem::take(&mut start_over),
                    lines: std::mem::take(&mut text),
                })?;
            }
        }
        self.events.at = end;
        if end == 0 && self.started == Some(identity) {
            return Ok(());
        }
        self.started = Some(identity);
        out.send(&ToNear::Events {
            run: self.run,
            from: 0,
            to: end,
            file: identity,
            start_over,
            lines: text,
        })
    }

    /// New bytes of job_output.log; the first read of a long one starts at
    /// its tail.
    fn send_output<W: Write>(&mut self, out: &mut Out<W>) -> Result<()> {
        let path = self.dir.join(rundir::JOB_OUTPUT_FILE);
        let Ok(file) = runfile::open(&path) else {
            return Ok(());
        };
        let Ok(meta) = file.metadata() else {
            return Ok(());
        };
        let identity = (meta.dev(), meta.ino());
        let mut start_over = false;
        if self.output.file.is_some_and(|known| known != identity) || meta.len() < self.output.at {
            start_over = true;
            self.output.at = 0;
        }
        if self.output.file.is_none() {
            start_over = true;
            self.output.at = meta.len().saturating_sub(OUTPUT_TAIL);
        }
        self.output.file = Some(identity);
        if meta.len() == self.output.at && !start_over {
            return Ok(());
        }
        let mut file = file;
        let from = self.output.at;
        let mut bytes = Vec::new();
        let read = file
            .seek(SeekFrom::Start(from))
            .and_then(|_| file.take(CHUNK as u64).read_to_end(&mut bytes));
        if let Err(err) = read {
            return self.say_problem(out, Some(format!("{}: {err}", path.display())));
        }
        // A character cut by the end of the read waits for the next one.
        let whole = match std::str::from_utf8(&bytes) {
            Err(err) if err.error_len().is_none() => err.valid_up_to(),
            _ => bytes.len(),
        };
        bytes.truncate(whole);
        self.output.at = from + bytes.len() as u64;
        out.send(&ToNear::Output {
            run: self.run,
            from,
            to: self.output.at,
            file: identity,
            start_over,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        })
    }
}

/// Whether the byte of `file` before `offset` is a newline.
fn ends_a_line(file: &File, offset: u64) -> bool {
    use std::os::unix::fs::FileExt;
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, offset - 1).is_ok() && byte[0] == b'\n'
}

/// The rank files of a run (`ranks/NAME.json`), at most
/// [`MAX_RANK_FILES`], by name.
fn rank_files(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir.join(RANKS_DIR)) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(std::result::Result::ok)
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| {
            !name.starts_with('.') && Path::new(name).extension().is_some_and(|ext| ext == "json")
        })
        .take(MAX_RANK_FILES)
        .map(|name| format!("{RANKS_DIR}/{name}"))
        .collect();
    names.sort();
    names
}

/// Whole lines of a file read up to `len` bytes: each line (with its
/// newline) and the offset after it, from the start of the read. A line
/// longer than [`runfile::MAX_EVENT_LINE`] is passed over unread (None),
/// as every reader of events.jsonl does; bytes after the last newline wait
/// for the next read.
struct Lines<R> {
    reader: R,
    left: u64,
    line: Vec<u8>,
    at: u64,
    base: u64,
}

impl<R: BufRead> Lines<R> {
    fn new(reader: R, len: u64) -> Self {
        Self {
            reader,
            left: len,
            line: Vec::new(),
            at: 0,
            base: 0,
        }
    }

    /// Offsets count from here on (after a chunk was sent).
    fn rebase(&mut self) {
        self.base = self.at;
    }

    fn next_line(&mut self) -> Option<(Option<&[u8]>, u64)> {
        self.line.clear();
        let limit = runfile::MAX_EVENT_LINE as u64 + 1;
        let mut skipped = 0u64;
        loop {
            if self.left == 0 {
                return None;
            }
            let take = self.left.min(limit);
            let read = (&mut self.reader)
                .take(take)
                .read_until(b'\n', &mut self.line)
                .ok()?;
            if read == 0 {
                return None;
            }
            self.left -= read as u64;
            if self.line.last() == Some(&b'\n') {
                let length = self.line.len() as u64 + skipped;
                self.at += length;
                let end = self.at - self.base;
                if skipped > 0 || self.line.len() > runfile::MAX_EVENT_LINE {
                    return Some((None, end));
                }
                return Some((Some(&self.line), end));
            }
            if self.line.len() as u64 >= limit {
                // An overlong line: its bytes are counted, not kept.
                skipped += self.line.len() as u64;
                self.line.clear();
                continue;
            }
            // No newline before the end: an unfinished line.
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step_line(step: u64) -> String {
        format!(
            "{{\"v\":3,\"time\":\"2026-01-01T00:00:00.000Z\",\"type\":\"step\",\"step\":{step},\
             \"max_steps\":1,\"loss\":1.0,\"learning_rate\":0.1,\"tokens_per_sec\":1.0,\
             \"elapsed_secs\":1.0,\"eta_secs\":null}}\n"
        )
    }

    fn served(dir: &Path, depth: Depth) -> (Served, Vec<ToNear>) {
        let mut served = Served::new(1, dir.to_owned(), depth, Resume::default());
        let mut out = Out {
            writer: Vec::new(),
            last: Instant::now(),
        };
        served.poll(&mut out).unwrap();
        (served, messages(&out.writer))
    }

    fn messages(bytes: &[u8]) -> Vec<ToNear> {
        bytes
            .split(|&b| b == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| serde_json::from_slice(line).unwrap())
            .collect()
    }

    fn events_text(messages: &[ToNear]) -> (String, u64) {
        let mut text = String::new();
        let mut to = 0;
        for message in messages {
            if let ToNear::Events { lines, to: end, .. } = message {
                text.push_str(lines);
                to = *end;
            }
        }
        (text, to)
    }

    #[test]
    fn a_long_history_is_thinned_once_then_every_new_line_follows() {
        let dir = tempfile::tempdir().unwrap();
        let steps = 5 * THIN_TO as u64 + 7;
        let mut history = String::from("{\"v\":3,\"type\":\"started\"}\n");
        for step in 1..=steps {
            history.push_str(&step_line(step));
            if step % 10_000 == 0 {
                history.push_str("{\"v\":3,\"type\":\"eval\",\"step\":1}\n");
            }
        }
        history.push_str("{\"v\":3,\"type\":\"stat");
        let path = dir.path().join(rundir::EVENTS_FILE);
        std::fs::write(&path, &history).unwrap();
        let (mut served, said) = served(dir.path(), Depth::Thinned);
        let (text, to) = events_text(&said);
        let lines: Vec<&str> = text.lines().collect();
        let kept_steps = lines.iter().filter(|l| l.contains("\"step\",")).count();
        assert!(
            (THIN_TO..2 * THIN_TO + 2).contains(&kept_steps),
            "{kept_steps} steps kept"
        );
        assert_eq!(lines[0], "{\"v\":3,\"type\":\"started\"}");
        assert_eq!(lines.iter().filter(|l| l.contains("eval")).count(), 10);
        assert!(
            lines
                .last()
                .unwrap()
                .contains(&format!("\"step\":{steps},")),
            "the last step is kept: {}",
            lines.last().unwrap()
        );
        let unfinished = history.rfind('\n').unwrap() as u64 + 1;
        assert_eq!(to, unfinished, "up to the last whole line");
        // The unfinished line, once finished, follows whole.
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"e\"}\n").unwrap();
        let mut out = Out {
            writer: Vec::new(),
            last: Instant::now(),
        };
        served.poll(&mut out).unwrap();
        let (text, to) = events_text(&messages(&out.writer));
        assert_eq!(text, "{\"v\":3,\"type\":\"state\"}\n");
        assert_eq!(to, history.len() as u64 + 4);
    }

    #[test]
    fn a_short_history_is_sent_line_for_line_and_a_replaced_file_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(rundir::EVENTS_FILE);
        let history: String = (1..=50).map(step_line).collect();
        std::fs::write(&path, &history).unwrap();
        let (mut served, said) = served(dir.path(), Depth::Thinned);
        assert_eq!(events_text(&said).0, history);
        assert!(said.iter().any(|m| matches!(m, ToNear::Synced { run: 1 })));
        let fresh = dir.path().join("fresh");
        std::fs::write(&fresh, step_line(1)).unwrap();
        std::fs::rename(&fresh, &path).unwrap();
        let mut out = Out {
            writer: Vec::new(),
            last: Instant::now(),
        };
        served.poll(&mut out).unwrap();
        let said = messages(&out.writer);
        assert!(
            matches!(&said[0], ToNear::Events { start_over: true, from: 0, lines, .. } if *lines == step_line(1)),
            "{said:?}"
        );
    }

    #[test]
    fn an_overlong_line_is_passed_over_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(rundir::EVENTS_FILE);
        let long = "x".repeat(runfile::MAX_EVENT_LINE + 10);
        let history = format!("{}{long}\n{}", step_line(1), step_line(2));
        std::fs::write(&path, &history).unwrap();
        let (_, said) = served(dir.path(), Depth::Full);
        let (text, to) = events_text(&said);
        assert_eq!(text, format!("{}{}", step_line(1), step_line(2)));
        assert_eq!(to, history.len() as u64);
    }

    #[test]
    fn small_files_go_whole_when_they_change_and_a_fifo_is_never_opened() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("status")).unwrap();
        std::fs::create_dir_all(dir.path().join(RANKS_DIR)).unwrap();
        std::fs::write(dir.path().join(rundir::CONFIG_FILE), "{\"a\":1}").unwrap();
        std::fs::write(dir.path().join("ranks/rank-0.json"), "{}").unwrap();
        let fifo = dir.path().join(rundir::STATUS_FILE);
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let (mut served, said) = served(dir.path(), Depth::Small);
        let files: Vec<(&str, Option<&str>)> = said
            .iter()
            .filter_map(|m| match m {
                ToNear::File { name, text, .. } => Some((name.as_str(), text.as_deref())),
                _ => None,
            })
            .collect();
        assert_eq!(
            files,
            [
                ("config.json", Some("{\"a\":1}")),
                ("ranks/rank-0.json", Some("{}"))
            ]
        );
        assert!(
            said.iter()
                .any(|m| matches!(m, ToNear::Problem { message, .. } if message.contains("FIFO"))),
            "{said:?}"
        );
        std::fs::remove_file(dir.path().join(rundir::CONFIG_FILE)).unwrap();
        let mut out = Out {
            writer: Vec::new(),
            last: Instant::now(),
        };
        served.poll(&mut out).unwrap();
        assert!(messages(&out.writer).contains(&ToNear::File {
            run: 1,
            name: "config.json".into(),
            text: None
        }));
    }
}
