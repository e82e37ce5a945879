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

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
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
#[cfg_attr(test, derive(schemars::JsonSchema))]
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
/// The spool must pass the checks the run makes of it ([`check_spool`]): a
/// command is never written through a link, into another user's folder or
/// one that others can open or swap.
pub fn send(run_dir: &Path, command: &Command) -> Result<String> {
    let dir = spool_dir(run_dir);
    if fs::symlink_metadata(&dir).is_err() {
        return Err(Error::Usage(format!(
            "{}: no control folder; is {} a trainui run directory, and has its run started?",
            dir.display(),
            run_dir.display()
        )));
    }
    check_spool_as(run_dir, "no command was sent: steer only runs of your own")?;
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
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&temp)
        .and_then(|mut file| file.write_all(&json))
        .map_err(Error::io("cannot write a command file", &temp))?;
    let path = dir.join(format!("{id}.json"));
    fs::rename(&temp, &path).map_err(Error::io("cannot place a command file", &path))?;
    Ok(id)
}

/// Removes a request no run has read (`ctl` gave up waiting).
pub fn withdraw(run_dir: &Path, id: &str) {
    let _ = fs::remove_file(spool_dir(run_dir).join(format!("{id}.json")));
}

/// Removes the requests this process sent that no run has read (their ids
/// hold its pid): for a run whose process is gone.
pub fn withdraw_own(run_dir: &Path) {
    let mine = format!("-{}-", std::process::id());
    for (path, kind) in pending(&spool_dir(run_dir)) {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if kind.is_ok() && name.contains(&mine) {
            let _ = fs::remove_file(&path);
        }
    }
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

/// The entries of the spool, oldest name first, each a command file or the
/// reason it is not one. Hidden entries (a sender's temporary file, still
/// being written) are passed over.
fn pending(dir: &Path) -> Vec<(PathBuf, std::result::Result<(), String>)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<_> = entries
        .filter_map(Result::ok)
        .filter(|entry| !entry.file_name().to_string_lossy().starts_with('.'))
        .map(|entry| {
            let path = entry.path();
            let kind = command_file(&path);
            (path, kind)
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// Whether `path` is a command file the spool may read and then remove: a
/// regular file (not a link) named like `NAME.json`, NAME of letters,
/// digits, `-`, `_` and `.`.
fn command_file(path: &Path) -> std::result::Result<(), String> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let stem = name.strip_suffix(".json").unwrap_or("");
    if stem.is_empty()
        || !stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err("refused: not a command file (NAME.json)".into());
    }
    let meta = fs::symlink_metadata(path).map_err(|e| format!("unreadable: {e}"))?;
    if meta.file_type().is_symlink() {
        return Err("refused: a symbolic link".into());
    }
    if !meta.is_file() {
        return Err("refused: not a regular file".into());
    }
    Ok(())
}

/// Whether group `gid` is `uid`'s own, proved from /etc/passwd and
/// /etc/group: the user's primary group, of the user's name, and no other
/// user has it as primary group or is listed in it (the "user private
/// group" of many Linux systems, which makes folders group-writable with
/// umask 002). Anything not found there (a directory service's groups)
/// counts as not private.
fn private_group(gid: u32, uid: u32) -> bool {
    let (Ok(passwd), Ok(group)) = (
        fs::read_to_string("/etc/passwd"),
        fs::read_to_string("/etc/group"),
    ) else {
        return false;
    };
    let fields = |line: &str| line.split(':').map(str::to_owned).collect::<Vec<_>>();
    let id = |field: Option<&String>| field.and_then(|f| f.parse::<u32>().ok());
    let users: Vec<Vec<String>> = passwd.lines().map(fields).collect();
    let Some(me) = users.iter().find(|u| id(u.get(2)) == Some(uid)) else {
        return false;
    };
    let name = &me[0];
    let own_primary = id(me.get(3)) == Some(gid);
    let others_primary = users
        .iter()
        .any(|u| id(u.get(3)) == Some(gid) && id(u.get(2)) != Some(uid));
    let entry = group
        .lines()
        .map(fields)
        .find(|g| id(g.get(2)) == Some(gid));
    let Some(entry) = entry else {
        return false;
    };
    let members_only_me = entry
        .get(3)
        .is_none_or(|m| m.split(',').filter(|x| !x.is_empty()).all(|x| x == name));
    own_primary && !others_primary && &entry[0] == name && members_only_me
}

/// Checks that `RUN_DIR/control`, where commands arrive, is safe to serve:
/// a real folder (not a link) of this process's user that no other user
/// can open (mode 0700), or not there yet; and that no other user can swap
/// it: the run directory and every folder above it belong to this user or
/// to root and are not writable by others (unless sticky, as /tmp; a group
/// of this user's own may write).
/// Anything else is refused before the run writes a file.
pub fn check_spool(run_dir: &Path) -> Result<()> {
    let dir = spool_dir(run_dir);
    check_spool_as(
        run_dir,
        &format!("pick another --run-dir, or move {} away", dir.display()),
    )
}

/// [`check_spool`], its refusals ending with `advice`.
fn check_spool_as(run_dir: &Path, advice: &str) -> Result<()> {
    let (uid, gid) = crate::process::effective_ids()?;
    let dir = spool_dir(run_dir);
    let refuse = |why: String| {
        Err(Error::Usage(format!(
            "{}: {why}; the control folder of a run is made by trainui (mode 0700, \
             owned by the user who runs it): {advice}",
            dir.display(),
        )))
    };
    match fs::symlink_metadata(&dir) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(Error::io("cannot read the control folder", &dir)(err)),
        Ok(meta) if meta.file_type().is_symlink() => {
            return refuse("is a symbolic link, not a folder of this run".into());
        }
        Ok(meta) if !meta.is_dir() => return refuse("is not a folder".into()),
        Ok(meta) if meta.uid() != uid => {
            return refuse(format!(
                "belongs to user {}, not to you ({uid})",
                meta.uid()
            ));
        }
        Ok(meta) if meta.mode() & 0o077 != 0 => {
            return refuse(format!(
                "has mode {:o}: other users can use it",
                meta.mode() & 0o777
            ));
        }
        Ok(_) => {}
    }
    // Every folder above it that exists, as written (links included) and
    // as they resolve: no other user may be able to swap any of them.
    let absolute = std::path::absolute(run_dir).map_err(Error::io("cannot resolve", run_dir))?;
    let start = absolute
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    let real = fs::canonicalize(start).map_err(Error::io("cannot resolve", start))?;
    for folder in start.ancestors().chain(real.ancestors()) {
        let meta = fs::metadata(folder).map_err(Error::io("cannot read", folder))?;
        let sticky = meta.mode() & 0o1000 != 0;
        if meta.uid() != uid && meta.uid() != 0 {
            return Err(Error::Usage(format!(
                "{}: belongs to user {}, who could replace {}; run in a folder of your own",
                folder.display(),
                meta.uid(),
                dir.display()
            )));
        }
        let group_can_write =
            meta.mode() & 0o020 != 0 && !(meta.gid() == gid && private_group(gid, uid));
        if (meta.mode() & 0o002 != 0 || group_can_write) && !sticky {
            return Err(Error::Usage(format!(
                "{}: other users can write to it (mode {:o}) and so replace {}; run in a \
                 folder only you can write to (chmod go-w {})",
                folder.display(),
                meta.mode() & 0o777,
                dir.display(),
                folder.display()
            )));
        }
    }
    Ok(())
}

/// Whether a run's config.json may steer it (a live edit, or the settings
/// a run is started again with): a regular file (not a link) of this
/// process's user that no other user can write, in a run directory that
/// passed [`check_spool`] (so nobody else can swap it).
pub fn owned_by_me_alone(path: &Path) -> Result<()> {
    let (uid, _) = crate::process::effective_ids()?;
    let meta = fs::symlink_metadata(path).map_err(Error::io("cannot read", path))?;
    let why = if meta.file_type().is_symlink() {
        "it is a symbolic link".to_owned()
    } else if !meta.is_file() {
        "it is not a regular file".to_owned()
    } else if meta.uid() != uid {
        format!("it belongs to user {}, not to you ({uid})", meta.uid())
    } else if meta.mode() & 0o022 != 0 {
        format!(
            "other users can write to it (mode {:o})",
            meta.mode() & 0o777
        )
    } else {
        return Ok(());
    };
    Err(Error::Usage(format!(
        "{}: refused: {why}; a run takes settings from a file only its owner can write \
         (chmod go-w {}), or from trainui ctl RUN_DIR set KEY=VALUE",
        path.display(),
        path.display()
    )))
}

/// Reads a request file, refusing links, non-files and anything large.
fn read_request(path: &Path) -> std::result::Result<Request, String> {
    command_file(path)?;
    let meta = fs::symlink_metadata(path).map_err(|e| format!("unreadable: {e}"))?;
    if meta.len() > MAX_REQUEST_BYTES {
        return Err(format!(
            "refused: {} bytes, more than {MAX_REQUEST_BYTES}",
            meta.len()
        ));
    }
    let bytes = crate::runfile::read(path, MAX_REQUEST_BYTES).map_err(|e| match e {
        crate::runfile::ReadError::TooLarge { .. } => {
            format!("refused: more than {MAX_REQUEST_BYTES} bytes")
        }
        e => format!("unreadable: {e}"),
    })?;
    let text = String::from_utf8(bytes).map_err(|e| format!("not a command: {e}"))?;
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
            let (key, value) = config::parse_assignment(&assignment).map_err(|e| e.to_string())?;
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
