//! How the process speaks on stderr and how it ends early.
//!
//! A run outlives its terminal (an SSH session closes, a pipe is cut), so
//! messages to stderr never panic on a failed write. And a process that must
//! end while the trainer thread may be inside libtorch (a stall, a second
//! signal, quit-now) ends with `_exit`: `exit` would run libtorch's global
//! destructors under that thread, which crashes (a segfault, or an "Invalid
//! (backend, op) pair") instead of giving the exit status asked for.
//!
//! The two calls into libc that Rust's standard library does not wrap
//! (`_exit`, and `kill` to pass a signal on to a child) are here, the only
//! `unsafe` of the crate.

use std::fmt::Display;
use std::io::Write as _;

/// Writes one line to stderr; a closed stderr is ignored.
pub fn say(message: impl Display) {
    let _ = writeln!(std::io::stderr(), "{message}");
}

/// Ends the process at once with `code`. stdout is not flushed: a printer
/// blocked on a full pipe would block the exit too (lines are written
/// whole, so little is lost).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` takes no pointers and never returns; it ends the
    // process without running atexit handlers or C++ static destructors,
    // which is the point (see the module comment).
    #[allow(unsafe_code)]
    unsafe {
        libc::_exit(code)
    }
}

/// Sends `signal` to the process `pid` (a job `trainui run` started).
pub fn signal(pid: u32, signal: i32) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(std::io::Error::other)?;
    // SAFETY: `kill` takes two integers and no pointers; a pid that is gone
    // is an error it reports, not undefined behaviour.
    #[allow(unsafe_code)]
    let result = unsafe { libc::kill(pid, signal) };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
