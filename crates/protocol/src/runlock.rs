//! The lock of a run directory and whether its run is alive.
//!
//! The process that trains in a run directory holds an advisory lock
//! (`flock`) on RUN_DIR/lock, which holds its pid, for as long as it lives;
//! the kernel releases it however the process ends, so a killed run never
//! leaves a stale lock. The file is the owner's alone (0600): no other user
//! can open it, so none can hold the lock. A lock held by a process other
//! than the one the run names (a reader of an older lock file that others
//! could open, a child left by a dead run) is no sign of life, and the
//! owner's next run replaces it; when trainui cannot tell who holds a lock
//! (another host on a shared filesystem, another pid namespace), the lock
//! is taken at its word.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use crate::error::{Error, Result};
use crate::process;
use crate::rundir;
use crate::runfile;

pub const LOCK_FILE: &str = "lock";

/// Tries to take a lock before calling it held: a reader probing it holds
/// it shared for an instant, and a run that has just taken it writes its
/// pid an instant later.
const LOCK_TRIES: u32 = 10;

/// The exclusive lock of a run directory, held while this value lives.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Takes the lock of `root` (creating the folder), or says which process
    /// holds it. A lock held only by processes this machine can see and
    /// none of them the one the lock names is replaced by a fresh lock file
    /// (with a warning): whoever holds it is not a run.
    pub fn take(root: &Path) -> Result<Self> {
        rundir::create_dirs(root).map_err(Error::io("cannot create the run directory", root))?;
        let path = root.join(LOCK_FILE);
        let mut file = open_lock(&path)?;
        let mut attempt = 0;
        let locked = loop {
            match file.try_lock() {
                Err(fs::TryLockError::WouldBlock) if attempt < LOCK_TRIES => {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other,
            }
        };
        match locked {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let named = lock_pid(&path);
                let holders = holders(&path).unwrap_or_default();
                let stray = !holders.is_empty()
                    && holders
                        .iter()
                        .all(|&holder| holder != 0 && !named.is_some_and(|n| is_run(holder, n)));
                if !stray {
                    return Err(Error::Usage(format!(
                        "{}: in use by the trainui process {} (it holds {}); watch it with \
                         `trainui watch {}`, or train in another --run-dir",
                        root.display(),
                        named.map_or_else(|| "?".to_owned(), |pid| pid.to_string()),
                        path.display(),
                        root.display()
                    )));
                }
                file = replace_lock(&path)?;
                process::say(format!(
                    "warning: {}: held by process {}, not by the run it names ({}); a fresh \
                     lock replaces it",
                    path.display(),
                    holders
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    named.map_or_else(|| "none".to_owned(), |pid| format!("pid {pid}"))
                ));
            }
            Err(fs::TryLockError::Error(err)) => {
                return Err(Error::io("cannot lock", &path)(err));
            }
        }
        // The pid replaces the old one in one write: a reader sees one or
        // the other.
        let pid = format!("{}\n", std::process::id());
        file.write_all_at(pid.as_bytes(), 0)
            .and_then(|()| file.set_len(pid.len() as u64))
            .map_err(Error::io("cannot write the lock", &path))?;
        Ok(Self { _file: file })
    }
}

/// Opens (or makes) the lock file: a regular file of this user, not a
/// link, made the owner's alone (0600) whatever its mode was.
fn open_lock(path: &Path) -> Result<File> {
    rundir::open_own(
        path,
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false),
        0o600,
    )
}

/// A fresh lock file in place of `path`, locked: made beside it, locked,
/// then renamed over it.
fn replace_lock(path: &Path) -> Result<File> {
    let fresh = path.with_file_name(format!(".{LOCK_FILE}.{}", std::process::id()));
    let _ = fs::remove_file(&fresh);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(&fresh)
        .map_err(Error::io("cannot make a fresh lock", &fresh))?;
    let placed = file
        .try_lock()
        .map_err(|err| io::Error::other(err.to_string()))
        .and_then(|()| fs::rename(&fresh, path));
    if let Err(err) = placed {
        let _ = fs::remove_file(&fresh);
        return Err(Error::io("cannot place a fresh lock", path)(err));
    }
    Ok(file)
}

/// The pid a lock file names.
fn lock_pid(path: &Path) -> Option<u32> {
    let bytes = runfile::read(path, runfile::LOCK_LIMIT).ok()?;
    std::str::from_utf8(&bytes).ok()?.trim().parse().ok()
}

/// Whether a process `pid` exists on this machine, as this process sees it
/// (0 is no process).
#[must_use]
pub fn process_exists(pid: u32) -> bool {
    pid != 0 && Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether the process this machine knows as `holder` is the one a run
/// names as `pid`: the same pid, or that pid in the holder's own pid
/// namespace (a run in a container names itself by its pid there). A
/// holder that is gone is no run, whatever its number: a dead run's child
/// may hold its lock.
fn is_run(holder: u32, pid: u32) -> bool {
    if !process_exists(holder) {
        return false;
    }
    holder == pid
        || fs::read_to_string(format!("/proc/{holder}/status")).is_ok_and(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("NSpid:"))
                .is_some_and(|ids| ids.split_whitespace().any(|id| id == pid.to_string()))
        })
}

/// The processes that hold a lock on the file at `path`, as /proc/locks
/// names them (0: a holder this process cannot see, in another pid
/// namespace); `None` when that cannot be read. A lock held from another
/// machine of a shared filesystem has no holder here.
fn holders(path: &Path) -> Option<Vec<u32>> {
    let meta = fs::metadata(path).ok()?;
    let file = format!(
        "{:02x}:{:02x}:{}",
        libc::major(meta.dev()),
        libc::minor(meta.dev()),
        meta.ino()
    );
    let locks = fs::read_to_string("/proc/locks").ok()?;
    Some(
        locks
            .lines()
            .filter_map(|line| {
                // `1: FLOCK  ADVISORY  WRITE 4242 fe:00:1234 0 EOF`; a lock
                // waited for has `->` after the number.
                let fields: Vec<&str> = line.split_whitespace().collect();
                if fields.get(1) == Some(&"->") || fields.get(5) != Some(&file.as_str()) {
                    return None;
                }
                Some(
                    fields
                        .get(4)?
                        .parse::<i64>()
                        .map_or(0, |pid| u32::try_from(pid).unwrap_or(0)),
                )
            })
            .collect(),
    )
}

/// What a reader can tell of a run's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LockState {
    /// A process holds it.
    Held,
    /// Nobody holds it.
    Free,
    /// It is there but this user cannot open it (another user's run).
    Private,
    /// There is no lock file (a run of a trainui without locks), or no
    /// regular file in its place.
    Missing,
}

/// The state of `root`'s lock. Probing takes the lock shared for an
/// instant, which never blocks a run (it tries again).
fn lock_state(root: &Path) -> LockState {
    let file = match runfile::open(&root.join(LOCK_FILE)) {
        Ok(file) => file,
        Err(runfile::ReadError::Io(err)) if err.kind() == io::ErrorKind::PermissionDenied => {
            return LockState::Private;
        }
        Err(_) => return LockState::Missing,
    };
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            LockState::Free
        }
        Err(fs::TryLockError::WouldBlock) => LockState::Held,
        Err(fs::TryLockError::Error(_)) => LockState::Missing,
    }
}

/// Whether any process holds the lock of `root` (`None`: no lock file, or
/// one this user cannot open): for a run whose status cannot be read.
#[must_use]
pub fn lock_held(root: &Path) -> Option<bool> {
    match lock_state(root) {
        LockState::Held => Some(true),
        LockState::Free => Some(false),
        LockState::Private | LockState::Missing => None,
    }
}

/// Whether the process of the run in `root` (whose status names `pid`) is
/// alive: a process holds the run's lock, and of the holders this machine
/// can see, one is that process (one it cannot see, or a lock held from
/// another machine, is taken at its word). Another user's run, whose lock
/// cannot be opened, is judged from /proc/locks alone; a run without a
/// lock file (made by a trainui without locks) is alive while `pid` is a
/// trainui process, which a reused pid is not.
#[must_use]
pub fn run_alive(root: &Path, pid: u32) -> bool {
    let path = root.join(LOCK_FILE);
    let state = lock_state(root);
    let alive = |holders: &[u32]| {
        holders
            .iter()
            .any(|&holder| holder == 0 || is_run(holder, pid))
    };
    match (state, holders(&path)) {
        (LockState::Free, _) => false,
        (LockState::Held, Some(holders)) if !holders.is_empty() => alive(&holders),
        (LockState::Held, _) => true,
        (LockState::Private, Some(holders)) => alive(&holders),
        // No way to tell who holds another user's lock: its owner's
        // process by that pid.
        (LockState::Private, None) => {
            let owner = fs::metadata(&path).map(|m| m.uid());
            process_exists(pid)
                && fs::metadata(format!("/proc/{pid}"))
                    .is_ok_and(|m| owner.is_ok_and(|owner| m.uid() == owner))
        }
        (LockState::Missing, _) => fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains("trainui")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, Instant};

    /// The pid of a process that has ended.
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!process_exists(pid));
        pid
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_lock_is_the_owners_alone_whatever_its_mode_was() {
        let dir = tempfile::tempdir().unwrap();
        let lock = RunLock::take(dir.path()).unwrap();
        assert_eq!(mode(&dir.path().join(LOCK_FILE)), 0o600);
        drop(lock);
        // A lock file of an older run, open to others, is made private.
        fs::set_permissions(
            dir.path().join(LOCK_FILE),
            fs::Permissions::from_mode(0o666),
        )
        .unwrap();
        let _lock = RunLock::take(dir.path()).unwrap();
        assert_eq!(mode(&dir.path().join(LOCK_FILE)), 0o600);
    }

    #[test]
    fn the_holders_of_a_lock_are_read_from_the_kernel() {
        let dir = tempfile::tempdir().unwrap();
        let _lock = RunLock::take(dir.path()).unwrap();
        assert_eq!(
            holders(&dir.path().join(LOCK_FILE)),
            Some(vec![std::process::id()])
        );
        assert!(is_run(std::process::id(), std::process::id()));
        assert!(!is_run(dead_pid(), std::process::id()));
    }

    #[test]
    fn a_lock_held_by_another_process_than_the_one_it_names_neither_blocks_nor_keeps_alive() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        drop(RunLock::take(root).unwrap());
        let path = root.join(LOCK_FILE);
        // A reader holds the lock (`flock -s`, or `flock` exclusive) of a
        // run whose own process is gone.
        for how in ["-s", "-x"] {
            let gone = dead_pid();
            fs::write(&path, format!("{gone}\n")).unwrap();
            let mut reader = std::process::Command::new("flock")
                .arg(how)
                .arg(&path)
                .args(["sleep", "60"])
                .spawn()
                .unwrap();
            let held = Instant::now();
            while holders(&path).unwrap_or_default().is_empty() {
                assert!(
                    held.elapsed() < Duration::from_secs(30),
                    "flock never held it"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(
                !run_alive(root, gone),
                "{how}: the run's own process is gone"
            );
            // The owner resumes: the lock is replaced, not refused.
            let lock = RunLock::take(root).unwrap();
            let _ = reader.kill();
            let _ = reader.wait();
            assert_eq!(
                fs::read_to_string(&path).unwrap().trim(),
                std::process::id().to_string()
            );
            assert_eq!(mode(&path), 0o600);
            assert!(run_alive(root, std::process::id()));
            assert!(!run_alive(root, gone), "held, but not by the run it names");
            // A lock held by the live process it names is refused.
            let refused = RunLock::take(root).unwrap_err().to_string();
            assert!(
                refused.contains(&format!(
                    "in use by the trainui process {}",
                    std::process::id()
                )),
                "{refused}"
            );
            drop(lock);
            assert!(!run_alive(root, std::process::id()), "nobody holds it now");
        }
    }

    #[test]
    fn special_files_in_place_of_the_lock_never_hang_a_reader_or_the_owner() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let made = std::process::Command::new("mkfifo")
            .arg(root.join(LOCK_FILE))
            .status()
            .unwrap();
        assert!(made.success());
        let started = Instant::now();
        assert!(!run_alive(root, dead_pid()));
        let err = RunLock::take(root).unwrap_err().to_string();
        assert!(err.contains("is a FIFO"), "{err}");
        fs::remove_file(root.join(LOCK_FILE)).unwrap();
        std::os::unix::fs::symlink("/dev/zero", root.join(LOCK_FILE)).unwrap();
        assert!(!run_alive(root, dead_pid()));
        let err = RunLock::take(root).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
