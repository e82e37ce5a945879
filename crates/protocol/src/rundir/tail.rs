//! Reading events.jsonl as it grows: [`EventTail`], and the errors for a
//! run directory whose events cannot be read.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::files::EVENTS_FILE;
use super::line::{line_time, newer_version, parse_line};
use crate::error::Error;
use crate::events::Event;
use crate::runfile;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::RunState;
    use crate::rundir::event_line;
    use std::io::Write;

    fn step(step: u64) -> Event {
        crate::events::examples::step(step, 1_000_000, 1.0 / (step as f64 + 1.0))
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
