//! Checkpoints are complete or ignored, pruned oldest first, and resume is exact.
#![allow(clippy::unwrap_used)] // helpers outside #[test] functions

use crate::common::SpawnForTest;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::common::{
    assert_user_error, events_of, signal, status, step_losses, tiny_run, tiny_run_std, wait_exit,
};

const SETS: [&str; 4] = [
    "train.max_steps=20",
    "train.log_steps=1",
    "eval.eval_steps=0",
    "checkpoint.save_total_limit=0",
];

fn steps_and_losses(run: &Path) -> Vec<(u64, f64)> {
    events_of(run, "step")
        .iter()
        .map(|e| (e["step"].as_u64().unwrap(), e["loss"].as_f64().unwrap()))
        .collect()
}

fn with(extra: &[&'static str]) -> Vec<&'static str> {
    SETS.iter().chain(extra).copied().collect()
}

#[test]
fn resuming_a_checkpoint_gives_the_same_losses_as_running_straight() {
    let dir = tempfile::tempdir().unwrap();
    let straight = dir.path().join("straight");
    tiny_run(&straight, &with(&["checkpoint.save_steps=10"]))
        .assert()
        .success();
    let all = steps_and_losses(&straight);
    assert_eq!(all.len(), 20);

    let resumed = dir.path().join("resumed");
    let checkpoint = straight.join("checkpoints/checkpoint-10");
    let mut command = tiny_run(&resumed, &with(&["checkpoint.save_steps=10"]));
    command.arg("--resume").arg(&checkpoint).assert().success();
    assert_eq!(
        steps_and_losses(&resumed),
        all[10..],
        "steps 11..20 agree exactly"
    );
    assert_eq!(events_of(&resumed, "started")[0]["start_step"], 10);
}

#[test]
fn stop_then_resume_latest_continues_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let straight = dir.path().join("straight");
    // A larger width makes steps slow enough to stop in the middle of the run.
    let sets = with(&[
        "checkpoint.save_steps=0",
        "model.n_embd=256",
        "model.n_layer=4",
        "train.max_steps=60",
    ]);
    tiny_run(&straight, &sets).assert().success();
    let all = steps_and_losses(&straight);

    let run = dir.path().join("run");
    let mut child = tiny_run_std(&run, &sets)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn_for_test();
    crate::common::wait_for_event(&run, "step");
    signal(&child, "TERM");
    assert_eq!(
        wait_exit(&mut child, Duration::from_mins(2)).code(),
        Some(0)
    );
    let stopped_at = status(&run)["current_step"].as_u64().unwrap();
    assert_eq!(status(&run)["state"], "stopped");
    assert!(stopped_at < 60, "stopped at {stopped_at}");
    assert!(
        run.join(format!("checkpoints/checkpoint-{stopped_at}/manifest.json"))
            .exists()
    );

    let mut command = tiny_run(&run, &sets);
    command.args(["--resume", "latest"]).assert().success();
    let after: Vec<(u64, f64)> = steps_and_losses(&run)
        .into_iter()
        .filter(|(s, _)| *s > stopped_at)
        .collect();
    assert_eq!(
        after,
        all[stopped_at as usize..],
        "resumed from step {stopped_at}"
    );
    assert_eq!(status(&run)["state"], "finished");
}

#[test]
fn resume_latest_skips_broken_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    tiny_run(&run, &with(&["checkpoint.save_steps=10"]))
        .assert()
        .success();
    let checkpoints = run.join("checkpoints");
    // The newest was cut short, and a save died before its rename.
    let model = checkpoints.join("checkpoint-20/model.safetensors");
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&model, &bytes[..bytes.len() / 2]).unwrap();
    std::fs::create_dir_all(checkpoints.join(".checkpoint-30.tmp-1")).unwrap();

    let output = tiny_run(
        &run,
        &with(&["checkpoint.save_steps=10", "train.max_steps=22"]),
    )
    .args(["--resume", "latest"])
    .output()
    .unwrap();
    crate::common::assert_success(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("skipping an incomplete checkpoint") && stderr.contains("checkpoint-20"),
        "{stderr}"
    );
    let started = events_of(&run, "started");
    assert_eq!(started.last().unwrap()["start_step"], 10);
    assert_eq!(
        started.last().unwrap()["resumed_from"].as_str().unwrap(),
        checkpoints.join("checkpoint-10").display().to_string()
    );
}

#[test]
fn pruning_keeps_the_newest_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    tiny_run(
        &run,
        &[
            "train.max_steps=20",
            "eval.eval_steps=0",
            "checkpoint.save_steps=5",
            "checkpoint.save_total_limit=2",
        ],
    )
    .assert()
    .success();
    let mut left: Vec<String> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["checkpoint-15", "checkpoint-20"]);
    assert_eq!(events_of(&run, "checkpoint").len(), 4);
    assert!(
        status(&run)["last_checkpoint"]
            .as_str()
            .unwrap()
            .ends_with("checkpoint-20")
    );
}

#[test]
fn resume_auto_starts_when_there_is_no_checkpoint_and_resumes_when_there_is() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let sets = with(&["train.max_steps=4", "checkpoint.save_steps=2"]);
    tiny_run(&run, &sets)
        .args(["--resume", "auto"])
        .assert()
        .success();
    assert_eq!(events_of(&run, "started")[0]["start_step"], 0);
    let sets = with(&["train.max_steps=6", "checkpoint.save_steps=2"]);
    tiny_run(&run, &sets)
        .args(["--resume", "auto"])
        .assert()
        .success();
    let started = events_of(&run, "started");
    assert_eq!(started.len(), 2);
    assert_eq!(started[1]["start_step"], 4);
    assert_eq!(status(&run)["current_step"], 6);
}

#[test]
fn resume_mistakes_are_clear_user_errors() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let output = tiny_run(&run, &SETS)
        .args(["--resume", "latest"])
        .output()
        .unwrap();
    assert_user_error(
        &output,
        &["--resume latest: no complete checkpoint in", "checkpoints"],
    );

    tiny_run(&run, &with(&["train.max_steps=2"]))
        .assert()
        .success();
    let output = tiny_run(&run, &with(&["model.n_layer=3"]))
        .args(["--resume", "latest"])
        .output()
        .unwrap();
    assert_user_error(
        &output,
        &["model.n_layer is 2 in the checkpoint but 3 in the config"],
    );
    let output = tiny_run(&run, &SETS)
        .args(["--resume", "/nonexistent/checkpoint-3"])
        .output()
        .unwrap();
    assert_user_error(
        &output,
        &["--resume /nonexistent/checkpoint-3: /nonexistent/checkpoint-3/manifest.json"],
    );
    assert_eq!(
        step_losses(&run).len(),
        2,
        "the failed resumes wrote nothing"
    );
}
