//! A command file: where it is dropped (the spool, RUN_DIR/control/), its
//! format ([`Request`], and version 1 still read), and reading one safely.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config;
use crate::events::{Command, CommandKind};

pub const SPOOL_DIR: &str = "control";
/// Version of the command files `send` writes.
pub const REQUEST_VERSION: u32 = 2;
/// Largest command file read; anything bigger is rejected unread.
pub const MAX_REQUEST_BYTES: u64 = 4096;
/// Requests older than this are stale (left by a `ctl` that gave up).
pub const STALE_AFTER: Duration = Duration::from_mins(1);

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

/// The entries of the spool, oldest name first, each a command file or the
/// reason it is not one. Hidden entries (a sender's temporary file, still
/// being written) are passed over.
pub(super) fn pending(dir: &Path) -> Vec<(PathBuf, std::result::Result<(), String>)> {
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
    command_name(path.file_name().and_then(|n| n.to_str()).unwrap_or(""))?;
    let meta = fs::symlink_metadata(path).map_err(|e| format!("unreadable: {e}"))?;
    if meta.file_type().is_symlink() {
        return Err("refused: a symbolic link".into());
    }
    if !meta.is_file() {
        return Err("refused: not a regular file".into());
    }
    Ok(())
}

/// Whether `name` is a command file's name: `NAME.json`, NAME of letters,
/// digits, `-`, `_` and `.`, not hidden.
pub(super) fn command_name(name: &str) -> std::result::Result<(), String> {
    let stem = name.strip_suffix(".json").unwrap_or("");
    if stem.is_empty()
        || stem.starts_with('.')
        || stem.len() > 200
        || !stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err("refused: not a command file (NAME.json)".into());
    }
    Ok(())
}

/// Reads a request file, refusing links, non-files and anything large.
pub(super) fn read_request(path: &Path) -> std::result::Result<Request, String> {
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
pub(super) fn parse_request(text: &str) -> std::result::Result<Request, String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

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
