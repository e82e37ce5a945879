//! The run directory, the contract between a run and everything that reads it:
//!
//! ```text
//! RUN_DIR/config.json                  effective config of the run
//! RUN_DIR/events.jsonl                 every event, one JSON object a line
//! RUN_DIR/status/training_status.json  current status, replaced atomically
//! RUN_DIR/training_output.log          the lines headless mode prints
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::events::{Event, RunStatus, SCHEMA_VERSION};

pub const EVENTS_FILE: &str = "events.jsonl";
pub const STATUS_FILE: &str = "status/training_status.json";
pub const LOG_FILE: &str = "training_output.log";
pub const CONFIG_FILE: &str = "config.json";

/// One line of events.jsonl: the event with its schema version and time.
#[derive(Serialize)]
struct EventRecord<'a> {
    v: u32,
    /// RFC 3339, UTC, milliseconds.
    time: String,
    #[serde(flatten)]
    event: &'a Event,
}

/// Writes events, status and log lines of one run.
pub struct RunDir {
    root: PathBuf,
    events: BufWriter<File>,
    log: BufWriter<File>,
    status: RunStatus,
}

impl RunDir {
    /// Opens the run directory for writing, creating it if needed. Earlier
    /// events and log lines are kept: a resumed run appends to them.
    pub fn open(root: &Path, config: &Config, status: RunStatus) -> Result<Self> {
        let status_dir = root.join("status");
        fs::create_dir_all(&status_dir)
            .map_err(Error::io("cannot create the run directory", &status_dir))?;
        let append = |name: &str| {
            let path = root.join(name);
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map(BufWriter::new)
                .map_err(Error::io("cannot open for appending", &path))
        };
        let events = append(EVENTS_FILE)?;
        let log = append(LOG_FILE)?;
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

    /// Appends the event to events.jsonl and, when it changes what the status
    /// file shows, rewrites that too.
    pub fn record(&mut self, event: &Event) -> io::Result<()> {
        let record = EventRecord {
            v: SCHEMA_VERSION,
            time: now_rfc3339(),
            event,
        };
        serde_json::to_writer(&mut self.events, &record)?;
        self.events.write_all(b"\n")?;
        self.events.flush()?;
        if matches!(
            event,
            Event::GenerationStarted(_) | Event::GenerationProgress { .. }
        ) {
            return Ok(());
        }
        self.status.apply(event);
        self.write_status()
    }

    /// Appends one line to training_output.log.
    pub fn log_line(&mut self, line: &str) -> io::Result<()> {
        self.log.write_all(line.as_bytes())?;
        self.log.write_all(b"\n")?;
        self.log.flush()
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

/// Replaces `path` with `contents` so that a reader sees the old file or the
/// new one, never a mix: write a temporary file beside it, then rename.
pub fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut temp_name = path.file_name().unwrap_or_default().to_os_string();
    temp_name.push(format!(".tmp.{}", std::process::id()));
    let temp = path.with_file_name(temp_name);
    {
        let mut file = File::create(&temp)?;
        file.write_all(contents)?;
        file.write_all(b"\n")?;
    }
    fs::rename(&temp, path)
}

#[must_use]
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// Reads events.jsonl as it grows: whole lines only (a line still being
/// written waits for its end), garbage lines counted and skipped.
pub struct EventTail {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
    /// Lines that were not events.
    pub garbage: u64,
}

impl EventTail {
    /// Reads `RUN_DIR/events.jsonl` from byte `offset` on (0: the whole run).
    #[must_use]
    pub fn new(run_dir: &Path, offset: u64) -> Self {
        Self {
            path: run_dir.join(EVENTS_FILE),
            offset,
            partial: Vec::new(),
            garbage: 0,
        }
    }

    /// The events appended since the last call (none while the file does not
    /// exist yet). At most `max_bytes` are read at a time.
    pub fn read_new(&mut self, max_bytes: u64) -> Vec<Event> {
        use std::io::{Read, Seek, SeekFrom};
        let Ok(mut file) = File::open(&self.path) else {
            return Vec::new();
        };
        let len = file.metadata().map_or(0, |m| m.len());
        if len < self.offset {
            // The file was replaced: start over.
            self.offset = 0;
            self.partial.clear();
        }
        if file.seek(SeekFrom::Start(self.offset)).is_err() {
            return Vec::new();
        }
        let mut chunk = Vec::new();
        let read = file.take(max_bytes).read_to_end(&mut chunk).unwrap_or(0);
        self.offset += read as u64;
        self.partial.extend_from_slice(&chunk);
        let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return Vec::new();
        };
        let complete: Vec<u8> = self.partial.drain(..=end).collect();
        let mut events = Vec::new();
        for line in complete
            .split(|&b| b == b'\n')
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        {
            match serde_json::from_slice::<Event>(line) {
                Ok(event) => events.push(event),
                Err(_) => self.garbage += 1,
            }
        }
        events
    }
}

/// Reads the status file of a run directory.
pub fn read_status(root: &Path) -> Result<RunStatus> {
    let path = root.join(STATUS_FILE);
    let text = fs::read_to_string(&path).map_err(|err| {
        Error::Usage(format!(
            "{}: cannot read the status file: {err}; is this a trainui run directory?",
            path.display()
        ))
    })?;
    serde_json::from_str(&text).map_err(|err| {
        Error::Input(format!(
            "{}: not a trainui status file: {err}",
            path.display()
        ))
    })
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
        assert_eq!(tail.read_new(1 << 20), [first]);
        assert_eq!(tail.garbage, 1);
        fs::write(&path, format!("{done}{half}\n")).unwrap();
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
}
