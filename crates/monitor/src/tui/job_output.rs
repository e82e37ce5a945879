//! The job's own output (its stdout and stderr, which `trainui run` sends
//! to `RUN_DIR/job_output.log`), as the screen shows it: the file's tail,
//! read a bounded piece at a time as it grows, every line escaped as it is
//! taken in. The file is the job's: anything may be in it (a traceback, a
//! progress bar, colour codes, bytes that are not UTF-8), and it may be
//! huge, replaced, or not a regular file at all.
//!
//! Reads go through [`runfile::open`] (regular files only, never blocking)
//! and never take more than [`TAIL_BYTES`] at once: a file that grew by
//! more is read from that far before its end, and what comes before is
//! left unread. At most [`LINES_KEPT`] lines are kept.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use trainui_protocol::runfile::{self, ReadError};
use trainui_protocol::text;

/// The most of the file read at once: what lies further from its end than
/// this when it is read is never read.
pub const TAIL_BYTES: u64 = 256 << 10;
/// Lines kept; older ones go as new ones come.
pub const LINES_KEPT: usize = 1000;
/// Characters of a line shown; the rest is cut, with an ellipsis.
pub const LINE_CHARS: usize = 1000;
/// Bytes of a line without its end kept waiting for it; a longer one is
/// taken as a line of its own.
const PARTIAL_BYTES: usize = 16 << 10;
/// How often the file is looked at.
pub const POLL: Duration = Duration::from_millis(250);
/// Columns a tab stands for.
const TAB: usize = 8;

/// The tail of the job's output file, as far as it has been read.
#[derive(Debug, Default)]
pub struct JobOutput {
    /// The file; none for a run that has no such file (trainui's own
    /// trainer, whose output is the screen).
    path: Option<PathBuf>,
    /// Complete lines, escaped, oldest first.
    lines: VecDeque<String>,
    /// Lines that went from the front of `lines` (to keep it bounded) since
    /// the file was first read: the absolute number of `lines[0]`.
    dropped: u64,
    /// The last line while it has no end yet, as written.
    partial: Vec<u8>,
    /// Device and inode of the file read: another file at the path starts
    /// the view over.
    identity: Option<(u64, u64)>,
    /// Bytes of the file read.
    offset: u64,
    /// The next bytes start inside a line (the read started before the
    /// file's end, not at its start): they are left out up to its end.
    mid_line: bool,
    /// The start of the file was left unread (it was larger than
    /// [`TAIL_BYTES`]).
    cut: bool,
    /// When the file was last looked at.
    polled_at: Option<SystemTime>,
    /// Why the file cannot be shown, said in place of its lines.
    pub problem: Option<String>,
}

impl JobOutput {
    /// The output in the file at `path`, which may not exist yet.
    #[must_use]
    pub fn at(path: PathBuf) -> Self {
        Self {
            path: Some(path),
            ..Self::default()
        }
    }

    /// The file, when the run has one.
    #[must_use]
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Reads what was added to the file, if [`POLL`] has passed since the
    /// last look at `now`; returns whether what is shown changed.
    pub fn poll(&mut self, now: SystemTime) -> bool {
        let due = self
            .polled_at
            .is_none_or(|at| now.duration_since(at).unwrap_or_default() >= POLL || now < at);
        if !due {
            return false;
        }
        self.polled_at = Some(now);
        self.read()
    }

    /// Reads what was added to the file now; returns whether what is shown
    /// changed. A missing file is no problem (the job has not started, or
    /// the run has no job); one that is not a regular file is named and
    /// left unread.
    pub fn read(&mut self) -> bool {
        let Some(path) = self.path.clone() else {
            return false;
        };
        let mut file = match runfile::open(&path) {
            Ok(file) => file,
            Err(ReadError::Missing) => return false,
            Err(err) => return self.set_problem(Some(format!("{}; not shown", err.at(&path)))),
        };
        let meta = match file.metadata() {
            Ok(meta) => meta,
            Err(err) => return self.set_problem(Some(format!("{}: {err}", path.display()))),
        };
        let mut changed = self.set_problem(None);
        let identity = (meta.dev(), meta.ino());
        let len = meta.len();
        if self.identity != Some(identity) || len < self.offset {
            // Another file, or this one cut shorter: its lines from the start.
            changed |= self.identity.is_some();
            self.start_over();
            self.identity = Some(identity);
        }
        if len == self.offset {
            return changed;
        }
        if len - self.offset > TAIL_BYTES {
            self.offset = len - TAIL_BYTES;
            self.partial.clear();
            self.mid_line = true;
            self.cut = true;
        }
        let mut bytes = Vec::new();
        let read = file
            .seek(SeekFrom::Start(self.offset))
            .and_then(|_| (&mut file).take(TAIL_BYTES).read_to_end(&mut bytes));
        if let Err(err) = read {
            return self.set_problem(Some(format!("{}: {err}", path.display())));
        }
        self.offset += bytes.len() as u64;
        self.take(&bytes);
        true
    }

    fn set_problem(&mut self, problem: Option<String>) -> bool {
        let problem = problem.map(|p| text::escape(&p).into_owned());
        let changed = self.problem != problem;
        self.problem = problem;
        changed
    }

    fn start_over(&mut self) {
        let path = self.path.take();
        let polled_at = self.polled_at;
        *self = Self {
            path,
            polled_at,
            ..Self::default()
        };
    }

    /// Takes in bytes read after the last ones.
    fn take(&mut self, mut bytes: &[u8]) {
        if self.mid_line {
            let Some(end) = bytes.iter().position(|&b| b == b'\n') else {
                return;
            };
            bytes = &bytes[end + 1..];
            self.mid_line = false;
        }
        for piece in bytes.split_inclusive(|&b| b == b'\n') {
            if let Some(line) = piece.strip_suffix(b"\n") {
                self.partial.extend_from_slice(line);
                let line = shown(&std::mem::take(&mut self.partial));
                self.push(line);
            } else {
                self.partial.extend_from_slice(piece);
                if self.partial.len() > PARTIAL_BYTES {
                    let line = shown(&std::mem::take(&mut self.partial));
                    self.push(line);
                }
            }
        }
    }

    fn push(&mut self, line: String) {
        self.lines.push_back(line);
        if self.lines.len() > LINES_KEPT {
            self.lines.pop_front();
            self.dropped += 1;
        }
    }

    /// Whether there is anything to show: a line, or a reason there is none.
    #[must_use]
    pub fn is_shown(&self) -> bool {
        self.problem.is_some() || !self.lines.is_empty() || !self.partial.is_empty()
    }

    /// The lines to show, escaped, oldest first: the complete ones, then
    /// the one being written.
    #[must_use]
    pub fn lines(&self) -> Vec<Cow<'_, str>> {
        let mut lines: Vec<Cow<'_, str>> = self
            .lines
            .iter()
            .map(|l| Cow::Borrowed(l.as_str()))
            .collect();
        if !self.partial.is_empty() {
            lines.push(Cow::Owned(shown(&self.partial)));
        }
        lines
    }

    /// The absolute number (from the first line read) of the first line of
    /// [`Self::lines`].
    #[must_use]
    pub fn first_number(&self) -> u64 {
        self.dropped
    }

    /// Whether earlier output was left unread or let go.
    #[must_use]
    pub fn is_cut(&self) -> bool {
        self.cut || self.dropped > 0
    }

    /// The last line with something on it.
    #[must_use]
    pub fn last_line(&self) -> Option<String> {
        let partial = (!self.partial.is_empty()).then(|| shown(&self.partial));
        partial
            .into_iter()
            .chain(self.lines.iter().rev().cloned())
            .find(|line| !line.trim().is_empty())
    }
}

/// A line of output as a terminal would show it, made safe: a carriage
/// return starts the line over (a progress bar redrawn in place shows its
/// latest state), a tab becomes spaces to the next stop, bytes that are not
/// UTF-8 become U+FFFD, and every other control character (an escape
/// sequence's ESC included) is written visibly escaped; cut at
/// [`LINE_CHARS`] characters.
#[must_use]
pub fn shown(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.strip_suffix('\r').unwrap_or(&text);
    let last = text.rsplit('\r').next().unwrap_or_default();
    let mut expanded = String::with_capacity(last.len());
    let mut column = 0;
    for c in last.chars() {
        if c == '\t' {
            let to = (column / TAB + 1) * TAB;
            expanded.extend(std::iter::repeat_n(' ', to - column));
            column = to;
        } else {
            expanded.push(c);
            column += 1;
        }
    }
    let escaped = text::escape(&expanded);
    if escaped.chars().count() <= LINE_CHARS {
        return escaped.into_owned();
    }
    escaped.chars().take(LINE_CHARS).chain(['…']).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Instant;

    fn append(path: &Path, bytes: &[u8]) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        file.write_all(bytes).unwrap();
    }

    #[test]
    fn lines_come_as_the_file_grows_and_an_unfinished_one_shows_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job_output.log");
        let mut output = JobOutput::at(path.clone());
        assert!(!output.read() && !output.is_shown(), "no file yet: nothing");
        append(&path, b"one\ntw");
        assert!(output.read());
        assert_eq!(output.lines(), ["one", "tw"]);
        append(&path, b"o\r\n 50%\r100%");
        assert!(output.read());
        assert_eq!(output.lines(), ["one", "two", "100%"]);
        assert!(!output.read(), "nothing new");
        assert_eq!(output.last_line().as_deref(), Some("100%"));
        // Polled no more often than POLL.
        let now = SystemTime::now();
        append(&path, b"\nthree\n");
        assert!(output.poll(now));
        append(&path, b"four\n");
        assert!(!output.poll(now + POLL / 2));
        assert!(output.poll(now + POLL));
        assert_eq!(output.lines(), ["one", "two", "100%", "three", "four"]);
    }

    #[test]
    fn a_huge_file_is_read_from_near_its_end_only_and_lines_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job_output.log");
        let line = format!("{}\n", "x".repeat(99));
        let mut big = line.repeat(100_000).into_bytes(); // 10 MB
        big.extend_from_slice(b"the last line\n");
        std::fs::write(&path, &big).unwrap();
        let mut output = JobOutput::at(path.clone());
        assert!(output.read());
        let lines = output.lines();
        assert_eq!(lines.len(), LINES_KEPT);
        assert_eq!(lines.last().map(AsRef::as_ref), Some("the last line"));
        assert!(lines.iter().all(|l| l == "the last line" || l.len() == 99));
        assert!(output.is_cut());
        assert_eq!(output.offset, big.len() as u64);
        // A line without an end, however long, is cut to be shown.
        let long = vec![b'y'; 3 * PARTIAL_BYTES];
        append(&path, &long);
        output.read();
        let last = output.lines().last().unwrap().to_string();
        assert_eq!(last.chars().count(), LINE_CHARS + 1);
        assert!(last.ends_with('…'));
    }

    #[test]
    fn a_file_replaced_or_cut_shorter_is_read_again_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job_output.log");
        std::fs::write(&path, b"old one\nold two\n").unwrap();
        let mut output = JobOutput::at(path.clone());
        output.read();
        std::fs::write(&path, b"new\n").unwrap();
        assert!(output.read());
        assert_eq!(output.lines(), ["new"]);
        let other = dir.path().join("other");
        std::fs::write(&other, b"another file\n").unwrap();
        std::fs::rename(&other, &path).unwrap();
        assert!(output.read());
        assert_eq!(output.lines(), ["another file"]);
    }

    #[test]
    fn a_fifo_or_a_device_is_named_not_read_and_never_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("job_output.log");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let started = Instant::now();
        let mut output = JobOutput::at(fifo);
        assert!(output.read());
        let problem = output.problem.clone().unwrap();
        assert!(
            problem.contains("a FIFO") && problem.contains("not shown"),
            "{problem}"
        );
        assert!(output.is_shown());
        let zero = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let mut output = JobOutput::at(zero);
        output.read();
        assert!(output.problem.unwrap().contains("a character device"));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn every_control_character_is_escaped_and_tabs_and_returns_shown_as_a_terminal_would() {
        let shown = shown(b"\x1b[2J\x1b]52;c;aGk=\x07a\tb\x7f\xc2\x9b\xe2\x80\xae\xff\r");
        assert_eq!(
            shown,
            "\\x1b[2J\\x1b]52;c;aGk=\\x07a       b\\x7f\\u{9b}\\u{202e}\u{fffd}"
        );
        assert!(!shown.chars().any(text::is_unsafe));
        assert_eq!(super::shown(b"10%\r 20%\r30%"), "30%");
    }
}
