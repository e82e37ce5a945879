//! A run directory is data: pointed at one that a hostile program or user
//! wrote, trainui's readers run nothing from it, let nothing from it drive
//! the terminal, never hang or read without end, and nobody but the run's
//! owner steers the run.
#![allow(clippy::unwrap_used)] // helpers outside #[test] functions

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{
    SpawnForTest, assert_success, assert_user_error, repo, tiny_run, tiny_run_std,
};
use serde_json::Value;
use trainui_protocol::events::{Producer, RankBeat, RunState, RunStatus};

/// How long a reader may take here before it is called hung: far more than
/// any of them needs on a loaded machine.
const HANG: Duration = Duration::from_secs(30);

/// A finished command's output; `hung` when it had to be killed.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    hung: bool,
}

/// Runs `trainui ARGS` with its output in files, killing it after [`HANG`].
fn trainui_within(args: &[&std::ffi::OsStr]) -> Ran {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = Command::new(crate::common::program("trainui"))
        .current_dir(repo())
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn_for_test();
    let started = Instant::now();
    let mut code = None;
    let mut hung = true;
    while started.elapsed() < HANG {
        if let Some(status) = child.try_wait().unwrap() {
            code = status.code();
            hung = false;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(child);
    Ran {
        code,
        stdout: std::fs::read_to_string(out).unwrap(),
        stderr: std::fs::read_to_string(err).unwrap(),
        hung,
    }
}

fn args<'a>(words: &'a [&'a str], path: &'a Path) -> Vec<&'a std::ffi::OsStr> {
    words
        .iter()
        .map(std::ffi::OsStr::new)
        .chain([path.as_os_str()])
        .collect()
}

fn mkfifo(path: &Path) {
    assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
}

/// The pid of a process that has ended.
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// Writes a status file, as a job would, in `run` (created).
fn write_status(run: &Path, configure: impl FnOnce(&mut RunStatus)) {
    let mut status = RunStatus::new(run.file_name().unwrap().to_string_lossy().into(), 100);
    status.state = RunState::Training;
    status.current_step = 40;
    status.loss = Some(1.5);
    status.pid = dead_pid();
    status.updated_at = "2026-12-06T10:00:00.000Z".into();
    configure(&mut status);
    std::fs::create_dir_all(run.join("status")).unwrap();
    std::fs::write(
        run.join("status/training_status.json"),
        serde_json::to_vec_pretty(&status).unwrap(),
    )
    .unwrap();
}

/// Characters that drive a terminal, reorder what it shows or end a line
/// (the newline, which ends a record, is the one that may stand).
fn drives_a_terminal(c: char) -> bool {
    c != '\n' && trainui_protocol::text::is_unsafe(c)
}

fn assert_inert(what: &str, text: &str) {
    let found: Vec<char> = text.chars().filter(|&c| drives_a_terminal(c)).collect();
    assert!(found.is_empty(), "{what} carries {found:?}:\n{text}");
}

/// Text as an attacker would name things: retitle the pane, clear the
/// screen, write the clipboard, conceal the rest in red, reorder the line.
const HOSTILE: &str = "x\x1b]0;owned\x07\x1b[2J\x1b]52;c;ZWNobyBvd25lZA==\x07\x1b[8;31m\u{9b}1m\u{202e}gnp.exe\u{2066}\r\n";

#[test]
fn special_files_in_a_run_directory_never_hang_status_or_runs() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path();
    // The status file is a FIFO.
    let fifo_status = runs.join("fifo-status");
    std::fs::create_dir_all(fifo_status.join("status")).unwrap();
    mkfifo(&fifo_status.join("status/training_status.json"));
    // The lock is a FIFO; the status names a live process (this one).
    let fifo_lock = runs.join("fifo-lock");
    write_status(&fifo_lock, |s| s.pid = std::process::id());
    mkfifo(&fifo_lock.join("lock"));
    // A rank file is a FIFO, another a link to a device.
    let fifo_rank = runs.join("fifo-rank");
    write_status(&fifo_rank, |_| {});
    std::fs::create_dir(fifo_rank.join("ranks")).unwrap();
    mkfifo(&fifo_rank.join("ranks/rank-0.json"));
    std::os::unix::fs::symlink("/dev/zero", fifo_rank.join("ranks/rank-1.json")).unwrap();
    // The status file is a socket.
    let socket_status = runs.join("socket-status");
    std::fs::create_dir_all(socket_status.join("status")).unwrap();
    let _socket =
        std::os::unix::net::UnixListener::bind(socket_status.join("status/training_status.json"))
            .unwrap();

    for (run, needle) in [
        (&fifo_status, Some("is a FIFO")),
        (&socket_status, Some("is a socket")),
        (&fifo_lock, None),
        (&fifo_rank, None),
    ] {
        for words in [&["status"][..], &["status", "--json"]] {
            let mut command = words.to_vec();
            command.push("--");
            let ran = trainui_within(&args(&command, run));
            assert!(!ran.hung, "trainui {words:?} {} hung", run.display());
            match needle {
                Some(needle) => {
                    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
                    assert!(
                        ran.stderr.contains(needle) && ran.stderr.contains("not a regular file"),
                        "{}",
                        ran.stderr
                    );
                }
                None => assert_eq!(ran.code, Some(0), "{}", ran.stderr),
            }
        }
    }
    let ran = trainui_within(&args(&["status"], &fifo_lock));
    assert!(ran.stdout.contains("running"), "{}", ran.stdout);

    let ran = trainui_within(&args(&["runs"], runs));
    assert!(!ran.hung, "trainui runs hung");
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    for name in ["fifo-status", "fifo-lock", "fifo-rank", "socket-status"] {
        assert!(ran.stdout.contains(name), "{name}:\n{}", ran.stdout);
    }
    assert!(
        ran.stdout.contains("UNREADABLE") && ran.stdout.contains("is a FIFO"),
        "{}",
        ran.stdout
    );
    let ran = trainui_within(&args(&["runs", "--json"], runs));
    assert!(!ran.hung, "trainui runs --json hung");
    let listed: Vec<Value> = serde_json::from_str(&ran.stdout).unwrap();
    let fifo = listed.iter().find(|r| r["name"] == "fifo-status").unwrap();
    assert!(
        fifo["problem"].as_str().unwrap().contains("is a FIFO"),
        "{fifo}"
    );
}

#[test]
fn endless_or_huge_status_files_are_refused_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let zero = dir.path().join("zero");
    std::fs::create_dir_all(zero.join("status")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", zero.join("status/training_status.json")).unwrap();
    // A sparse file of 4 GiB: no disk, but reading it whole would take the
    // memory.
    let huge = dir.path().join("huge");
    std::fs::create_dir_all(huge.join("status")).unwrap();
    std::fs::File::create(huge.join("status/training_status.json"))
        .unwrap()
        .set_len(4 << 30)
        .unwrap();
    for (run, needle) in [
        (&zero, "is a character device, not a regular file"),
        (&huge, "is larger than 4 MiB"),
    ] {
        for words in [&["status"][..], &["status", "--json"]] {
            let ran = trainui_within(&args(words, run));
            assert!(!ran.hung, "trainui {words:?} {} hung", run.display());
            assert_eq!(ran.code, Some(2), "{}", ran.stderr);
            assert!(ran.stderr.contains(needle), "{}", ran.stderr);
        }
    }
    let ran = trainui_within(&args(&["runs", "--json"], dir.path()));
    assert!(!ran.hung, "trainui runs hung");
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let listed: Vec<Value> = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(
        listed.iter().all(|run| run["problem"].is_string()),
        "{listed:?}"
    );
}

/// A run whose every text field is hostile: its name, its last message,
/// its checkpoint path, its producer, its rank's host.
fn hostile_run(runs: &Path) -> PathBuf {
    let run = runs.join(format!("run{}", &HOSTILE[1..20]));
    write_status(&run, |s| {
        s.run_name = HOSTILE.into();
        s.last_message = Some(HOSTILE.into());
        s.last_checkpoint = Some(HOSTILE.into());
        s.producer = Some(Producer {
            name: HOSTILE.into(),
            version: HOSTILE.into(),
            framework: HOSTILE.into(),
            world_size: 2,
        });
    });
    std::fs::create_dir(run.join("ranks")).unwrap();
    let beat = RankBeat {
        v: trainui_protocol::events::SCHEMA_VERSION,
        rank: 0,
        world_size: 2,
        local_rank: 0,
        host: HOSTILE.into(),
        pid: 1,
        phase: trainui_protocol::events::Phase::Training,
        step: 40,
        state: RunState::Training,
        beat: HOSTILE.into(),
        beat_unix: 1.0,
        written_unix: 1.0,
        signal: None,
    };
    std::fs::write(
        run.join("ranks/rank-0.json"),
        serde_json::to_vec(&beat).unwrap(),
    )
    .unwrap();
    run
}

#[test]
fn nothing_a_run_says_drives_the_terminal_of_status_or_runs() {
    let dir = tempfile::tempdir().unwrap();
    let run = hostile_run(dir.path());

    let ran = trainui_within(&args(&["status"], &run));
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_inert("status", &ran.stdout);
    assert_inert("status's stderr", &ran.stderr);
    // Shown, escaped, each on its line.
    for label in ["run ", "job ", "checkpoint ", "last ", "ranks "] {
        let line = ran
            .stdout
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("{label}:\n{}", ran.stdout));
        assert!(
            line.contains(r"x\x1b]0;owned\x07\x1b[2J") && line.contains(r"\u{202e}gnp.exe"),
            "{line}"
        );
    }
    let last = ran.stdout.lines().find(|l| l.starts_with("last ")).unwrap();
    assert!(last.ends_with(r"\u{2066}\r\n"), "one line: {last}");

    // JSON parsed and written again: the same value, nothing raw.
    let ran = trainui_within(&args(&["status", "--json"], &run));
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_inert("status --json", &ran.stdout);
    let shown: Value = serde_json::from_str(&ran.stdout).unwrap();
    let file: Value =
        serde_json::from_slice(&std::fs::read(run.join("status/training_status.json")).unwrap())
            .unwrap();
    assert_eq!(shown, file);

    let ran = trainui_within(&args(&["runs"], dir.path()));
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_inert("runs", &ran.stdout);
    assert!(
        ran.stdout.contains(r"run\x1b]0;owned\x07\x1b[2J"),
        "{}",
        ran.stdout
    );
    let ran = trainui_within(&args(&["runs", "--json"], dir.path()));
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_inert("runs --json", &ran.stdout);
    let listed: Vec<Value> = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(
        listed[0]["name"],
        run.file_name().unwrap().to_str().unwrap()
    );
}

#[test]
fn a_status_field_the_protocol_cannot_carry_is_named_and_the_rest_shown() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("big-step");
    write_status(&run, |s| s.run_name = "big-step".into());
    let path = run.join("status/training_status.json");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "\"current_step\": 40",
        "\"current_step\": 100000000000000000000",
    );
    std::fs::write(&path, text).unwrap();

    let ran = trainui_within(&args(&["status"], &run));
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("field current_step: ") && ran.stderr.contains("shown as ?"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stdout.contains("step       ? / 100 (?)"),
        "{}",
        ran.stdout
    );
    assert!(ran.stdout.contains("loss       1.5000"), "{}", ran.stdout);
    assert!(ran.stdout.contains("state      training"), "{}", ran.stdout);
    let ran = trainui_within(&args(&["runs"], dir.path()));
    assert!(ran.stdout.contains("?/100"), "{}", ran.stdout);

    let ran = trainui_within(&args(&["runs", "--json"], dir.path()));
    let listed: Vec<Value> = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(listed[0]["state"], "training", "{listed:?}");
    assert_eq!(listed[0]["loss"], 1.5);
    assert!(
        listed[0]["problem"]
            .as_str()
            .unwrap()
            .contains("current_step"),
        "{listed:?}"
    );
}

#[test]
fn a_closed_pipe_ends_a_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    for index in 0..3 {
        write_status(&dir.path().join(format!("run-{index}")), |_| {});
    }
    let run = dir.path().join("run-0");
    for words in [
        &["runs", "--json"][..],
        &["runs"],
        &["status"],
        &["status", "--json"],
    ] {
        let path = if words[0] == "runs" { dir.path() } else { &run };
        let mut child = Command::new(crate::common::program("trainui"))
            .args(words)
            .arg(path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader is gone before anything is written (`| head -0`).
        drop(child.stdout.take());
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{words:?}: {stderr}");
        assert!(stderr.is_empty(), "{words:?}: {stderr}");
    }
}

#[test]
fn ctl_never_writes_through_a_linked_or_shared_control_folder() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o700)).unwrap();
    let linked = dir.path().join("linked");
    write_status(&linked, |s| s.pid = std::process::id());
    std::os::unix::fs::symlink(&elsewhere, linked.join("control")).unwrap();
    let output = crate::common::trainui()
        .args(["ctl"])
        .arg(&linked)
        .args(["stop", "--timeout", "1"])
        .output()
        .unwrap();
    assert_user_error(&output, &["is a symbolic link", "no command was sent"]);
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);

    // A control folder others can open is refused too.
    let open = dir.path().join("open");
    write_status(&open, |s| s.pid = std::process::id());
    std::fs::create_dir(open.join("control")).unwrap();
    std::fs::set_permissions(open.join("control"), std::fs::Permissions::from_mode(0o733)).unwrap();
    let output = crate::common::trainui()
        .args(["ctl"])
        .arg(&open)
        .args(["stop", "--timeout", "1"])
        .output()
        .unwrap();
    assert_user_error(&output, &["has mode 733"]);
    assert_eq!(std::fs::read_dir(open.join("control")).unwrap().count(), 0);
}

/// Every path under `root` whose mode lets the group or others write.
fn writable_by_others(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
        if !meta.file_type().is_symlink() && meta.mode() & 0o022 != 0 {
            found.push(format!("{} {:o}", path.display(), meta.mode() & 0o777));
        }
    }
    found
}

#[test]
fn under_umask_000_nothing_a_run_makes_is_writable_by_others() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let command = tiny_run_std(
        &run,
        &[
            "train.max_steps=20",
            "eval.eval_steps=10",
            "checkpoint.save_steps=10",
            "tensorboard.enabled=true",
        ],
    );
    let program = command.get_program().to_owned();
    let arguments: Vec<_> = command.get_args().map(ToOwned::to_owned).collect();
    let output = Command::new("sh")
        .current_dir(repo())
        .arg("-c")
        .arg("umask 000 && exec \"$@\"")
        .arg("sh")
        .arg(program)
        .args(arguments)
        .output()
        .unwrap();
    assert_success(&output);
    assert!(run.join("checkpoints/checkpoint-20").is_dir());
    assert!(run.join("tensorboard").is_dir());
    assert_eq!(writable_by_others(&run), Vec::<String>::new());
    let lock = std::fs::metadata(run.join("lock")).unwrap().mode() & 0o777;
    assert_eq!(lock, 0o600, "nobody else can hold the run's lock");
}

#[test]
fn a_config_json_others_can_write_does_not_steer_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let _child = tiny_run_std(
        &run,
        &[
            "train.max_steps=1000000",
            "train.log_steps=5",
            "eval.eval_steps=0",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn_for_test();
    crate::common::wait_for_event(&run, "step");
    let config_path = run.join("config.json");
    let edit = |steps: u64| {
        let mut config: Value =
            serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
        config["train"]["log_steps"] = steps.into();
        std::fs::write(&config_path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    };
    // Another user could have written this edit.
    std::fs::set_permissions(&config_path, std::fs::Permissions::from_mode(0o666)).unwrap();
    edit(7);
    let refused = crate::common::wait_for_event(&run, "control");
    assert_eq!(refused["accepted"], false, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("other users can write to it (mode 666)"),
        "{refused}"
    );
    assert_eq!(
        crate::common::status(&run)["settings"]["train"]["log_steps"],
        5
    );

    // The owner's own file is read.
    std::fs::set_permissions(&config_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    edit(9);
    crate::common::wait_for("the edit to apply", Duration::from_mins(1), || {
        crate::common::events_so_far(&run)
            .iter()
            .any(|e| e["type"] == "control" && e["accepted"] == true)
    });
    crate::common::wait_for("the new setting", Duration::from_mins(1), || {
        crate::common::status(&run)["settings"]["train"]["log_steps"] == 9
    });
}

#[test]
fn resuming_a_run_directory_never_runs_its_command() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let planted = dir.path().join("planted");
    tiny_run(&run, &["train.max_steps=4", "eval.eval_steps=0"])
        .assert()
        .success();
    // The run has no complete checkpoint, and its config.json names a
    // command, as another user could have written it.
    std::fs::remove_dir_all(run.join("checkpoints")).unwrap();
    let config_path = run.join("config.json");
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["alerts"]["command"] = format!("touch {}", planted.display()).into();
    std::fs::write(&config_path, config.to_string()).unwrap();

    // A config.json that others could have written is not taken at all.
    std::fs::set_permissions(&config_path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let output = crate::common::trainui()
        .args(["train", "--no-tui", "--resume", "auto", "--run-dir"])
        .arg(&run)
        .output()
        .unwrap();
    assert_user_error(&output, &["other users can write to it (mode 666)"]);
    std::fs::set_permissions(&config_path, std::fs::Permissions::from_mode(0o644)).unwrap();

    // What the README's supervisor loop and the TUI's `r` key run.
    let output = crate::common::trainui()
        .args(["train", "--no-tui", "--resume", "auto", "--run-dir"])
        .arg(&run)
        .output()
        .unwrap();
    assert_success(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("alerts.command is not taken from a saved run"),
        "{stderr}"
    );
    assert!(!planted.exists(), "the run directory's command ran");

    // The user's own command line still gives one.
    let mine = dir.path().join("mine");
    std::fs::remove_dir_all(run.join("checkpoints")).unwrap();
    let output = crate::common::trainui()
        .args(["train", "--no-tui", "--resume", "auto", "--run-dir"])
        .arg(&run)
        .arg("--set")
        .arg(format!("alerts.command=touch {}", mine.display()))
        .output()
        .unwrap();
    assert_success(&output);
    crate::common::wait_for("the user's alert", Duration::from_secs(30), || {
        mine.exists()
    });
    assert!(!planted.exists());
}

/// Something other than a regular file, made at `path`.
fn make_special(kind: &str, path: &Path) -> Option<std::os::unix::net::UnixListener> {
    let link = |target: &str| std::os::unix::fs::symlink(target, path).unwrap();
    match kind {
        "fifo" => mkfifo(path),
        "socket" => return Some(std::os::unix::net::UnixListener::bind(path).unwrap()),
        "dev-zero" => link("/dev/zero"),
        "dev-null" => link("/dev/null"),
        "dev-urandom" => link("/dev/urandom"),
        "folder" => std::fs::create_dir(path).unwrap(),
        "dangling" => link("/nonexistent/trainui"),
        "loop" => std::os::unix::fs::symlink(path, path).unwrap(),
        other => panic!("{other}"),
    }
    None
}

#[test]
fn every_special_file_in_every_place_is_named_never_waited_on() {
    let kinds = [
        "fifo",
        "socket",
        "dev-zero",
        "dev-null",
        "dev-urandom",
        "folder",
        "dangling",
        "loop",
    ];
    let places = [
        "status/training_status.json",
        "lock",
        "ranks/rank-0.json",
        "events.jsonl",
        "config.json",
        "control",
    ];
    let commands: [&[&str]; 6] = [
        &["status"],
        &["status", "--json"],
        &["runs"],
        &["runs", "--json"],
        &["ctl", "RUN", "stop", "--timeout", "1"],
        &["export-tensorboard", "RUN", "--out", "OUT"],
    ];
    let mut cases = 0;
    for kind in kinds {
        for place in places {
            let dir = tempfile::tempdir().unwrap();
            let run = dir.path().join("run");
            if place != "status/training_status.json" {
                write_status(&run, |s| s.pid = std::process::id());
            }
            std::fs::create_dir_all(run.join(place).parent().unwrap()).unwrap();
            let _socket = make_special(kind, &run.join(place));
            for command in commands {
                let out = dir.path().join("tb");
                let words: Vec<std::ffi::OsString> = command
                    .iter()
                    .map(|&w| match w {
                        "RUN" => run.clone().into_os_string(),
                        "OUT" => out.clone().into_os_string(),
                        w => w.into(),
                    })
                    .collect();
                let mut words: Vec<&std::ffi::OsStr> = words.iter().map(AsRef::as_ref).collect();
                match command[0] {
                    "status" => words.push(run.as_os_str()),
                    "runs" => words.push(dir.path().as_os_str()),
                    _ => {}
                }
                let ran = trainui_within(&words);
                let what = format!("{kind} as {place}: trainui {command:?}");
                assert!(!ran.hung, "{what}: hung");
                assert!(
                    matches!(ran.code, Some(0..=2)),
                    "{what}: exit {:?}\n{}",
                    ran.code,
                    ran.stderr
                );
                assert!(!ran.stderr.contains("panicked"), "{what}: {}", ran.stderr);
                assert_inert(&what, &ran.stdout);
                assert_inert(&what, &ran.stderr);
                // Where the status file should be, the reason is named.
                if place == "status/training_status.json" {
                    match command[0] {
                        "status" => {
                            assert_eq!(ran.code, Some(2), "{what}");
                            assert!(ran.stderr.contains("training_status.json"), "{what}");
                        }
                        "runs" => {
                            let said = if command.len() == 1 {
                                "UNREADABLE"
                            } else {
                                "\"problem\": \""
                            };
                            assert!(ran.stdout.contains(said), "{what}: {}", ran.stdout);
                        }
                        _ => {}
                    }
                }
                cases += 1;
            }
        }
    }
    println!("{cases} cases, none hung or panicked");
    assert_eq!(cases, kinds.len() * places.len() * commands.len());
}

#[test]
fn no_character_that_drives_a_terminal_comes_through_any_field() {
    let characters: Vec<char> = ('\u{1}'..='\u{1f}')
        .chain('\u{7f}'..='\u{9f}')
        .chain(['\u{200e}', '\u{200f}', '\u{61c}', '\u{2028}', '\u{2029}'])
        .chain('\u{202a}'..='\u{202e}')
        .chain('\u{2066}'..='\u{2069}')
        .collect();
    let mut cases = 0;
    let dir = tempfile::tempdir().unwrap();
    // What a run with plain texts prints, line for line.
    let plain = dir.path().join("plain");
    write_status(&plain, |s| {
        s.last_message = Some("m".into());
        s.last_checkpoint = Some("c".into());
        s.producer = Some(Producer {
            name: "p".into(),
            version: "v".into(),
            framework: "f".into(),
            world_size: 1,
        });
    });
    let lines = trainui_within(&args(&["status"], &plain))
        .stdout
        .lines()
        .count();
    std::fs::remove_dir_all(&plain).unwrap();
    for (index, c) in characters.iter().enumerate() {
        let text = format!("a{c}[31mb{c}]0;t{c}");
        // The folder's name too (a name cannot hold '/'; no control is one).
        let run = dir.path().join(format!("run-{index}-{c}"));
        write_status(&run, |s| {
            s.run_name.clone_from(&text);
            s.last_message = Some(text.clone());
            s.last_checkpoint = Some(text.clone());
            s.device.clone_from(&text);
            s.updated_at.clone_from(&text);
            s.producer = Some(Producer {
                name: text.clone(),
                version: text.clone(),
                framework: text.clone(),
                world_size: 1,
            });
        });
        for words in [&["status"][..], &["status", "--json"]] {
            let ran = trainui_within(&args(words, &run));
            assert_eq!(ran.code, Some(0), "{c:?}: {}", ran.stderr);
            assert_inert(&format!("{c:?} in status"), &ran.stdout);
            assert_inert(&format!("{c:?} in status"), &ran.stderr);
            if words.len() == 1 {
                assert_eq!(
                    ran.stdout.lines().count(),
                    lines,
                    "{c:?}: every record on its line:\n{}",
                    ran.stdout
                );
            }
            cases += 1;
        }
    }
    for words in [&["runs"][..], &["runs", "--json"]] {
        let ran = trainui_within(&args(words, dir.path()));
        assert_eq!(ran.code, Some(0), "{}", ran.stderr);
        assert_inert("runs", &ran.stdout);
        cases += 1;
    }
    println!("{cases} cases, nothing raw reached the output");
}

#[test]
fn data_and_a_tokenizer_a_saved_run_names_are_read_only_from_regular_files() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("data.jsonl");
    mkfifo(&fifo);
    for key in ["data.train_file", "data.tokenizer"] {
        let output = tiny_run(
            &dir.path().join(format!("run-{key}")),
            &[&format!("{key}={}", fifo.display())],
        )
        .timeout(HANG)
        .output()
        .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{key}: {stderr}");
        assert!(stderr.contains("data.jsonl"), "{key}: {stderr}");
    }
}
