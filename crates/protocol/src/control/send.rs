//! The sender's side (`trainui ctl`, `watch`): dropping a command file
//! into a run's spool, and taking back what no run has read.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use super::checks::check_spool_as;
use super::request::{REQUEST_VERSION, Request, pending, spool_dir, unix_now};
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
