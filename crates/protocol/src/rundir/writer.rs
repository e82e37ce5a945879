//! Writing a run directory: [`RunDir`] appends events and log lines and
//! keeps the status file in step with the events.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::files::{
    CONFIG_FILE, EVENTS_FILE, LOG_FILE, STATUS_FILE, create_dirs, open_own, write_atomically,
};
use super::line::recorded;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::events::{Event, RunStatus};

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

#[must_use]
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{RunState, SCHEMA_VERSION};
    use crate::rundir::line::parse_line;
    use crate::rundir::{event_line, read_status};
    use crate::runfile;
    use std::fs;
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
}
