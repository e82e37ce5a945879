//! How the process speaks on stderr and how it ends early.
//!
//! A run outlives its terminal (an SSH session closes, a pipe is cut), so
//! messages to stderr never panic on a failed write. And a process that must
//! end while the trainer thread may be inside libtorch (a stall, a second
//! signal, quit-now) ends with `_exit`: `exit` would run libtorch's global
//! destructors under that thread, which crashes (a segfault, or an "Invalid
//! (backend, op) pair") instead of giving the exit status asked for.

use std::fmt::Display;
use std::io::Write;

/// Writes one line to stderr; a closed stderr is ignored.
pub fn say(message: impl Display) {
    let _ = writeln!(std::io::stderr(), "{message}");
}

/// Ends the process at once with `code`, after flushing stdout.
pub fn exit_now(code: i32) -> ! {
    let _ = std::io::stdout().flush();
    // SAFETY: `_exit` takes no pointers and never returns; it ends the
    // process without running atexit handlers or C++ static destructors,
    // which is the point (see the module comment).
    #[allow(unsafe_code)]
    unsafe {
        libc::_exit(code)
    }
}
