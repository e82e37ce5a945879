//! Nothing lost, nobody else steers, nothing spins: the run directory and
//! its control folder under hostile conditions, the run lock, divergence,
//! signals, a full disk, and sizes that cannot fit.
#![allow(clippy::unwrap_used)] // helpers outside #[test] functions

use crate::common::SpawnForTest;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::common::{
    assert_runtime_error, assert_success, assert_user_error, events_of, events_so_far, signal,
    status, tiny_run, tiny_run_std, trainui, wait_exit, wait_for, wait_for_event,
};

/// A long headless run in `run`, its output dropped.
fn start(run: &Path, extra: &[&str]) -> crate::common::Spawned {
    let mut sets = vec![
        "train.max_steps=1000000",
        "train.log_steps=5",
        "eval.eval_steps=0",
    ];
    sets.extend(extra);
    tiny_run_std(run, &sets)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn_for_test()
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").unwrap().uid() == 0
}

#[test]
fn a_control_folder_the_run_did_not_make_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    // A source tree with a control/ folder of its own (mode 0755).
    let run = dir.path().join("tree");
    let control = run.join("control");
    std::fs::create_dir_all(&control).unwrap();
    std::fs::write(control.join("notes.json"), "{}").unwrap();
    std::fs::write(control.join("valve.c"), "int main;").unwrap();
    let output = tiny_run(&run, &["train.max_steps=2"]).output().unwrap();
    assert_user_error(
        &output,
        &["control: has mode 755", "pick another --run-dir"],
    );
    assert!(control.join("notes.json").exists() && control.join("valve.c").exists());
    assert!(!run.join("events.jsonl").exists(), "nothing is written");

    // control/ as a link to somewhere else: that folder is not touched.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(elsewhere.join("keep.json"), "{}").unwrap();
    let linked = dir.path().join("linked");
    std::fs::create_dir(&linked).unwrap();
    std::os::unix::fs::symlink(&elsewhere, linked.join("control")).unwrap();
    let output = tiny_run(&linked, &["train.max_steps=2"]).output().unwrap();
    assert_user_error(&output, &["is a symbolic link"]);
    assert!(elsewhere.join("keep.json").exists());
    let mode = std::fs::metadata(&elsewhere).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o755, "the folder it points to keeps its mode");
}

#[test]
fn another_users_control_folder_or_a_folder_others_can_write_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // A run directory others can write to (no sticky bit) is refused.
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let output = tiny_run(&shared.join("run"), &["train.max_steps=2"])
        .output()
        .unwrap();
    assert_user_error(&output, &["other users can write to it (mode 777)"]);

    if !is_root() {
        println!("skipped: making a folder of another user needs root");
        return;
    }
    let run = dir.path().join("run");
    let control = run.join("control");
    std::fs::create_dir_all(&control).unwrap();
    std::fs::set_permissions(&control, std::fs::Permissions::from_mode(0o700)).unwrap();
    let chown = std::process::Command::new("chown")
        .args(["65534:65534"])
        .arg(&control)
        .status()
        .unwrap();
    assert!(chown.success());
    let output = tiny_run(&run, &["train.max_steps=2"]).output().unwrap();
    assert_user_error(&output, &["belongs to user 65534"]);
    assert_eq!(std::fs::metadata(&control).unwrap().uid(), 65534);
}

#[test]
fn a_resume_from_an_older_checkpoint_is_refused_while_newer_ones_exist() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let sets = [
        "train.max_steps=40",
        "checkpoint.save_steps=20",
        "checkpoint.save_total_limit=0",
        "eval.eval_steps=0",
    ];
    tiny_run(&run, &sets).assert().success();
    let newer = run.join("checkpoints/checkpoint-40/model.safetensors");
    let before = std::fs::read(&newer).unwrap();
    let output = tiny_run(&run, &sets)
        .arg("--resume")
        .arg(run.join("checkpoints/checkpoint-20"))
        .output()
        .unwrap();
    assert_user_error(
        &output,
        &["has newer checkpoints", "checkpoint-40", "--resume latest"],
    );
    assert_eq!(
        std::fs::read(&newer).unwrap(),
        before,
        "checkpoint-40 is untouched"
    );
}

#[test]
fn a_second_trainer_on_a_live_run_is_refused_and_a_killed_run_leaves_no_lock() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut first = start(&run, &["checkpoint.save_steps=10"]);
    wait_for_event(&run, "checkpoint");
    let pid = first.id().to_string();
    for resume in ["latest", "auto"] {
        let output = tiny_run(&run, &[])
            .args(["--resume", resume])
            .output()
            .unwrap();
        assert_user_error(&output, &["in use by the trainui process", &pid]);
    }
    assert_eq!(
        status(&run)["pid"].to_string(),
        pid,
        "the status is the first run's"
    );
    let summary = trainui().arg("status").arg(&run).output().unwrap();
    assert!(String::from_utf8_lossy(&summary.stdout).contains("running)"));

    // kill -9: the kernel drops the lock with the process.
    signal(&first, "KILL");
    let _ = first.wait();
    let summary = trainui().arg("status").arg(&run).output().unwrap();
    let summary = String::from_utf8_lossy(&summary.stdout).into_owned();
    assert!(summary.contains("not running"), "{summary}");
    assert!(summary.contains("gone without a final state"), "{summary}");
    // A pid reused by another process is not the run.
    let mut other = std::process::Command::new("sleep")
        .arg("30")
        .spawn_for_test();
    let status_path = run.join("status/training_status.json");
    let text = std::fs::read_to_string(&status_path).unwrap();
    let reused = text.replace(
        &format!("\"pid\": {pid}"),
        &format!("\"pid\": {}", other.id()),
    );
    std::fs::write(&status_path, reused).unwrap();
    let summary = trainui().arg("status").arg(&run).output().unwrap();
    assert!(
        String::from_utf8_lossy(&summary.stdout).contains("not running"),
        "a reused pid is not the run"
    );
    let _ = other.kill();
    let _ = other.wait();

    let output = tiny_run(&run, &["train.max_steps=12"])
        .args(["--resume", "latest"])
        .output()
        .unwrap();
    assert_success(&output);
}

/// A run whose loss is NaN from its second step: the first step's learning
/// rate (1e6) throws the weights far out.
const DIVERGING: [&str; 6] = [
    "train.learning_rate=1e6",
    "train.min_learning_rate=0",
    "train.warmup_steps=0",
    "train.log_steps=1",
    "train.grad_clip=0",
    "eval.eval_steps=0",
];

#[test]
fn a_non_finite_loss_stops_the_run_without_saving_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut sets = DIVERGING.to_vec();
    sets.extend(["train.max_steps=20", "checkpoint.save_steps=1"]);
    let output = tiny_run(&run, &sets).output().unwrap();
    assert_runtime_error(&output, &["the loss is NaN", "train.on_nonfinite = stop"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("NON-FINITE loss NaN"), "{stdout}");
    let event = &events_of(&run, "non_finite")[0];
    assert_eq!(
        (event["loss"].as_str(), event["action"].as_str()),
        (Some("NaN"), Some("stop"))
    );
    let status = status(&run);
    assert_eq!(status["state"], "failed");
    assert_eq!(status["nonfinite_steps"], 1);
    // Only the checkpoint of the good first step exists.
    let saved: Vec<u64> = events_of(&run, "checkpoint")
        .iter()
        .map(|e| e["step"].as_u64().unwrap())
        .collect();
    assert_eq!(saved, [1]);
}

#[test]
fn skip_drops_the_updates_and_warn_never_saves_non_finite_weights() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("skip");
    let mut sets = DIVERGING.to_vec();
    sets.extend(["train.max_steps=6", "train.on_nonfinite=skip"]);
    assert_success(&tiny_run(&run, &sets).output().unwrap());
    let status = status(&run);
    assert_eq!(status["state"], "finished");
    assert_eq!(status["nonfinite_steps"], 5, "steps 2 to 6 were skipped");
    assert_eq!(status["loss"], "NaN", "a NaN loss is said, not null");
    let summary = trainui().arg("status").arg(&run).output().unwrap();
    assert!(String::from_utf8_lossy(&summary.stdout).contains("loss       NaN"));

    // warn: a good checkpoint at 4, then a diverging resume keeps it newest.
    let run = dir.path().join("warn");
    let good = [
        "train.max_steps=4",
        "checkpoint.save_steps=2",
        "eval.eval_steps=0",
    ];
    tiny_run(&run, &good).assert().success();
    let output = tiny_run(
        &run,
        &[
            "train.max_steps=8",
            "train.learning_rate=1e6",
            "train.min_learning_rate=0",
            "train.grad_clip=0",
            "checkpoint.save_steps=1",
            "checkpoint.save_total_limit=1",
            "train.on_nonfinite=warn",
        ],
    )
    .args(["--resume", "latest"])
    .output()
    .unwrap();
    assert_success(&output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("the weights are not finite"), "{stdout}");
    // Nothing saved, nothing pruned, from the first non-finite step on.
    let first = events_of(&run, "non_finite")[0]["step"].as_u64().unwrap();
    let saved: Vec<u64> = events_of(&run, "checkpoint")
        .iter()
        .map(|e| e["step"].as_u64().unwrap())
        .collect();
    assert!(
        saved.iter().all(|&step| step < first),
        "{saved:?} from {first}"
    );
    let newest = *saved.last().unwrap();
    let left: Vec<String> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left,
        [format!("checkpoint-{newest}")],
        "the last good one stays"
    );
}

#[test]
fn sighup_stops_and_saves_like_sigterm_unless_nohup_ignores_it() {
    let dir = tempfile::tempdir().unwrap();
    // Under nohup (SIGHUP ignored from the start) the run goes on.
    let run = dir.path().join("nohup");
    let binary = crate::common::program("trainui");
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "trap '' HUP; exec {} train --config config/tiny.json --no-tui --run-dir {} \
             --set train.max_steps=1000000 --set eval.eval_steps=0",
            binary.display(),
            run.display()
        ))
        .current_dir(crate::common::repo())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn_for_test();
    wait_for_event(&run, "step");
    signal(&child, "HUP");
    std::thread::sleep(Duration::from_secs(2));
    assert!(child.try_wait().unwrap().is_none(), "nohup keeps it going");
    assert_eq!(status(&run)["state"], "training");
    signal(&child, "TERM");
    assert_eq!(
        wait_exit(&mut child, Duration::from_mins(1)).code(),
        Some(0)
    );

    let run = dir.path().join("run");
    let mut child = start(&run, &[]);
    wait_for_event(&run, "step");
    signal(&child, "HUP");
    assert_eq!(
        wait_exit(&mut child, Duration::from_mins(1)).code(),
        Some(0)
    );
    assert_eq!(status(&run)["state"], "stopped");
    assert!(
        !events_of(&run, "checkpoint").is_empty(),
        "saved on the way out"
    );
}

#[test]
fn a_stopped_process_is_not_stalled_and_a_stall_exit_is_clean() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    // Stopped for three times the stall timeout.
    let mut child = start(
        &run,
        &["watchdog.stall_timeout_seconds=5", "watchdog.on_stall=exit"],
    );
    wait_for_event(&run, "step");
    signal(&child, "STOP");
    std::thread::sleep(Duration::from_secs(15));
    signal(&child, "CONT");
    std::thread::sleep(Duration::from_secs(3));
    let exit = child.try_wait().unwrap();
    assert!(
        exit.is_none(),
        "exited with {exit:?}: {:?}",
        events_so_far(&run)
            .iter()
            .filter(|e| e["type"] == "stalled" || e["type"] == "state")
            .collect::<Vec<_>>()
    );
    assert!(events_of(&run, "stalled").is_empty());
    signal(&child, "TERM");
    assert_eq!(
        wait_exit(&mut child, Duration::from_mins(1)).code(),
        Some(0)
    );

    // A real stall ends with 75 and the state `stalled`, every time.
    for attempt in 0..3 {
        let run = dir.path().join(format!("stall-{attempt}"));
        let mut child = tiny_run_std(
            &run,
            &[
                "train.max_steps=1000",
                "eval.eval_steps=0",
                "watchdog.stall_timeout_seconds=1",
                "watchdog.on_stall=exit",
            ],
        )
        .env("TRAINUI_FAULT", "stall_at_step:5")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn_for_test();
        let exit = wait_exit(&mut child, Duration::from_mins(1));
        assert_eq!(exit.code(), Some(75), "attempt {attempt}: {exit:?}");
        assert_eq!(status(&run)["state"], "stalled");
    }
}

#[test]
fn a_full_disk_gives_warnings_a_true_final_state_and_whole_lines() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&disk)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        println!("skipped: mounting a 2 MB filesystem needs root");
        return;
    }
    let unmount = || {
        let _ = std::process::Command::new("umount").arg(&disk).status();
    };
    let run = disk.join("run");
    let sets = [
        "train.max_steps=60",
        "train.log_steps=1",
        "eval.eval_steps=0",
        "checkpoint.save_steps=2",
        "checkpoint.save_total_limit=0",
    ];
    let output = tiny_run(&run, &sets).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let checkpoints: Vec<String> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let events = std::fs::read(run.join("events.jsonl")).unwrap();
    unmount();
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("finished at step 60/60"), "{stdout}");
    assert!(
        stdout.contains("failed") && stdout.contains("earlier checkpoints are intact"),
        "{stdout}"
    );
    assert!(
        !checkpoints.iter().any(|name| name.starts_with('.')),
        "no unfinished checkpoint is left: {checkpoints:?}"
    );
    assert!(events.is_empty() || events.ends_with(b"\n"), "no half line");
    for line in events.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        serde_json::from_slice::<serde_json::Value>(line).unwrap();
    }
}

#[test]
fn a_resumed_run_starts_on_a_new_line_and_unfinished_checkpoints_are_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let sets = [
        "train.max_steps=4",
        "checkpoint.save_steps=2",
        "eval.eval_steps=0",
    ];
    tiny_run(&run, &sets).assert().success();
    // A killed process's half line, and its unfinished checkpoint folder.
    let events = run.join("events.jsonl");
    let mut text = std::fs::read(&events).unwrap();
    text.extend_from_slice(b"{\"v\":2,\"type\":\"st");
    std::fs::write(&events, text).unwrap();
    let unfinished = run.join("checkpoints/.checkpoint-6.tmp-999999");
    std::fs::create_dir_all(&unfinished).unwrap();
    std::fs::write(unfinished.join("model.safetensors"), vec![0u8; 1000]).unwrap();

    tiny_run(
        &run,
        &[
            "train.max_steps=6",
            "checkpoint.save_steps=2",
            "eval.eval_steps=0",
        ],
    )
    .args(["--resume", "latest"])
    .assert()
    .success();
    assert!(!unfinished.exists());
    let text = std::fs::read_to_string(&events).unwrap();
    let bad: Vec<&str> = text
        .lines()
        .filter(|line| serde_json::from_str::<serde_json::Value>(line).is_err())
        .collect();
    assert_eq!(
        bad,
        ["{\"v\":2,\"type\":\"st"],
        "only the half line is not JSON"
    );
    assert_eq!(events_of_resumed(&run), 1);
}

fn events_of_resumed(run: &Path) -> usize {
    events_so_far(run)
        .iter()
        .filter(|e| e["type"] == "started" && e["resumed_from"].is_string())
        .count()
}

#[test]
fn resume_auto_without_a_checkpoint_keeps_the_runs_own_settings() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    // The tiny model (seed 7), killed before its first checkpoint.
    let mut child = start(&run, &["checkpoint.save_steps=0"]);
    wait_for_event(&run, "step");
    signal(&child, "KILL");
    let _ = child.wait();
    let broken = run.join("checkpoints/checkpoint-3");
    std::fs::create_dir_all(&broken).unwrap();

    let output = trainui()
        .args(["train", "--no-tui", "--resume", "auto", "--run-dir"])
        .arg(&run)
        .args(["--set", "train.max_steps=3"])
        .output()
        .unwrap();
    assert_success(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("skipping an incomplete checkpoint"),
        "{stderr}"
    );
    assert!(stderr.contains("checkpoint-3"), "{stderr}");
    let started = events_of(&run, "started");
    let last = started.last().unwrap();
    assert_eq!(
        last["parameters"], started[0]["parameters"],
        "the same model"
    );
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["seed"], 7);
    assert_eq!(config["model"]["n_embd"], 32);
}

#[test]
fn sizes_that_cannot_fit_are_refused_before_anything_is_built() {
    let dir = tempfile::tempdir().unwrap();
    for (set, needle) in [
        (
            "train.batch_size=4294967295",
            "train.batch_size must be at most",
        ),
        ("model.n_embd=1048576", "model.n_embd must be at most"),
        ("model.n_embd=65536", "more than the"),
        ("train.batch_size=1048576", "more than the"),
    ] {
        let run = dir.path().join("run");
        let output = tiny_run(&run, &[set]).output().unwrap();
        assert_user_error(&output, &[needle]);
        assert!(!run.exists(), "{set}: nothing is written");
    }
    let output = trainui()
        .args(["tokenizer", "--data", "assets/demo/val.jsonl"])
        .args(["--vocab-size", "1000000000", "--out"])
        .arg(dir.path().join("t.json"))
        .output()
        .unwrap();
    assert_user_error(&output, &["--vocab-size 1000000000: at most 1048576"]);

    // A line of 2 MB: refused by its length, before it is tokenized.
    let completion = "7".repeat(2 << 20);
    let data = crate::common::temp_file(
        dir.path(),
        "big.jsonl",
        &format!("{{\"prompt\": \"1+1=\", \"completion\": \"{completion}\"}}\n"),
    );
    let output = tiny_run(
        &dir.path().join("big"),
        &[&format!("data.train_file={}", data.display())],
    )
    .output()
    .unwrap();
    assert_user_error(
        &output,
        &["big.jsonl:1: a line of 2097", "more than the 1048576"],
    );
}

#[test]
fn a_checkpoint_with_a_value_out_of_bounds_resumes_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    tiny_run(&run, &["train.max_steps=2", "eval.eval_steps=0"])
        .assert()
        .success();
    // Same length, so the manifest's sizes still hold.
    let state = run.join("checkpoints/checkpoint-2/trainer_state.json");
    let text = std::fs::read_to_string(&state).unwrap();
    assert!(text.contains("\"eval_timeout_seconds\": 30.0"), "{text}");
    std::fs::write(
        &state,
        text.replace(
            "\"eval_timeout_seconds\": 30.0",
            "\"eval_timeout_seconds\": 1e30",
        ),
    )
    .unwrap();
    let output = tiny_run(&run, &["train.max_steps=4"])
        .args(["--resume", "latest"])
        .output()
        .unwrap();
    assert_user_error(
        &output,
        &["trainer_state.json", "at most 31536000 (one year)"],
    );
}

#[test]
fn bad_entries_of_the_control_folder_are_reported_once_and_future_commands_refused() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut child = start(&run, &[]);
    wait_for_event(&run, "step");
    let control = run.join("control");
    std::fs::create_dir(control.join("folder.json")).unwrap();
    let future = format!(
        r#"{{"v":2,"id":"f","created_unix":{},"command":"stop"}}"#,
        4_000_000_000u64
    );
    // Written whole under a hidden name, then renamed, as ctl does.
    std::fs::write(control.join(".future.tmp"), future).unwrap();
    std::fs::rename(control.join(".future.tmp"), control.join("future.json")).unwrap();
    wait_for(
        "the future command's answer",
        Duration::from_mins(1),
        || {
            events_so_far(&run)
                .iter()
                .any(|e| e["type"] == "control" && e["id"] == "f")
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    let answers: Vec<serde_json::Value> = events_so_far(&run)
        .into_iter()
        .filter(|e| e["type"] == "control")
        .collect();
    let about_folder = answers.iter().filter(|e| e["id"] == "folder.json").count();
    assert_eq!(about_folder, 1, "{answers:?}");
    let future = answers.iter().find(|e| e["id"] == "f").unwrap();
    assert_eq!(future["accepted"], false);
    assert!(
        future["message"]
            .as_str()
            .unwrap()
            .contains("from the future")
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "the stop was not obeyed"
    );
    assert!(control.join("folder.json").is_dir(), "left in place");
    signal(&child, "TERM");
    assert_eq!(
        wait_exit(&mut child, Duration::from_mins(1)).code(),
        Some(0)
    );
}
