//! The files of a run directory: their names (the map is in the module
//! above), and how they are made: folders and files never open to other
//! users, files of the run's own never opened through a link or into a
//! FIFO, and files replaced whole.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use crate::error::{Error, Result};
use crate::runfile;

pub const EVENTS_FILE: &str = "events.jsonl";
pub const STATUS_FILE: &str = "status/training_status.json";
pub const LOG_FILE: &str = "training_output.log";
pub const CONFIG_FILE: &str = "config.json";
/// The stdout and stderr of a job `trainui run` started.
pub const JOB_OUTPUT_FILE: &str = "job_output.log";

/// Creates `root` and the folders above it that are missing, each with mode
/// 0755 less the umask: never writable by others (the control folder's
/// checks refuse a run directory that others could write).
pub fn create_dirs(root: &Path) -> io::Result<()> {
    std::os::unix::fs::DirBuilderExt::mode(fs::DirBuilder::new().recursive(true), 0o755)
        .create(root)
}

/// Opens a file of the run's own (a log, the lock) with `options`, made
/// with mode `mode` less the umask: never through a link, never a FIFO or
/// a device (a write to a FIFO that nobody reads would hold the run up),
/// only a regular file of this user; a file others could write to, left by
/// an older run, is made no more open than `mode`.
pub fn open_own(path: &Path, options: &mut OpenOptions, mode: u32) -> Result<File> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    let refuse = |what: String| {
        Error::Usage(format!(
            "{}: {what}; a run writes this file itself: remove it, or pick another run \
             directory",
            path.display()
        ))
    };
    let file = options
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|err| match err.raw_os_error() {
            Some(libc::ELOOP) => refuse("is a symbolic link".into()),
            Some(libc::ENXIO) => refuse("is a FIFO (named pipe), not a regular file".into()),
            _ => Error::io("cannot open", path)(err),
        })?;
    let meta = file.metadata().map_err(Error::io("cannot read", path))?;
    if let Some(kind) = runfile::kind_of(&meta) {
        return Err(refuse(format!("is {kind}, not a regular file")));
    }
    let (me, _) = crate::process::effective_ids()?;
    if meta.uid() != me {
        return Err(refuse(format!(
            "belongs to user {}, not to you ({me})",
            meta.uid()
        )));
    }
    if meta.mode() & 0o777 & !mode != 0 {
        file.set_permissions(fs::Permissions::from_mode(meta.mode() & 0o777 & mode))
            .map_err(Error::io("cannot make it the owner's alone", path))?;
    }
    Ok(file)
}

/// Replaces `path` with `contents` so that a reader sees the old file or the
/// new one, never a mix: write a temporary file beside it, then rename.
pub fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut temp_name = path.file_name().unwrap_or_default().to_os_string();
    temp_name.push(format!(".tmp.{}", std::process::id()));
    let temp = path.with_file_name(temp_name);
    let written = create_file(&temp).and_then(|mut file| {
        file.write_all(contents)?;
        file.write_all(b"\n")
    });
    let placed = written.and_then(|()| fs::rename(&temp, path));
    if placed.is_err() {
        let _ = fs::remove_file(&temp);
    }
    placed
}

/// Creates a new file for a run directory, in place of anything at `path`
/// (a link there is replaced, not followed): mode 0644 less the umask, so
/// never writable by others whatever the umask.
pub fn create_file(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
        _ => {}
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}
