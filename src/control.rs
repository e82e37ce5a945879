//! Steering a run from outside its process: a spool folder RUN_DIR/control/
//! where `trainui ctl` (and `watch`) drop small JSON command files, and
//! live changes of RUN_DIR/config.json.
//!
//! Every request is answered with a `control` event in events.jsonl: accepted
//! (then the trainer's own `command_ack` follows) or rejected, with the
//! reason. A bad file never stops the run.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{self, Config};
use crate::events::{Command, Event, LiveSettings};
use crate::rundir;
use crate::trainer::Controller;
use crate::watchdog::{Heartbeat, Phase};

pub const SPOOL_DIR: &str = "control";
/// Largest command file read; anything bigger is rejected unread.
pub const MAX_REQUEST_BYTES: u64 = 4096;
/// Requests older than this are stale (left by a `ctl` that gave up).
pub const STALE_AFTER: Duration = Duration::from_mins(1);
const POLL: Duration = Duration::from_millis(100);

/// Keys that can change while a run goes on.
pub const LIVE_KEYS: [&str; 12] = [
    "train.log_steps",
    "eval.eval_steps",
    "eval.val_batches",
    "eval.samples",
    "eval.max_new_tokens",
    "eval.min_new_tokens",
    "eval.eval_timeout_seconds",
    "eval.temperature",
    "eval.timeout_warn_rate",
    "checkpoint.save_steps",
    "checkpoint.save_total_limit",
    "watchdog.stall_timeout_seconds",
];

/// One command file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Format version, 1.
    pub v: u32,
    /// Chosen by the sender; the answering event carries it.
    pub id: String,
    /// Seconds since the Unix epoch when it was written.
    pub created_unix: f64,
    #[serde(flatten)]
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Action {
    Eval,
    Abort,
    Pause,
    Resume,
    Save,
    Stop,
    /// `KEY=VALUE`, as with `--set`.
    Set {
        assignment: String,
    },
}

impl Action {
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Eval => "eval",
            Self::Abort => "abort",
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Save => "save",
            Self::Stop => "stop",
            Self::Set { .. } => "set",
        }
    }

    /// The trainer command this becomes (`set` is handled here).
    #[must_use]
    pub fn command(&self) -> Option<Command> {
        Some(match self {
            Self::Eval => Command::EvalNow,
            Self::Abort => Command::AbortGeneration,
            Self::Pause => Command::Pause,
            Self::Resume => Command::Resume,
            Self::Save => Command::Save,
            Self::Stop => Command::Stop,
            Self::Set { .. } => return None,
        })
    }
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
pub fn send(run_dir: &Path, action: Action) -> Result<String, String> {
    let dir = spool_dir(run_dir);
    if !dir.is_dir() {
        return Err(format!(
            "{}: no control folder; is {} a trainui run directory, and has its run started?",
            dir.display(),
            run_dir.display()
        ));
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let id = format!("{nanos}-{}-{}", std::process::id(), action.name());
    let request = Request {
        v: 1,
        id: id.clone(),
        created_unix: unix_now(),
        action,
    };
    let json = serde_json::to_vec(&request).expect("a request serialises");
    let temp = dir.join(format!(".{id}.tmp"));
    fs::write(&temp, json).map_err(|e| format!("{}: {e}", temp.display()))?;
    fs::rename(&temp, dir.join(format!("{id}.json")))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(id)
}

/// What the run needs to answer requests.
pub struct Spool {
    pub run_dir: PathBuf,
    pub controller: Controller,
    pub events: Sender<Event>,
    pub heartbeat: Arc<Heartbeat>,
    /// The config in force; live changes update it.
    pub config: Config,
    /// The watchdog's timeout, which a live change can move.
    pub stall_timeout_millis: Arc<AtomicU64>,
}

impl Spool {
    /// Creates the spool (owner-only) and serves it on its own thread until
    /// the trainer is done.
    pub fn spawn(self) -> std::io::Result<()> {
        let dir = spool_dir(&self.run_dir);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        thread::Builder::new()
            .name("control".into())
            .spawn(move || self.serve())?;
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
        let age = unix_now() - request.created_unix;
        if age > STALE_AFTER.as_secs_f64() {
            return self.reply(
                &request.id,
                request.action.name(),
                false,
                format!("stale: written {age:.0}s ago; send it again"),
            );
        }
        match &request.action {
            Action::Set { assignment } => {
                let outcome = self.change(std::slice::from_ref(assignment));
                let (accepted, message) = match outcome {
                    Ok(message) => {
                        self.write_config();
                        (true, message)
                    }
                    Err(message) => (false, message),
                };
                self.reply(&request.id, "set", accepted, message);
            }
            action => {
                let command = action.command().expect("only set has no command");
                self.reply(
                    &request.id,
                    action.name(),
                    true,
                    "sent to the trainer".into(),
                );
                self.controller.send(command);
            }
        }
    }

    /// Applies `--set`-style assignments to the config in force if they are
    /// valid and touch only live keys.
    fn change(&mut self, assignments: &[String]) -> Result<String, String> {
        let current = serde_json::to_value(&self.config).expect("a config serialises");
        let changed = config::from_value("the running config", current, assignments)
            .map_err(|e| e.to_string())?;
        self.adopt(changed)
    }

    fn adopt(&mut self, changed: Config) -> Result<String, String> {
        let before = serde_json::to_value(&self.config).expect("a config serialises");
        let after = serde_json::to_value(&changed).expect("a config serialises");
        let differences = differing_keys(&before, &after, "");
        if differences.is_empty() {
            return Ok("no change".into());
        }
        let refused: Vec<&String> = differences
            .iter()
            .filter(|key| !LIVE_KEYS.contains(&key.as_str()))
            .collect();
        if !refused.is_empty() {
            let names: Vec<&str> = refused.iter().map(|k| k.as_str()).collect();
            return Err(format!(
                "{} cannot change while the run goes on; stop it and start again with \
                 --resume latest and --set",
                names.join(", ")
            ));
        }
        self.config = changed;
        let settings = LiveSettings::from(&self.config);
        self.stall_timeout_millis.store(
            (self.config.watchdog.stall_timeout_seconds * 1000.0).round() as u64,
            Ordering::Relaxed,
        );
        self.controller.send(Command::Reconfigure(settings));
        let applied: Vec<String> = differences
            .iter()
            .map(|key| format!("{key} = {}", lookup(&after, key).unwrap_or(&Value::Null)))
            .collect();
        Ok(format!("applied {}", applied.join(", ")))
    }

    /// An edit of RUN_DIR/config.json: live keys apply, others are refused.
    fn reread_config(&mut self, path: &Path) {
        let source = path.display().to_string();
        let edited = fs::read_to_string(path)
            .map_err(|e| format!("{source}: {e}"))
            .and_then(|text| {
                serde_json::from_str(&text)
                    .map_err(|e| format!("{source}:{}:{}: invalid JSON: {e}", e.line(), e.column()))
            })
            .and_then(|value| config::from_value(&source, value, &[]).map_err(|e| e.to_string()));
        let outcome = edited.and_then(|mut edited| {
            // Relative data paths mean what they meant at start.
            if let Ok(cwd) = std::env::current_dir() {
                edited.resolve_paths(&cwd);
            }
            self.adopt(edited)
        });
        match outcome {
            Ok(message) if message == "no change" => {}
            Ok(message) => self.reply("config.json", "edit", true, message),
            Err(message) => self.reply("config.json", "edit", false, message),
        }
    }

    fn write_config(&self) {
        let json = serde_json::to_vec_pretty(&self.config).expect("a config serialises");
        let _ = rundir::write_atomically(&self.run_dir.join(rundir::CONFIG_FILE), &json);
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
fn read_request(path: &Path) -> Result<Request, String> {
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
    let request: Request =
        serde_json::from_str(&text).map_err(|e| format!("not a command: {e}"))?;
    if request.v != 1 {
        return Err(format!("unknown request version {}", request.v));
    }
    Ok(request)
}

/// Modification time and size, to notice edits.
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn lookup<'a>(value: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted
        .split('.')
        .try_fold(value, |node, part| node.get(part))
}

/// Dotted keys whose values differ between two configs.
fn differing_keys(before: &Value, after: &Value, prefix: &str) -> Vec<String> {
    match (before, after) {
        (Value::Object(a), Value::Object(b)) => a
            .iter()
            .flat_map(|(key, value)| {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                differing_keys(value, b.get(key).unwrap_or(&Value::Null), &path)
            })
            .collect(),
        (a, b) if a == b => Vec::new(),
        _ => vec![prefix.to_owned()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_as_small_json() {
        let request = Request {
            v: 1,
            id: "x".into(),
            created_unix: 1.5,
            action: Action::Set {
                assignment: "eval.eval_steps=100".into(),
            },
        };
        let json = serde_json::to_string(&request).unwrap();
        assert_eq!(
            json,
            r#"{"v":1,"id":"x","created_unix":1.5,"command":"set","assignment":"eval.eval_steps=100"}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&json).unwrap(), request);
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
                .contains("unknown variant `dance`")
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

    #[test]
    fn differing_keys_are_dotted() {
        let a = serde_json::json!({"eval": {"eval_steps": 1, "samples": 2}, "seed": 3});
        let b = serde_json::json!({"eval": {"eval_steps": 5, "samples": 2}, "seed": 4});
        assert_eq!(differing_keys(&a, &b, ""), ["eval.eval_steps", "seed"]);
    }
}
