//! Runs on other machines, through the user's own ssh: a run path
//! `[user@]host:PATH` (or `ssh://[user@]host[:port]/PATH`) names a run
//! directory there. trainui starts ssh with `trainui serve --stdio` on the
//! far side (serve.rs), which streams the run's files over ssh's standard
//! input and output (wire.rs); this side keeps a copy of each run
//! (mirror.rs) that the local commands read as they read any run
//! directory, one connection per host (link.rs). Nothing listens on a
//! port on either side.
//!
//! The ssh command is `$TRAINUI_SSH_COMMAND` (run by `sh -c`, as git runs
//! `GIT_SSH_COMMAND`), else `ssh`; the far side's program is
//! `$TRAINUI_REMOTE_PROGRAM`, else `trainui` on its PATH. The copies live
//! in `$TRAINUI_REMOTE_CACHE` (kept), else in a private temporary folder
//! removed at the end.

pub mod link;
pub mod mirror;
pub mod serve;
pub mod ssh;
pub mod wire;

use std::collections::HashMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use link::{Connection, Link};
use mirror::Mirror;
pub use ssh::{Destination, Settings};
use trainui_protocol::error::{Error, Result};
use trainui_protocol::runlock;
pub use wire::Depth;

/// How long a command that reads a remote run once (status, runs, ctl...)
/// waits for its copy.
pub const ONE_SHOT_WAIT: Duration = Duration::from_secs(30);

/// A run path on another machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub destination: Destination,
    /// The far path: absolute, or relative to the far side's home folder.
    pub path: String,
}

impl Target {
    /// As the user would write it again: `host:PATH`.
    #[must_use]
    pub fn shown(&self) -> String {
        match self.destination.port {
            Some(_) => format!(
                "ssh://{}/{}",
                self.destination.shown,
                self.path.trim_start_matches('/')
            ),
            None => format!("{}:{}", self.destination.shown, self.path),
        }
    }
}

/// The remote run path `path` names, if it names one: `ssh://...`, or, as
/// git reads them, a colon before any slash (`host:runs/a`,
/// `me@gpu1:/data/runs`). A path that exists here is local whatever it
/// looks like (`./a:b` and `/x/a:b` are local always).
#[must_use]
pub fn target(path: &Path) -> Option<Target> {
    let text = path.to_str()?;
    if let Some(rest) = text.strip_prefix("ssh://") {
        let (authority, path) = rest.split_once('/')?;
        let (login, port) = match authority.rsplit_once(':') {
            Some((login, port)) => (login, Some(port.parse::<u16>().ok()?)),
            None => (authority, None),
        };
        if login.is_empty() || login.ends_with('@') {
            return None;
        }
        let path = match path.strip_prefix('~') {
            Some(home) => format!("~{home}"),
            None => format!("/{path}"),
        };
        return Some(Target {
            destination: Destination {
                login: login.to_owned(),
                port,
                shown: authority.to_owned(),
            },
            path,
        });
    }
    let (host, far) = text.split_once(':')?;
    if host.is_empty()
        || host.contains('/')
        || host.ends_with('@')
        || host.starts_with('-')
        || path.exists()
    {
        return None;
    }
    Some(Target {
        destination: Destination {
            login: host.to_owned(),
            port: None,
            shown: host.to_owned(),
        },
        path: if far.is_empty() {
            "~".into()
        } else {
            far.to_owned()
        },
    })
}

/// The runs of every connection by copy, for the readers that must ask the
/// far side, not this machine (is its process alive?): the connection, the
/// run's number on it, the run path as the user wrote it, and the far run.
type Registry = HashMap<PathBuf, (Arc<link::Shared>, usize, String, Target)>;

fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The connection and run number of the copy at `dir`, if it is one.
fn copy_of(dir: &Path) -> Option<(Arc<link::Shared>, usize, String)> {
    let registry = registry()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    registry
        .get(dir)
        .map(|(shared, run, shown, _)| (Arc::clone(shared), *run, shown.clone()))
}

/// Whether the run in `dir` has a live process: for a copy of a remote
/// run, as the far side last said; else as its lock tells
/// ([`runlock::run_alive`]).
#[must_use]
pub fn run_alive(dir: &Path, pid: u32) -> bool {
    match copy_of(dir) {
        Some((shared, run, _)) => shared
            .lock()
            .runs
            .get(run)
            .and_then(|run| run.alive)
            .unwrap_or(true),
        None => runlock::run_alive(dir, pid),
    }
}

/// For a copy of a remote run: what stands between it and its run, in
/// words (None when it is connected and in step). None for a local run.
#[must_use]
pub fn connection_trouble(dir: &Path) -> Option<String> {
    let (shared, run, host) = copy_of(dir)?;
    let state = shared.lock();
    match &state.connection {
        Connection::Connected | Connection::Connecting => state
            .runs
            .get(run)
            .and_then(|run| run.problem.clone())
            .map(|problem| format!("{host}: {problem}")),
        Connection::Lost {
            why,
            attempt,
            served: true,
        } => Some(format!(
            "{host}: connection lost, reconnecting (attempt {attempt}): {why}"
        )),
        Connection::Lost { why, attempt, .. } => Some(format!(
            "{host}: cannot connect, trying again (attempt {attempt}): {why}"
        )),
        Connection::Refused(why) => Some(why.clone()),
    }
}

/// Why a command file sent through the copy at `dir` was not placed by
/// the far side, if it was not.
#[must_use]
pub fn refused_command(dir: &Path, id: &str) -> Option<String> {
    let (shared, run, _) = copy_of(dir)?;
    let state = shared.lock();
    state
        .runs
        .get(run)?
        .refused
        .get(&format!("{id}.json"))
        .cloned()
}

/// Whether `dir` is the copy of a remote run (a run to show even before
/// anything of it has arrived).
#[must_use]
pub fn is_copy(dir: &Path) -> bool {
    copy_of(dir).is_some()
}

/// The command that resumes the run in `dir` with trainui's own trainer:
/// for a copy of a remote run, the one to run on its machine.
#[must_use]
pub fn resume_command(dir: &Path) -> String {
    let far = registry()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(dir)
        .map(|(_, _, _, target)| target.clone());
    match far {
        Some(target) => format!(
            "on {}: trainui train --run-dir {} --resume latest",
            target.destination.shown, target.path
        ),
        None => format!("trainui train --run-dir {} --resume latest", dir.display()),
    }
}

/// A run path as the user wrote it: `host:PATH` for a copy of a remote
/// run, the path itself for another.
#[must_use]
pub fn shown(dir: &Path) -> String {
    copy_of(dir).map_or_else(|| dir.display().to_string(), |(_, _, shown)| shown)
}

/// The copy of the one run at `path` when it is remote, in step with the
/// run as it was when asked for (the caller keeps the [`Remote`] while it
/// reads); `path` itself when it is local.
///
/// # Errors
/// When the far side cannot be reached or does not have the run.
pub fn one_run(path: &Path, depth: Depth) -> Result<(PathBuf, Option<Remote>)> {
    let Some(target) = target(path) else {
        return Ok((path.to_owned(), None));
    };
    let mut remote = Remote::new()?;
    let copy = remote.follow(&target, depth)?;
    remote.wait_synced()?;
    if let Some(problem) = connection_trouble(&copy)
        && problem.ends_with("no such run directory")
    {
        return Err(Error::Usage(problem));
    }
    Ok((copy, Some(remote)))
}

/// The remote runs one command follows: a connection per host, a copy per
/// run. Dropping it ends the connections and removes the copies (unless
/// `TRAINUI_REMOTE_CACHE` named where they go).
pub struct Remote {
    root: PathBuf,
    keep: bool,
    settings: Settings,
    links: Vec<Link>,
    copies: Vec<PathBuf>,
    /// Each copy's folder by the one its path gives (they differ when
    /// another trainui holds that one).
    placed: HashMap<PathBuf, PathBuf>,
    /// The locks held on the copies' folders: one trainui writes a copy.
    locks: Vec<std::fs::File>,
}

impl Remote {
    /// Connections as the environment says (`TRAINUI_SSH_COMMAND`,
    /// `TRAINUI_REMOTE_PROGRAM`), copies in `TRAINUI_REMOTE_CACHE` (kept)
    /// or a new private folder (removed at the end).
    ///
    /// # Errors
    /// When the folder for the copies cannot be made.
    pub fn new() -> Result<Self> {
        let cache = std::env::var_os("TRAINUI_REMOTE_CACHE")
            .filter(|root| !root.is_empty())
            .map(PathBuf::from);
        Self::with(Settings::from_environment(), cache)
    }

    /// Connections made with `settings`, copies in `cache` (kept) or, for
    /// None, a new private folder (removed at the end).
    ///
    /// # Errors
    /// When the folder for the copies cannot be made.
    pub fn with(settings: Settings, cache: Option<PathBuf>) -> Result<Self> {
        let (root, keep) = match cache {
            Some(root) => {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&root)
                    .map_err(Error::io(
                        "cannot make the folder for copies of remote runs (TRAINUI_REMOTE_CACHE)",
                        &root,
                    ))?;
                (root, true)
            }
            None => (private_folder()?, false),
        };
        Ok(Self {
            root,
            keep,
            settings,
            links: Vec::new(),
            copies: Vec::new(),
            placed: HashMap::new(),
            locks: Vec::new(),
        })
    }

    /// The folder for the copy its path gives as `dir`, locked for this
    /// process: `dir` itself, or, while another trainui writes that one
    /// (a shared TRAINUI_REMOTE_CACHE), one beside it of this process.
    fn claim(&mut self, dir: &Path) -> Result<PathBuf> {
        let pid = std::process::id();
        for candidate in [
            dir.to_owned(),
            PathBuf::from(format!("{}.{pid}", dir.display())),
        ] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&candidate)
                .map_err(Error::io("cannot make a copy of a remote run", &candidate))?;
            let path = candidate.join(".trainui-copy.lock");
            let lock = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(Error::io("cannot lock a copy of a remote run", &path))?;
            if lock.try_lock().is_ok() {
                self.locks.push(lock);
                mirror::forget_old_ranks(&candidate);
                return Ok(candidate);
            }
        }
        Err(Error::Failed(format!(
            "{}: another trainui writes this copy of a remote run; set TRAINUI_REMOTE_CACHE \
             to another folder",
            dir.display()
        )))
    }

    fn link(&mut self, destination: &Destination) -> &Link {
        let found = self
            .links
            .iter()
            .position(|link| link.destination == *destination);
        let index = found.unwrap_or_else(|| {
            let settings = self.settings.clone();
            self.links.push(Link::start(destination.clone(), settings));
            self.links.len() - 1
        });
        &self.links[index]
    }

    /// Follows the run at `target` into a copy; the copy's folder, which
    /// the local readers take for the run.
    ///
    /// # Errors
    /// When the copy's folder cannot be made.
    pub fn follow(&mut self, target: &Target, depth: Depth) -> Result<PathBuf> {
        let placed = mirror::place(&self.root, &target.destination.shown, &target.path);
        // One run named twice (`gpu1:runs gpu1:runs/a`) is one copy.
        if let Some(dir) = self.placed.get(&placed) {
            return Ok(dir.clone());
        }
        let dir = self.claim(&placed)?;
        self.placed.insert(placed, dir.clone());
        self.follow_into(target, depth, dir)
    }

    /// Follows the run at `targets[0]`, with the rank files of the same
    /// run on the other hosts (a job across nodes that share no
    /// filesystem), into one copy.
    ///
    /// # Errors
    /// When the copy's folder cannot be made.
    pub fn follow_as_one(&mut self, targets: &[Target], depth: Depth) -> Result<PathBuf> {
        let first = &targets[0];
        let placed = mirror::place(&self.root, &first.destination.shown, &first.path);
        let dir = self.claim(&placed)?;
        self.placed.insert(placed, dir.clone());
        for other in &targets[1..] {
            let mirror = Mirror::create(dir.clone())
                .map_err(Error::io("cannot make a copy of a remote run", &dir))?;
            let _ = self
                .link(&other.destination)
                .follow(&other.path, Depth::Ranks, mirror);
        }
        self.follow_into(first, depth, dir)
    }

    fn follow_into(&mut self, target: &Target, depth: Depth, dir: PathBuf) -> Result<PathBuf> {
        let mirror = Mirror::create(dir.clone())
            .map_err(Error::io("cannot make a copy of a remote run", &dir))?;
        let link = self.link(&target.destination);
        let run = link.follow(&target.path, depth, mirror);
        let shared = Arc::clone(&link.shared);
        registry()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(dir.clone(), (shared, run, target.shown(), target.clone()));
        self.copies.push(dir.clone());
        Ok(dir)
    }

    /// The run directories at most `depth` folders below `target` (itself
    /// if it is a run), as remote run paths; Ok(Err(why)) when the host
    /// cannot be reached now.
    ///
    /// # Errors
    /// When the far side says the folder cannot be listed.
    fn list_or_unreachable(
        &mut self,
        target: &Target,
        depth: usize,
    ) -> Result<std::result::Result<Vec<Target>, String>> {
        let link = self.link(&target.destination);
        match link.list(&target.path, depth, ONE_SHOT_WAIT) {
            Ok(found) => Ok(Ok(found
                .into_iter()
                .map(|path| Target {
                    destination: target.destination.clone(),
                    path,
                })
                .collect())),
            Err(link::Unlisted::Far(why)) => {
                Err(Error::Usage(format!("{}: {why}", target.shown())))
            }
            Err(link::Unlisted::Unreachable(why)) => Ok(Err(why)),
        }
    }

    /// Waits until every copy holds what its run had when it was asked
    /// for (at most [`ONE_SHOT_WAIT`]).
    ///
    /// # Errors
    /// Naming the host and why, when one did not arrive.
    pub fn wait_synced(&self) -> Result<()> {
        match self.troubles().into_iter().next() {
            Some(why) => Err(Error::Failed(why)),
            None => Ok(()),
        }
    }

    /// Waits as [`wait_synced`](Self::wait_synced), but only as long as
    /// each host can be reached; why for each that could not.
    #[must_use]
    pub fn troubles(&self) -> Vec<String> {
        let mut troubles = Vec::new();
        for link in &self.links {
            let state = link.shared.wait_for(ONE_SHOT_WAIT, |state| {
                state.runs.iter().all(|run| run.synced)
                    || !matches!(
                        state.connection,
                        Connection::Connecting | Connection::Connected
                    )
            });
            if !state.runs.iter().all(|run| run.synced) {
                troubles.push(link.trouble(&state));
            }
        }
        troubles
    }
}

impl Remote {
    /// `err` with each copy's folder named as the remote run it is
    /// (`host:PATH`), of the same kind (its exit code kept).
    #[must_use]
    pub fn named(&self, err: Error) -> Error {
        let mut text = err.to_string();
        if !self
            .copies
            .iter()
            .any(|copy| text.contains(&*copy.to_string_lossy()))
        {
            return err;
        }
        // Longest first: a copy may hold another's path as its start.
        let mut copies: Vec<&PathBuf> = self.copies.iter().collect();
        copies.sort_by_key(|copy| std::cmp::Reverse(copy.as_os_str().len()));
        for copy in copies {
            text = text.replace(&*copy.to_string_lossy(), &shown(copy));
        }
        if err.exit_code() == 2 {
            Error::Usage(text)
        } else {
            Error::Failed(text)
        }
    }
}

/// Runs `command` on `remote`'s copies, its error naming remote runs as
/// the user wrote them.
///
/// # Errors
/// The command's.
pub fn naming<T>(remote: Option<&Remote>, result: Result<T>) -> Result<T> {
    match (remote, result) {
        (Some(remote), Err(err)) => Err(remote.named(err)),
        (_, result) => result,
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        {
            let mut registry = registry()
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for copy in &self.copies {
                registry.remove(copy);
            }
        }
        self.links.clear();
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// A new folder of this user's alone in the temporary folder: made here
/// (never one that was there, which another user could have put in its
/// place).
fn private_folder() -> Result<PathBuf> {
    sweep_left_behind();
    let mut last = None;
    for attempt in 0..16u32 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!("trainui-remote-{}-{nanos}-{attempt}", std::process::id());
        let root = std::env::temp_dir().join(name);
        match std::fs::DirBuilder::new().mode(0o700).create(&root) {
            Ok(()) => return Ok(root),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => last = Some(root),
            Err(err) => {
                return Err(Error::io(
                    "cannot make the folder for copies of remote runs",
                    &root,
                )(err));
            }
        }
    }
    Err(Error::Failed(format!(
        "cannot make a new folder for copies of remote runs in {} (the last tried, {}, was \
         there); set TRAINUI_REMOTE_CACHE to a folder of your own",
        std::env::temp_dir().display(),
        last.unwrap_or_default().display()
    )))
}

/// Removes the private folders of copies that trainuis of this user left
/// behind when they were killed (their process is gone).
fn sweep_left_behind() {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    let me = std::fs::metadata("/proc/self").map(|meta| meta.uid()).ok();
    for entry in entries.filter_map(std::result::Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("trainui-remote-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
            continue;
        };
        if meta.is_dir() && Some(meta.uid()) == me && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// `paths` with each remote run path replaced by its copy, followed to
/// `depth`; None when none is remote.
///
/// # Errors
/// As [`Remote::new`] and [`Remote::follow`].
pub fn localize(paths: &[PathBuf], depth: Depth) -> Result<(Vec<PathBuf>, Option<Remote>)> {
    if !paths.iter().any(|path| target(path).is_some()) {
        return Ok((paths.to_vec(), None));
    }
    let mut remote = Remote::new()?;
    let mut local = Vec::with_capacity(paths.len());
    for path in paths {
        local.push(match target(path) {
            Some(target) => remote.follow(&target, depth)?,
            None => path.clone(),
        });
    }
    Ok((local, Some(remote)))
}

/// As [`localize`], for paths that may be folders of runs (`runs`,
/// `watch`, `plot`, `diff`): a remote path stands for the runs at most
/// `depth` folders below it there (itself if it is a run, or if it holds
/// none).
///
/// # Errors
/// When a far side says a folder cannot be listed, or as [`Remote::follow`].
pub fn localize_folders(
    paths: &[PathBuf],
    list_depth: usize,
    depth: Depth,
) -> Result<(Vec<PathBuf>, Option<Remote>)> {
    if !paths.iter().any(|path| target(path).is_some()) {
        return Ok((paths.to_vec(), None));
    }
    let mut remote = Remote::new()?;
    // Every host's connection starts now: they are made side by side.
    for path in paths {
        if let Some(target) = target(path) {
            let _ = remote.link(&target.destination);
        }
    }
    let mut local = Vec::with_capacity(paths.len());
    for path in paths {
        let Some(target) = target(path) else {
            local.push(path.clone());
            continue;
        };
        // A host that cannot be reached now: the path is taken for a
        // run, shown unreachable until it can be.
        let found = remote
            .list_or_unreachable(&target, list_depth)?
            .unwrap_or_default();
        if found.is_empty() {
            local.push(remote.follow(&target, depth)?);
        }
        for run in found {
            local.push(remote.follow(&run, depth)?);
        }
    }
    Ok((local, Some(remote)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Option<(String, Option<u16>, String)> {
        target(Path::new(text)).map(|t| (t.destination.login, t.destination.port, t.path))
    }

    #[test]
    fn remote_paths_are_read_as_git_reads_them() {
        let some = |login: &str, port: Option<u16>, path: &str| {
            Some((login.to_owned(), port, path.to_owned()))
        };
        assert_eq!(parsed("gpu1:runs/a"), some("gpu1", None, "runs/a"));
        assert_eq!(parsed("me@gpu1:/data/r"), some("me@gpu1", None, "/data/r"));
        assert_eq!(parsed("gpu1:"), some("gpu1", None, "~"));
        assert_eq!(
            parsed("ssh://me@gpu1:2222/data/r"),
            some("me@gpu1", Some(2222), "/data/r")
        );
        assert_eq!(parsed("ssh://gpu1/~/runs"), some("gpu1", None, "~/runs"));
        for local in [
            "runs/a",
            "./gpu1:a",
            "/x/gpu1:a",
            "runs/lr:1e-3",
            ":a",
            "-oProxyCommand=x:y",
            "ssh://gpu1:port/x",
            "ssh://gpu1",
        ] {
            assert_eq!(parsed(local), None, "{local}");
        }
        let dir = tempfile::tempdir().unwrap();
        let here = dir.path().join("lr:1");
        std::fs::create_dir(&here).unwrap();
        let relative = std::env::current_dir().unwrap();
        std::env::set_current_dir(dir.path()).unwrap();
        let found = target(Path::new("lr:1"));
        std::env::set_current_dir(relative).unwrap();
        assert_eq!(found, None, "a path that exists here is local");
    }
}
