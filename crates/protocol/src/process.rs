//! How the process speaks on stderr and how it ends early.
//!
//! A run outlives its terminal (an SSH session closes, a pipe is cut), so
//! messages to stderr never panic on a failed write. And a process that must
//! end while the trainer thread may be inside libtorch (a stall, a second
//! signal, quit-now) ends with `_exit`: `exit` would run libtorch's global
//! destructors under that thread, which crashes (a segfault, or an "Invalid
//! (backend, op) pair") instead of giving the exit status asked for.
//!
//! The calls into libc that Rust's standard library does not wrap
//! (`_exit`; `kill` to pass a signal on to a child or its group; `poll` and `ioctl` to
//! wait for keys and see that the terminal has hung up, which crossterm does
//! not notice; `umask`; `fstatfs`) are here, the only `unsafe` of the crate.

use std::fmt::Display;
use std::io::Write as _;

/// Writes a message to stderr, its text escaped where it could drive the
/// terminal (a message may quote a run directory or a model); a message of
/// several lines has its later lines indented, so that no text it quotes
/// can pass for a message of its own. A closed stderr is ignored.
pub fn say(message: impl Display) {
    let message = message.to_string();
    let shown = crate::text::escape_lines(&message).replace('\n', "\n  ");
    let _ = writeln!(std::io::stderr(), "{shown}");
}

/// The effective user and group ids of this process (the owner of
/// `/proc/self`).
pub fn effective_ids() -> crate::error::Result<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| (m.uid(), m.gid()))
        .map_err(crate::error::Error::io(
            "cannot read this process's user",
            std::path::Path::new("/proc/self"),
        ))
}

/// Writes `text` to stdout as it is. Output cut off by its reader (`| head`)
/// ends the process quietly, with status 0, as Unix tools end; other
/// failures to write are ignored.
pub fn print(text: impl Display) {
    let mut out = std::io::stdout().lock();
    let written = write!(out, "{text}").and_then(|()| out.flush());
    if written.is_err_and(|err| err.kind() == std::io::ErrorKind::BrokenPipe) {
        exit_now(0);
    }
}

/// Whether `file` lives on one of the kernel's own filesystems (/proc,
/// /sys and the like), whose "regular files" are views of the kernel:
/// reading some of them has effects (`/proc/kmsg` consumes the kernel's
/// log), so a run directory's reader never reads them.
#[must_use]
pub fn on_a_kernel_filesystem(file: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    let mut stats = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `fstatfs` writes one `statfs` through the pointer, which
    // points at memory of that size alive across the call; the descriptor
    // is `file`'s, open for the call's length.
    #[allow(unsafe_code)]
    let stats = unsafe {
        if libc::fstatfs(file.as_raw_fd(), stats.as_mut_ptr()) != 0 {
            return false;
        }
        stats.assume_init()
    };
    [
        libc::PROC_SUPER_MAGIC,
        libc::SYSFS_MAGIC,
        libc::DEBUGFS_MAGIC,
        libc::TRACEFS_MAGIC,
        libc::SECURITYFS_MAGIC,
        libc::CGROUP_SUPER_MAGIC,
        libc::CGROUP2_SUPER_MAGIC,
        libc::BPF_FS_MAGIC,
        libc::SELINUX_MAGIC,
        libc::SMACK_MAGIC,
        libc::NSFS_MAGIC,
        libc::RDTGROUP_SUPER_MAGIC,
        libc::USBDEVICE_SUPER_MAGIC,
        libc::OPENPROM_SUPER_MAGIC,
    ]
    .contains(&stats.f_type)
}

/// Makes every file and folder this process creates from now on unwritable
/// by the group and others, whatever the umask it was given (a run's files
/// are its owner's to change): the umask gains 022. Called first thing,
/// before any thread starts.
pub fn keep_files_private() {
    // SAFETY: `umask` takes and returns an integer mode and cannot fail;
    // it is called before any other thread exists, so no file is being
    // created with the intermediate mask.
    #[allow(unsafe_code)]
    unsafe {
        let given = libc::umask(0o022);
        libc::umask(given | 0o022);
    }
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

/// Sends `signal` to every process of the group `group` (a command
/// started in a group of its own, whose leader's pid names the group).
pub fn signal_group(group: u32, signal: i32) -> std::io::Result<()> {
    let group = libc::pid_t::try_from(group).map_err(std::io::Error::other)?;
    // SAFETY: as in `signal`: integers only; a negative pid names a group.
    #[allow(unsafe_code)]
    let result = unsafe { libc::kill(-group, signal) };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
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

/// What waiting on stdin found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdin {
    /// Input is waiting.
    Ready,
    /// Nothing within the time given.
    Quiet,
    /// The terminal hung up (its window or SSH session closed): reading it
    /// would only ever give end-of-file.
    HungUp,
}

/// Waits up to `timeout` for input on stdin. The TUI waits here rather
/// than in crossterm, which spins without end on a terminal that hung up.
#[must_use]
pub fn wait_stdin(timeout: std::time::Duration) -> Stdin {
    let mut fds = [libc::pollfd {
        fd: libc::STDIN_FILENO,
        events: libc::POLLIN,
        revents: 0,
    }];
    let millis = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `fds` is a valid array of one `pollfd` that lives across the
    // call, and its length is passed with it.
    #[allow(unsafe_code)]
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), 1, millis) };
    if ready <= 0 {
        // A signal (a resize) or nothing: the caller looks again.
        return Stdin::Quiet;
    }
    if fds[0].revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
        return Stdin::HungUp;
    }
    // Readable with nothing to read is end-of-file: a terminal that hung up
    // (a key in raw mode is at least one byte).
    let mut waiting: libc::c_int = 0;
    // SAFETY: FIONREAD writes one `c_int` through the pointer, which points
    // at `waiting`, alive across the call.
    #[allow(unsafe_code)]
    let asked = unsafe { libc::ioctl(libc::STDIN_FILENO, libc::FIONREAD, &raw mut waiting) };
    if asked == 0 && waiting == 0 {
        Stdin::HungUp
    } else {
        Stdin::Ready
    }
}
