//! Helpers shared by the integration tests: run the real binary on the tiny
//! config and read back the run directory.
#![allow(dead_code)] // not every helper is used today

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Child, Output};

use assert_cmd::Command;
use serde_json::Value;

/// The repository's root (configs, assets and the Python package are there).
pub fn repo() -> &'static Path {
    static ROOT: std::sync::LazyLock<PathBuf> = std::sync::LazyLock::new(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .canonicalize()
            .unwrap()
    });
    &ROOT
}

/// One of the two programs, built beside each other in the workspace's
/// target folder (`cargo build --workspace`, which `./dev` runs, builds
/// `trainui` too; this package alone builds only `trainui-torch`).
pub fn program(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_trainui-torch")).with_file_name(name);
    assert!(
        path.exists(),
        "{} is not built: run the tests of the whole workspace (cargo test --workspace)",
        path.display()
    );
    path
}

/// `trainui` started from the repository root.
pub fn trainui() -> Command {
    Command::from_std(trainui_std())
}

fn trainui_std() -> std::process::Command {
    let mut command = std::process::Command::new(program("trainui"));
    command.current_dir(repo()).env_remove("NO_COLOR");
    command
}

/// `trainui train --config config/tiny.json --run-dir DIR --no-tui` plus `sets`.
pub fn tiny_run(run_dir: &Path, sets: &[&str]) -> Command {
    Command::from_std(tiny_run_std(run_dir, sets))
}

/// [`tiny_run`] as a plain process, for tests that signal it.
pub fn tiny_run_std(run_dir: &Path, sets: &[&str]) -> std::process::Command {
    let mut command = trainui_std();
    command.args([
        "train",
        "--config",
        "config/tiny.json",
        "--no-tui",
        "--run-dir",
    ]);
    command.arg(run_dir);
    for set in sets {
        command.args(["--set", set]);
    }
    command
}

pub fn events(run_dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(run_dir.join("events.jsonl"))
        .expect("events.jsonl exists")
        .lines()
        .map(|line| serde_json::from_str(line).expect("each event line is JSON"))
        .collect()
}

pub fn events_of(run_dir: &Path, kind: &str) -> Vec<Value> {
    events(run_dir)
        .into_iter()
        .filter(|e| e["type"] == kind)
        .collect()
}

pub fn step_losses(run_dir: &Path) -> Vec<f64> {
    events_of(run_dir, "step")
        .iter()
        .map(|e| e["loss"].as_f64().expect("loss is a number"))
        .collect()
}

pub fn status(run_dir: &Path) -> Value {
    let text = std::fs::read_to_string(run_dir.join("status/training_status.json"))
        .expect("the status file exists");
    serde_json::from_str(&text).expect("the status file is JSON")
}

/// Asserts that a command succeeded; the message holds its exit code and stderr.
pub fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "exit code {:?}; stderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Asserts a user mistake: exit code 2, every needle in stderr, no panic.
pub fn assert_user_error(output: &Output, needles: &[&str]) {
    assert_error(output, 2, needles);
}

/// Asserts a failure while running: exit code 1, every needle in stderr, no panic.
pub fn assert_runtime_error(output: &Output, needles: &[&str]) {
    assert_error(output, 1, needles);
}

fn assert_error(output: &Output, code: i32, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(code),
        "exit code; stderr:\n{stderr}"
    );
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "stderr lacks {needle:?}:\n{stderr}"
        );
    }
    assert!(
        !stderr.contains("panicked"),
        "an error must not panic:\n{stderr}"
    );
    assert!(
        !stderr.contains("RUST_BACKTRACE"),
        "no backtrace hint:\n{stderr}"
    );
}

pub fn temp_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("the temp folder is writable");
    path
}

/// Polls `what` every 20 ms until it holds; fails after `timeout`.
pub fn wait_for(what: &str, timeout: std::time::Duration, mut ready: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !ready() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Events of a run that may still be writing: a partial last line is left out.
pub fn events_so_far(run_dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(run_dir.join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// Waits until the run has written an event of type `kind`.
pub fn wait_for_event(run_dir: &Path, kind: &str) -> Value {
    let mut found = None;
    wait_for(kind, std::time::Duration::from_mins(2), || {
        found = events_so_far(run_dir)
            .into_iter()
            .find(|e| e["type"] == kind);
        found.is_some()
    });
    found.expect("found above")
}

/// Sends `signal` (e.g. "TERM", "USR1") to a process.
pub fn signal(child: &std::process::Child, signal: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{signal} failed");
}

/// Waits for a child to exit; fails after `timeout`.
pub fn wait_exit(
    child: &mut std::process::Child,
    timeout: std::time::Duration,
) -> std::process::ExitStatus {
    let mut exit = None;
    wait_for("the process to exit", timeout, || {
        exit = child.try_wait().expect("try_wait works");
        exit.is_some()
    });
    exit.expect("found above")
}

/// A process a test started, killed when the test ends, also when it fails:
/// no run outlives its test to slow the ones after it.
pub struct Spawned(Child);

impl Deref for Spawned {
    type Target = Child;

    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for Spawned {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `spawn`, for tests: the process is killed when the returned value drops.
pub trait SpawnForTest {
    fn spawn_for_test(&mut self) -> Spawned;
}

impl SpawnForTest for std::process::Command {
    fn spawn_for_test(&mut self) -> Spawned {
        Spawned(self.spawn().expect("the process starts"))
    }
}

/// `trainui` run by a user whom file permissions bind: this one, or
/// `nobody` when the tests run as root (who may read anything), with
/// `dir` opened for them to look into and `writable` to write into.
/// `None`, said on stderr, where root has no way to become another user.
pub fn as_another_user(dir: &Path, writable: &[&Path]) -> Option<std::process::Command> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let program = program("trainui");
    let me = std::fs::metadata("/proc/self").expect("/proc/self is readable");
    if me.uid() != 0 {
        return Some(std::process::Command::new(program));
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .expect("the test's folder can be opened to others");
    for path in writable {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777))
            .expect("the test's files can be opened to others");
    }
    let nobody = || {
        let mut command = std::process::Command::new("setpriv");
        command
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&program)
            .current_dir("/");
        command
    };
    let works = nobody()
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !works {
        eprintln!("skipped: running as root, and `setpriv` cannot run trainui as nobody");
        return None;
    }
    Some(nobody())
}

/// Whether the process `pid` is gone (a zombie waiting for its reaper is).
pub fn gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
    })
}
