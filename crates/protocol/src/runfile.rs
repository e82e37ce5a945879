//! Reading the files of a run directory, which any program may have made:
//! never blocking (a FIFO in place of a status file would hang an open
//! for reading until a writer came), never a device or a socket (a status
//! file linked to `/dev/zero` is endless) or a file of /proc or /sys
//! (reading `/proc/kmsg` consumes the kernel's log), regular files only, and never
//! more than a limit fit for the file. Every reader of a run directory
//! opens its files here.

use std::fmt;
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Largest status file read: a few kilobytes in practice (with sixteen
/// GPUs' readings), and room for a last message as long as an event line.
pub const STATUS_LIMIT: u64 = 4 << 20;
/// Largest config.json read.
pub const CONFIG_LIMIT: u64 = 1 << 20;
/// Largest rank heartbeat file read (a few hundred bytes in practice).
pub const RANK_LIMIT: u64 = 64 << 10;
/// Largest lock file read (it holds a pid).
pub const LOCK_LIMIT: u64 = 64;
/// Longest events.jsonl line read; a longer one is reported and skipped
/// unread. Writers keep their lines far below it (a sample's texts are
/// clipped to fit).
pub const MAX_EVENT_LINE: usize = 1 << 20;

/// Why a file of a run directory was not read.
#[derive(Debug)]
pub enum ReadError {
    /// There is nothing at the path.
    Missing,
    /// It is something other than a regular file: a FIFO, a socket, a
    /// device or a folder (named).
    NotRegular(&'static str),
    /// It is larger than the limit for such a file.
    TooLarge {
        limit: u64,
    },
    Io(io::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => write!(f, "no such file"),
            Self::NotRegular(kind) => write!(
                f,
                "is {kind}, not a regular file; trainui reads only regular files in a run \
                 directory"
            ),
            Self::TooLarge { limit } => write!(
                f,
                "is larger than {}, more than trainui ever writes there; it is left unread",
                size(*limit)
            ),
            Self::Io(err) => write!(f, "{err}"),
        }
    }
}

impl ReadError {
    /// `path: reason`, for messages.
    #[must_use]
    pub fn at(&self, path: &Path) -> String {
        format!("{}: {self}", path.display())
    }
}

impl From<io::Error> for ReadError {
    fn from(err: io::Error) -> Self {
        if err.kind() == io::ErrorKind::NotFound {
            Self::Missing
        } else {
            Self::Io(err)
        }
    }
}

/// What a file that is not a regular file is, in words (`None` for a
/// regular file).
#[must_use]
pub fn kind_of(meta: &Metadata) -> Option<&'static str> {
    let kind = meta.file_type();
    if kind.is_file() {
        None
    } else if kind.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if kind.is_socket() {
        Some("a socket")
    } else if kind.is_char_device() {
        Some("a character device")
    } else if kind.is_block_device() {
        Some("a block device")
    } else if kind.is_dir() {
        Some("a folder")
    } else {
        Some("not a file")
    }
}

/// Opens `path` (following links) for reading if it is a regular file,
/// without blocking and without ever opening anything else: what the path
/// names is looked at first, and the file opened is checked again.
pub fn open(path: &Path) -> Result<File, ReadError> {
    if let Some(kind) = kind_of(&std::fs::metadata(path)?) {
        return Err(ReadError::NotRegular(kind));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)?;
    // Swapped between the look and the open.
    if let Some(kind) = kind_of(&file.metadata()?) {
        return Err(ReadError::NotRegular(kind));
    }
    if crate::process::on_a_kernel_filesystem(&file) {
        return Err(ReadError::NotRegular(
            "a file of the kernel's (/proc, /sys)",
        ));
    }
    Ok(file)
}

/// The whole of the regular file at `path`, if it is at most `limit` bytes.
pub fn read(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let file = open(path)?;
    let mut bytes = Vec::new();
    // One byte past the limit tells a file that grew while it was read.
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge { limit });
    }
    Ok(bytes)
}

/// The whole of the regular file at `path` as text, without a limit: for
/// data a run names (its data files, a model folder's JSON), which are the
/// user's to size, read only if they are regular files.
pub fn read_text(path: &Path) -> Result<String, ReadError> {
    let mut text = String::new();
    open(path)?.read_to_string(&mut text)?;
    Ok(text)
}

/// `1 MiB`, `64 KiB`, `64 bytes`.
fn size(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn mkfifo(path: &Path) {
        let made = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .expect("mkfifo runs");
        assert!(made.success());
    }

    #[test]
    fn special_files_are_named_not_opened_and_never_block() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        mkfifo(&fifo);
        let linked = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &linked).unwrap();
        let fifo_link = dir.path().join("fifo-link");
        std::os::unix::fs::symlink(&fifo, &fifo_link).unwrap();
        let started = Instant::now();
        let kmsg = dir.path().join("kmsg");
        std::os::unix::fs::symlink("/proc/self/environ", &kmsg).unwrap();
        for (path, kind) in [
            (&kmsg, "a file of the kernel's"),
            (&fifo, "a FIFO"),
            (&fifo_link, "a FIFO"),
            (&linked, "a character device"),
            (&dir.path().to_owned(), "a folder"),
        ] {
            let err = read(path, 1 << 20).unwrap_err();
            assert!(matches!(err, ReadError::NotRegular(_)), "{err:?}");
            let message = err.at(path);
            assert!(
                message.contains(kind) && message.contains("not a regular file"),
                "{message}"
            );
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(matches!(
            read(&dir.path().join("nothing"), 10),
            Err(ReadError::Missing)
        ));
    }

    #[test]
    fn a_file_over_its_limit_is_refused_and_one_at_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        std::fs::write(&path, vec![b'x'; 100]).unwrap();
        assert_eq!(read(&path, 100).unwrap().len(), 100);
        let err = read(&path, 99).unwrap_err();
        assert!(matches!(err, ReadError::TooLarge { limit: 99 }), "{err:?}");
        assert!(err.to_string().contains("larger than 99 bytes"), "{err}");
        assert_eq!(
            ReadError::TooLarge { limit: 1 << 20 }
                .to_string()
                .split(',')
                .next(),
            Some("is larger than 1 MiB")
        );
        // A link to a regular file is read as that file.
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert_eq!(read(&link, 100).unwrap().len(), 100);
    }
}
