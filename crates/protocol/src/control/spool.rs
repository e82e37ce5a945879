//! The run's side: [`Spool`] serves the control folder on its own thread,
//! answers each command file with a `control` event, hands accepted
//! commands to the trainer, and applies live edits of config.json.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::thread;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::checks::{check_spool, owned_by_me_alone};
use super::request::{STALE_AFTER, pending, read_request, spool_dir, unix_now};
use crate::channel::Controller;
use crate::config::{self, Config};
use crate::error::{Error, Result};
use crate::events::{Command, Event, Phase};
use crate::rundir;
use crate::watchdog::Heartbeat;

/// How often the spool and config.json are looked at.
const POLL: Duration = Duration::from_millis(100);

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
    /// Creates the spool (owner-only) if it is not there, checks it (see
    /// [`check_spool`]), and serves it on its own thread until the trainer
    /// is done.
    pub fn spawn(self) -> Result<()> {
        let dir = spool_dir(&self.run_dir);
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(Error::io("cannot create the control spool", &dir)(err)),
        }
        check_spool(&self.run_dir)?;
        thread::Builder::new()
            .name("control".into())
            .spawn(move || self.serve())
            .map_err(|e| Error::Failed(format!("cannot start the control thread: {e}")))?;
        Ok(())
    }

    fn serve(mut self) {
        let config_path = self.run_dir.join(rundir::CONFIG_FILE);
        let mut config_stamp = stamp(&config_path);
        // Entries that are not command files: reported once, never removed.
        let mut reported = HashSet::new();
        while self.heartbeat.phase() != Phase::Done {
            for (path, kind) in pending(&spool_dir(&self.run_dir)) {
                match kind {
                    Ok(()) => {
                        self.answer(&path);
                        let _ = fs::remove_file(&path);
                    }
                    Err(reason) => {
                        if reported.insert(path.clone()) {
                            let name = path.file_name().unwrap_or_default().to_string_lossy();
                            self.reply(&name, "?", false, format!("{reason}; left in place"));
                        }
                    }
                }
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
        if -age > STALE_AFTER.as_secs_f64() {
            return self.reply(
                &request.id,
                word,
                false,
                format!(
                    "from the future: written {:.0}s ahead of this machine's clock",
                    -age
                ),
            );
        }
        // The answer goes out before the command, so that it comes before
        // the trainer's acknowledgement in events.jsonl (ctl reads them in
        // that order).
        match &request.command {
            Command::Set(changes) => match self.change(changes, "set") {
                Ok(None) => self.reply(&request.id, word, true, "no change".into()),
                Ok(Some(applied)) => {
                    self.record_config();
                    self.reply(&request.id, word, true, applied);
                    self.controller.send(request.command.clone());
                }
                Err(err) => self.reply(&request.id, word, false, err.to_string()),
            },
            command => {
                self.reply(&request.id, word, true, "sent to the trainer".into());
                self.controller.send(command.clone());
            }
        }
    }

    /// Makes `changes` to the config in force if they pass its checks and
    /// touch only live keys, and says what now applies (`None`: nothing
    /// changed). The watchdog's timeout changes at once, even when the
    /// trainer is stuck; the trainer makes the same changes when it gets
    /// the command.
    fn change(
        &mut self,
        changes: &BTreeMap<String, Value>,
        source: &str,
    ) -> Result<Option<String>> {
        let (result, applied) = config::change_live(&self.config, changes, source)?;
        if applied.is_empty() {
            return Ok(None);
        }
        self.config = result;
        self.heartbeat
            .set_stall_timeout(self.config.watchdog.stall_timeout_seconds.duration());
        Ok(Some(format!("applied {}", applied.join(", "))))
    }

    /// Rewrites RUN_DIR/config.json with the config in force (after a `set`:
    /// an edit of the file already says it).
    fn record_config(&self) {
        let json = serde_json::to_vec_pretty(&self.config).expect("a config serialises");
        let path = self.run_dir.join(rundir::CONFIG_FILE);
        if let Err(err) = rundir::write_atomically(&path, &json) {
            let _ = self.events.send(Event::Warning {
                step: self.heartbeat.step(),
                message: format!("{}: cannot record the change: {err}", path.display()),
            });
        }
    }

    /// An edit of RUN_DIR/config.json: live keys apply, others are refused,
    /// and so is a file that others could have written.
    fn reread_config(&mut self, path: &Path) {
        let source = path.display().to_string();
        let edited = owned_by_me_alone(path)
            .and_then(|()| config::read_saved(path))
            .and_then(|value| config::from_value(&source, value, &[]));
        let outcome = edited.and_then(|mut edited| {
            // Relative data paths mean what they meant at start.
            if let Ok(cwd) = std::env::current_dir() {
                edited.resolve_paths(&cwd);
            }
            let before = serde_json::to_value(&self.config).expect("a config serialises");
            let after = serde_json::to_value(&edited).expect("a config serialises");
            let changes: BTreeMap<String, Value> = config::differing_keys(&before, &after, "")
                .into_iter()
                .map(|key| {
                    let value = config::lookup(&after, &key).cloned().unwrap_or(Value::Null);
                    (key, value)
                })
                .collect();
            Ok(self
                .change(&changes, &source)?
                .map(|applied| (applied, changes)))
        });
        match outcome {
            Ok(None) => {}
            Ok(Some((applied, changes))) => {
                self.reply("config.json", "edit", true, applied);
                self.controller.send(Command::Set(changes));
            }
            Err(err) => self.reply("config.json", "edit", false, err.to_string()),
        }
    }
}

/// Modification time and size, to notice edits.
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}
