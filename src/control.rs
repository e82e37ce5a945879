//! Steering a run from outside its process: a spool folder RUN_DIR/control/
//! where `trainui ctl` (and `watch`) drop small JSON command files, and
//! live changes of RUN_DIR/config.json.
//!
//! A command file is `{"v": 2, "id": ..., "created_unix": ..., "command":
//! COMMAND}`, COMMAND being a serialised [`Command`] (`"eval_now"`, `{"set":
//! {"eval.eval_steps": 100}}`); files of version 1 (`"command": "eval"`, or
//! `"set"` with an `"assignment"`) are still read. Every request is answered
//! with a `control` event in events.jsonl: accepted (then the trainer's own
//! `command_ack` follows) or rejected, with the reason. A bad file never
//! stops the run.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::channel::Controller;
use crate::config::{self, Config};
use crate::error::{Error, Result};
use crate::events::{Command, CommandKind, Event, Phase};
use crate::rundir;
use crate::watchdog::Heartbeat;

pub const SPOOL_DIR: &str = "control";
/// Version of the command files `send` writes.
pub const REQUEST_VERSION: u32 = 2;
/// Largest command file read; anything bigger is rejected unread.
pub const MAX_REQUEST_BYTES: u64 = 4096;
/// Requests older than this are stale (left by a `ctl` that gave up).
pub const STALE_AFTER: Duration = Duration::from_mins(1);
const POLL: Duration = Duration::from_millis(100);

/// One command file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Format version, [`REQUEST_VERSION`].
    pub v: u32,
    /// Chosen by the sender; the answering event carries it.
    pub id: String,
    /// Seconds since the Unix epoch when it was written.
    pub created_unix: f64,
    pub command: Command,
}

#[must_use]
pub fn spool_dir(run_dir: &Path) -> PathBuf {
    run_dir.join(SPOOL_DIR)
}

#[must_use]
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Writes a request atomically (a hidden temporary name, then a rename), so
/// the run never reads half a file. Returns the request's id.
pub fn send(run_dir: &Path, command: &Command) -> Result<String> {
    let dir = spool_dir(run_dir);
    if !dir.is_dir() {
        return Err(Error::Usage(format!(
            "{}: no control folder; is {} a trainui run directory, and has its run started?",
            dir.display(),
            run_dir.display()
        )));
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let id = format!("{nanos}-{}-{}", std::process::id(), command.word());
    let request = Request {
        v: REQUEST_VERSION,
        id: id.clone(),
        created_unix: unix_now(),
        command: command.clone(),
    };
    let json = serde_json::to_vec(&request).expect("a request serialises");
    let temp = dir.join(format!(".{id}.tmp"));
    fs::write(&temp, json).map_err(Error::io("cannot write a command file", &temp))?;
    let path = dir.join(format!("{id}.json"));
    fs::rename(&temp, &path).map_err(Error::io("cannot place a command file", &path))?;
    Ok(id)
}

/// Removes a request no run has read (`ctl` gave up waiting).
pub fn withdraw(run_dir: &Path, id: &str) {
    let _ = fs::remove_file(spool_dir(run_dir).join(format!("{id}.json")));
}

/// What the run needs to answer requests.
pub struct Spool {
    pub run_dir: PathBuf,
    pub controller: Controller,
    pub events: Sender<Event>,
    /// The trainer's heartbeat: the spool serves until the trainer is done.
    pub heartbeat: Arc<Heartbeat>,
    /// The config in force, kept in step with the trainer's: both apply the
    /// same checked changes in the same order.
    pub config: Config,
}

impl Spool {
    /// Creates the spool (owner-only) and serves it on its own thread until
    /// the trainer is done.
    pub fn spawn(self) -> Result<()> {
        let dir = spool_dir(&self.run_dir);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .and_then(|()| fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)))
            .map_err(Error::io("cannot create the control spool", &dir))?;
        thread::Builder::new()
            .name("control".into())
            .spawn(move || self.serve())
            .map_err(|e| Error::Failed(format!("cannot start the control thread: {e}")))?;
        Ok(())
    }

    fn serve(mut self) {
        let config_path = self.run_dir.join(rundir::CONFIG_FILE);
        let mut config_stamp = stamp(&config_path);
        while self.heartbeat.phase() != Phase::Done {
            for path in pending(&spool_dir(&self.run_dir)) {
                self.answer(&path);
                let _ = fs::remove_file(&path);
            }
            if stamp(&config_path) != config_stamp {
                self.reread_config(&config_path);
                config_stamp = stamp(&config_path);
            }
            thread::sleep(POLL);
        }
    }

    fn reply(&self, id: &str, command: &str, accepted: bool, message: String) {
        let _ = self.events.send(Event::Control {
            id: id.to_owned(),
            command: command.to_owned(),
            accepted,
            message,
        });
    }

    fn answer(&mut self, path: &Path) {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let request = match read_request(path) {
            Ok(request) => request,
            Err(reason) => return self.reply(&name, "?", false, reason),
        };
        let word = request.command.word();
        let age = unix_now() - request.created_unix;
        if age > STALE_AFTER.as_secs_f64() {
            return self.reply(
                &request.id,
                word,
                false,
                format!("stale: written {age:.0}s ago; send it again"),
            );
        }
        let message = match &request.command {
            Command::Set(changes) => match self.change(changes, "set") {
                Ok(message) => message,
                Err(err) => return self.reply(&request.id, word, false, err.to_string()),
            },
            command => {
                self.controller.send(command.clone());
                "sent to the trainer".to_owned()
            }
        };
        self.reply(&request.id, word, true, message);
    }

    /// Makes `changes` to the config in force if they pass its checks and
    /// touch only live keys; the trainer then makes the same changes.
    fn change(&mut self, changes: &BTreeMap<String, Value>, source: &str) -> Result<String> {
        let (result, applied) = config::change_live(&self.config, changes, source)?;
        if applied.is_empty() {
            return Ok("no change".into());
        }
        self.config = result;
        let json = serde_json::to_vec_pretty(&self.config).expect("a config serialises");
        let path = self.run_dir.join(rundir::CONFIG_FILE);
        if let Err(err) = rundir::write_atomically(&path, &json) {
            let _ = self.events.send(Event::Warning {
                step: self.heartbeat.step(),
                message: format!("{}: cannot record the change: {err}", path.display()),
            });
        }
        self.controller.send(Command::Set(changes.clone()));
        Ok(format!("applied {}", applied.join(", ")))
    }

    /// An edit of RUN_DIR/config.json: live keys apply, others are refused.
    fn reread_config(&mut self, path: &Path) {
        let source = path.display().to_string();
        let edited = fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("{source}: {e}")))
            .and_then(|text| {
                serde_json::from_str(&text).map_err(|e| {
                    Error::Config(format!(
                        "{source}:{}:{}: invalid JSON: {e}",
                        e.line(),
                        e.column()
                    ))
                })
            })
            .and_then(|value| config::from_value(&source, value, &[]));
        let outcome = edited.and_then(|mut edited| {
            // Relative data paths mean what they meant at start.
            if let Ok(cwd) = std::env::current_dir() {
                edited.resolve_paths(&cwd);
            }
            let before = serde_json::to_value(&self.config).expect("a config serialises");
            let after = serde_json::to_value(&edited).expect("a config serialises");
            let changes = config::differing_keys(&before, &after, "")
                .into_iter()
                .map(|key| {
                    let value = config::lookup(&after, &key).cloned().unwrap_or(Value::Null);
                    (key, value)
                })
                .collect();
            self.change(&changes, &source)
        });
        match outcome {
            Ok(message) if message == "no change" => {}
            Ok(message) => self.reply("config.json", "edit", true, message),
            Err(err) => self.reply("config.json", "edit", false, err.to_string()),
        }
    }
}

/// Request files ready to read: `*.json`, oldest first (temporary files
/// start with a dot and are skipped).
fn pending(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !n.starts_with('.'))
        })
        .collect();
    files.sort();
    files
}

/// Reads a request file, refusing links, non-files and anything large.
fn read_request(path: &Path) -> std::result::Result<Request, String> {
    let meta = fs::symlink_metadata(path).map_err(|e| format!("unreadable: {e}"))?;
    if meta.file_type().is_symlink() {
        return Err("refused: a symbolic link".into());
    }
    if !meta.is_file() {
        return Err("refused: not a regular file".into());
    }
    if meta.len() > MAX_REQUEST_BYTES {
        return Err(format!(
            "refused: {} bytes, more than {MAX_REQUEST_BYTES}",
            meta.len()
        ));
    }
    if path.extension().and_then(|e| e.to_str()) != Some("json") {
        return Err("refused: command files end in .json".into());
    }
    let mut text = String::new();
    fs::File::open(path)
        .and_then(|f| f.take(MAX_REQUEST_BYTES).read_to_string(&mut text))
        .map_err(|e| format!("unreadable: {e}"))?;
    parse_request(&text)
}

/// A command file of version 1: the command is its `ctl` word, and `set`
/// carries an `assignment` (`KEY=VALUE`).
#[derive(Deserialize)]
struct RequestV1 {
    id: String,
    created_unix: f64,
    command: String,
    assignment: Option<String>,
}

/// A request of the current version, or of version 1.
fn parse_request(text: &str) -> std::result::Result<Request, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not a command: {e}"))?;
    match value.get("v").and_then(Value::as_u64) {
        Some(1) => {}
        Some(v) if v == u64::from(REQUEST_VERSION) => {
            return serde_json::from_value(value).map_err(|e| format!("not a command: {e}"));
        }
        Some(v) => return Err(format!("unknown request version {v}")),
        None => return Err("not a command: no version \"v\"".into()),
    }
    let old: RequestV1 =
        serde_json::from_value(value).map_err(|e| format!("not a command: {e}"))?;
    let kind = CommandKind::from_word(&old.command).ok_or_else(|| {
        format!(
            "unknown command {:?}; the commands are {}",
            old.command,
            CommandKind::all()
                .iter()
                .map(|kind| kind.word())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let command = match (kind, old.assignment) {
        (CommandKind::Set, Some(assignment)) => {
            let (key, value) = config::parse_assignment(&assignment)?;
            Command::Set(BTreeMap::from([(key, value)]))
        }
        (CommandKind::Set, None) => return Err("set without an assignment".into()),
        (kind, _) => kind.command().ok_or("not a command")?,
    };
    Ok(Request {
        v: REQUEST_VERSION,
        id: old.id,
        created_unix: old.created_unix,
        command,
    })
}

/// Modification time and size, to notice edits.
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_the_serialised_command() {
        let request = Request {
            v: REQUEST_VERSION,
            id: "x".into(),
            created_unix: 1.5,
            command: Command::Set(BTreeMap::from([("eval.eval_steps".into(), 100.into())])),
        };
        let json = serde_json::to_string(&request).unwrap();
        assert_eq!(
            json,
            r#"{"v":2,"id":"x","created_unix":1.5,"command":{"set":{"eval.eval_steps":100}}}"#
        );
        assert_eq!(parse_request(&json).unwrap(), request);
        let eval = r#"{"v":2,"id":"e","created_unix":1.5,"command":"eval_now"}"#;
        assert_eq!(parse_request(eval).unwrap().command, Command::EvalNow);
    }

    #[test]
    fn version_1_files_are_still_read() {
        let set = r#"{"v":1,"id":"x","created_unix":1.5,"command":"set","assignment":"eval.eval_steps=100"}"#;
        let request = parse_request(set).unwrap();
        assert_eq!(
            request.command,
            Command::Set(BTreeMap::from([("eval.eval_steps".into(), 100.into())]))
        );
        assert_eq!(request.id, "x");
        for kind in CommandKind::all() {
            let Some(command) = kind.command() else {
                continue;
            };
            let text = format!(
                r#"{{"v":1,"id":"x","created_unix":1,"command":"{}"}}"#,
                kind.word()
            );
            assert_eq!(parse_request(&text).unwrap().command, command);
        }
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("a.json");
        fs::write(&garbage, "not json").unwrap();
        assert!(
            read_request(&garbage)
                .unwrap_err()
                .starts_with("not a command")
        );
        let unknown = dir.path().join("b.json");
        fs::write(
            &unknown,
            r#"{"v":1,"id":"b","created_unix":1,"command":"dance"}"#,
        )
        .unwrap();
        assert!(
            read_request(&unknown)
                .unwrap_err()
                .starts_with("unknown command \"dance\"; the commands are stop, pause")
        );
        let unknown = dir.path().join("b2.json");
        fs::write(
            &unknown,
            r#"{"v":2,"id":"b","created_unix":1,"command":"dance"}"#,
        )
        .unwrap();
        assert!(
            read_request(&unknown)
                .unwrap_err()
                .contains("unknown variant `dance`")
        );
        let future = dir.path().join("f.json");
        fs::write(
            &future,
            r#"{"v":9,"id":"b","created_unix":1,"command":"stop"}"#,
        )
        .unwrap();
        assert_eq!(
            read_request(&future).unwrap_err(),
            "unknown request version 9"
        );
        let big = dir.path().join("c.json");
        fs::write(&big, vec![b' '; 5000]).unwrap();
        assert!(read_request(&big).unwrap_err().contains("5000 bytes"));
        let link = dir.path().join("d.json");
        std::os::unix::fs::symlink(&unknown, &link).unwrap();
        assert_eq!(read_request(&link).unwrap_err(), "refused: a symbolic link");
        let folder = dir.path().join("e.json");
        fs::create_dir(&folder).unwrap();
        assert_eq!(
            read_request(&folder).unwrap_err(),
            "refused: not a regular file"
        );
    }
}
