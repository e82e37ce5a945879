//! The one error type that crosses module boundaries. Each variant says
//! whose problem it is, so the exit code is decided where the error is made:
//! a mistake in what the user asked for exits 2, a failure while running
//! exits 1. `main` only maps the kind to its code.

use std::io;
use std::path::{Path, PathBuf};

/// A failure of a trainui command, worded for the person who ran it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A config file, a `--set` or a live change is wrong: the message names
    /// the source, the dotted key and the fix.
    #[error("{0}")]
    Config(String),
    /// Data, a tokenizer, a model folder or a checkpoint given by the user
    /// fails trainui's own checks (missing, incomplete, of another shape):
    /// the message names the file and the place. (Bytes that pass them but
    /// that libtorch cannot read are `Torch`.)
    #[error("{0}")]
    Input(String),
    /// Arguments that do not fit together, or a folder that is not what the
    /// command needs.
    #[error("{0}")]
    Usage(String),
    /// A running job refused a command (`trainui ctl`).
    #[error("{0}")]
    Rejected(String),
    /// Reading or writing a file failed while running.
    #[error("{}: {what}: {source}", path.display())]
    Io {
        path: PathBuf,
        /// What was being done, e.g. "cannot write the run directory".
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// libtorch reported an error.
    #[error("{0}")]
    Torch(String),
    /// The run, a thread or a measurement failed, or a generation did not
    /// complete.
    #[error("{0}")]
    Failed(String),
}

impl Error {
    /// The exit status of a command that ended with this error: 2 for the
    /// user's mistakes, 1 for failures while running.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) | Self::Input(_) | Self::Usage(_) | Self::Rejected(_) => 2,
            Self::Io { .. } | Self::Torch(_) | Self::Failed(_) => 1,
        }
    }

    /// An I/O failure on `path`, as a closure for `map_err`.
    pub fn io(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Self {
        let path = path.to_owned();
        move |source| Self::Io { path, what, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mistakes_exit_2_and_failures_exit_1() {
        let io = Error::io("cannot write", Path::new("/x"))(io::Error::other("disk full"));
        assert_eq!(io.to_string(), "/x: cannot write: disk full");
        assert_eq!(io.exit_code(), 1);
        assert_eq!(Error::Torch("t".into()).exit_code(), 1);
        assert_eq!(Error::Failed("f".into()).exit_code(), 1);
        assert_eq!(Error::Config("c".into()).exit_code(), 2);
        assert_eq!(Error::Input("i".into()).exit_code(), 2);
        assert_eq!(Error::Usage("u".into()).exit_code(), 2);
        assert_eq!(Error::Rejected("r".into()).exit_code(), 2);
    }
}
