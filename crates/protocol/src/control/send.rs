//! The sender's side (`trainui ctl`, `watch`): dropping a command file
//! into a run's spool, and taking back what no run has read.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use super::checks::check_spool_as;
use super::request::{
    MAX_REQUEST_BYTES, REQUEST_VERSION, Request, command_name, parse_request, pending, spool_dir,
    unix_now,
};
use crate::error::{Error, Result};
use crate::events::Command;

/// Writes a request atomically (a hidden temporary name, then a rename), so
/// the run never reads half a file. Returns the request's id.
/// The spool must pass the checks the run makes of it
/// ([`check_spool`](super::checks::check_spool)): a command is never
/// written through a link, into another user's folder or one that others
/// can open or swap.
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

/// Prefix of the hidden file [`deliver`] keeps of each command file it
/// placed: the record that makes a second delivery of one name a no-op.
pub const DELIVERED_PREFIX: &str = ".delivered-";
/// How long [`deliver`] keeps its records: past [`STALE_AFTER`], a command
/// sent again would be refused as stale anyway.
const DELIVERED_KEPT: std::time::Duration = std::time::Duration::from_mins(10);

/// Places a command file written elsewhere (`trainui ctl` or `watch` on
/// another machine, through `trainui serve`), under its own name, at most
/// once: a name delivered before is not written again, however often it is
/// sent. Returns whether this call placed it.
///
/// The file is written as a hidden record first (created exclusively: of
/// two deliveries of one name at once, one wins), then linked under its
/// name, whole; the record stays behind for ten minutes.
/// The name and the request are checked as the run checks them, and the
/// spool as [`send`] checks it.
pub fn deliver(run_dir: &Path, name: &str, body: &str) -> Result<bool> {
    command_name(name).map_err(|why| Error::Usage(format!("command file {name:?}: {why}")))?;
    if body.len() as u64 > MAX_REQUEST_BYTES {
        return Err(Error::Usage(format!(
            "command file {name}: {} bytes, more than {MAX_REQUEST_BYTES}",
            body.len()
        )));
    }
    parse_request(body).map_err(|why| Error::Usage(format!("command file {name}: {why}")))?;
    let dir = spool_dir(run_dir);
    if fs::symlink_metadata(&dir).is_err() {
        return Err(Error::Usage(format!(
            "{}: no control folder; has the run started?",
            dir.display()
        )));
    }
    check_spool_as(run_dir, "no command was sent: steer only runs of your own")?;
    forget_old_deliveries(&dir);
    let record = dir.join(format!("{DELIVERED_PREFIX}{name}"));
    let created = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&record);
    let mut file = match created {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(err) => return Err(Error::io("cannot write a command file", &record)(err)),
    };
    file.write_all(body.as_bytes())
        .map_err(Error::io("cannot write a command file", &record))?;
    drop(file);
    let path = dir.join(name);
    match fs::hard_link(&record, &path) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(err) => Err(Error::io("cannot place a command file", &path)(err)),
    }
}

/// Removes the records of deliveries older than [`DELIVERED_KEPT`].
fn forget_old_deliveries(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.filter_map(std::result::Result::ok) {
        let old = entry
            .metadata()
            .and_then(|meta| meta.modified())
            .is_ok_and(|at| now.duration_since(at).unwrap_or_default() > DELIVERED_KEPT);
        if old
            && entry
                .file_name()
                .to_string_lossy()
                .starts_with(DELIVERED_PREFIX)
        {
            let _ = fs::remove_file(entry.path());
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::DirBuilderExt;

    fn spool() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::DirBuilder::new()
            .mode(0o700)
            .create(spool_dir(dir.path()))
            .unwrap();
        dir
    }

    fn body(id: &str) -> String {
        format!(
            r#"{{"v":2,"id":"{id}","created_unix":{},"command":"pause"}}"#,
            unix_now()
        )
    }

    #[test]
    fn a_delivered_command_is_placed_once_however_often_it_comes() {
        let run = spool();
        let name = "7-1-pause.json";
        let sent = body("7-1-pause");
        assert!(deliver(run.path(), name, &sent).unwrap());
        let placed = spool_dir(run.path()).join(name);
        assert_eq!(fs::read_to_string(&placed).unwrap(), sent);
        // Sent again while it waits, and again after the run took it.
        assert!(!deliver(run.path(), name, &sent).unwrap());
        fs::remove_file(&placed).unwrap();
        assert!(!deliver(run.path(), name, &sent).unwrap());
        assert!(!placed.exists(), "never placed twice");
        // The run's own reader passes over the record.
        let names: Vec<std::path::PathBuf> = pending(&spool_dir(run.path()))
            .into_iter()
            .map(|(path, _)| path)
            .collect();
        assert!(names.is_empty(), "{names:?}");
    }

    #[test]
    fn a_delivery_is_checked_as_the_run_checks_a_command_file() {
        let run = spool();
        for (name, text, why) in [
            ("../x.json", body("x"), "not a command file"),
            (".hidden.json", body("x"), "not a command file"),
            ("x.json", "not json".to_owned(), "not a command"),
            ("x.json", " ".repeat(5000), "more than 4096"),
        ] {
            let err = deliver(run.path(), name, &text).unwrap_err().to_string();
            assert!(err.contains(why), "{name}: {err}");
        }
        assert_eq!(fs::read_dir(spool_dir(run.path())).unwrap().count(), 0);
        let none = tempfile::tempdir().unwrap();
        let err = deliver(none.path(), "x.json", &body("x"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no control folder"), "{err}");
    }
}
