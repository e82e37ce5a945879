//! Real training runs on libtorch with the tiny config: a few seconds each.
#![allow(clippy::unwrap_used)] // helpers outside #[test] functions

use crate::common::SpawnForTest;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::common::{events_of, status, step_losses, tiny_run, trainui, wait_for};

#[test]
fn runs_n_steps_and_the_run_directory_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let output = tiny_run(&run, &["train.max_steps=12", "train.log_steps=4"])
        .output()
        .unwrap();
    crate::common::assert_success(&output);

    let status = status(&run);
    assert_eq!(status["current_step"], 12);
    assert_eq!(status["max_steps"], 12);
    assert_eq!(status["state"], "finished");
    assert!(status["loss"].as_f64().unwrap() > 0.0);
    assert_eq!(status["pid"].as_u64().unwrap(), u64::from(output_pid(&run)));

    let step_events = events_of(&run, "step");
    let steps: Vec<u64> = step_events
        .iter()
        .map(|e| e["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, [4, 8, 12]);
    // config/tiny.json: learning_rate 0.003 reached after 5 warmup steps, so
    // the 4th step runs at 4/5 of it.
    let lr = step_events[0]["learning_rate"].as_f64().unwrap();
    assert!((lr - 0.003 * 4.0 / 5.0).abs() < 1e-12, "{lr}");
    assert!(
        crate::common::events(&run)
            .iter()
            .all(|e| e["v"] == 3 && e["time"].is_string())
    );

    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["train"]["max_steps"], 12);
    assert!(Path::new(config["data"]["train_file"].as_str().unwrap()).is_absolute());

    let stdout = String::from_utf8(output.stdout).unwrap();
    let log = std::fs::read_to_string(run.join("training_output.log")).unwrap();
    assert!(stdout.contains("step 12/12 | loss "), "{stdout}");
    assert!(stdout.contains("finished at step 12/12"), "{stdout}");
    assert_eq!(log, stdout, "the log file holds the printed lines");

    let summary = trainui().arg("status").arg(&run).output().unwrap();
    let summary = String::from_utf8(summary.stdout).unwrap();
    assert!(summary.contains("state      finished"), "{summary}");
    assert!(summary.contains("step       12 / 12 (100.0%)"), "{summary}");
    let json = trainui()
        .args(["status", "--json"])
        .arg(&run)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["current_step"], 12);
}

fn output_pid(run: &Path) -> u32 {
    events_of(run, "started")[0]["pid"].as_u64().unwrap() as u32
}

#[test]
fn loss_falls_on_the_demo_task() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    tiny_run(&run, &["train.max_steps=200", "train.log_steps=10"])
        .assert()
        .success();
    let losses = step_losses(&run);
    let first = losses[0];
    let last = *losses.last().unwrap();
    // The untrained model is near ln(vocab) = 5.6; the tiny model gets below
    // 2.0 within 200 steps. Require it to at least halve.
    assert!(first > 4.0, "first logged loss {first}");
    assert!(last < 0.5 * first, "loss did not fall: {losses:?}");
}

#[test]
fn same_seed_gives_the_same_losses() {
    let dir = tempfile::tempdir().unwrap();
    let sets = ["train.max_steps=10", "train.log_steps=2"];
    let run = |name: &str, extra: &[&str]| {
        let path = dir.path().join(name);
        let all: Vec<&str> = sets.iter().chain(extra).copied().collect();
        tiny_run(&path, &all).assert().success();
        step_losses(&path)
    };
    let a = run("a", &[]);
    let b = run("b", &[]);
    assert_eq!(a.len(), 5);
    assert_eq!(a, b, "same seed, same losses");
    let c = run("c", &["seed=8"]);
    assert_ne!(a, c, "another seed gives other losses");
}

/// The logged losses of a 6-step tiny run with `sets`, one per step.
fn six_step_losses(dir: &Path, name: &str, sets: &[&str]) -> Vec<f64> {
    let path = dir.join(name);
    let all: Vec<&str> = [
        "train.max_steps=6",
        "train.log_steps=1",
        "eval.eval_steps=0",
    ]
    .iter()
    .chain(sets)
    .copied()
    .collect();
    tiny_run(&path, &all).assert().success();
    step_losses(&path)
}

#[test]
fn accumulating_k_micro_batches_of_b_trains_as_one_batch_of_k_times_b() {
    let dir = tempfile::tempdir().unwrap();
    let accumulated = six_step_losses(
        dir.path(),
        "accum",
        &["train.batch_size=4", "train.grad_accum_steps=4"],
    );
    let whole = six_step_losses(
        dir.path(),
        "whole",
        &["train.batch_size=16", "train.grad_accum_steps=1"],
    );
    assert_eq!(accumulated.len(), 6);
    assert_eq!(accumulated.len(), whole.len());
    for (step, (a, w)) in accumulated.iter().zip(&whole).enumerate() {
        assert!(
            (a - w).abs() < 1e-5,
            "step {}: {a} accumulated, {w} in one batch\n{accumulated:?}\n{whole:?}",
            step + 1
        );
    }
    // The same micro-batches without accumulation are another run.
    let small = six_step_losses(dir.path(), "small", &["train.batch_size=4"]);
    assert!((small[0] - whole[0]).abs() > 1e-4, "{small:?} {whole:?}");
}

#[test]
fn grad_clip_rescales_only_gradients_above_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let off = six_step_losses(dir.path(), "off", &["train.grad_clip=0"]);
    // A limit no gradient reaches leaves every step as it is.
    let far = six_step_losses(dir.path(), "far", &["train.grad_clip=1e9"]);
    assert_eq!(far, off);
    // A limit every gradient passes changes the updates, from the second
    // step's loss on (the first is computed before any update).
    let tight = six_step_losses(dir.path(), "tight", &["train.grad_clip=1e-4"]);
    assert!((tight[0] - off[0]).abs() < 1e-12, "{tight:?} {off:?}");
    let moved = tight
        .iter()
        .zip(&off)
        .skip(1)
        .map(|(t, o)| (t - o).abs())
        .fold(0.0, f64::max);
    assert!(moved > 1e-4, "{tight:?} {off:?}");
}

#[test]
fn sigterm_stops_after_the_current_step_and_leaves_status_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut child =
        crate::common::tiny_run_std(&run, &["train.max_steps=1000000", "train.log_steps=1"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn_for_test();

    // Meanwhile, a reader of the status file never sees partial JSON.
    let status_path = run.join("status/training_status.json");
    let mut reads = 0;
    wait_for("20 steps", Duration::from_mins(2), || {
        let Ok(text) = std::fs::read_to_string(&status_path) else {
            return false;
        };
        let parsed: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|err| panic!("partial status file ({err}): {text:?}"));
        reads += 1;
        parsed["current_step"].as_u64().unwrap_or(0) >= 20
    });
    assert!(reads > 1);

    crate::common::signal(&child, "TERM");
    let exit = crate::common::wait_exit(&mut child, Duration::from_mins(2));
    assert_eq!(exit.code(), Some(0), "SIGTERM is a requested stop");

    let status = status(&run);
    assert_eq!(status["state"], "stopped");
    let finished = &events_of(&run, "finished")[0];
    assert_eq!(finished["state"], "stopped");
    assert_eq!(finished["step"], status["current_step"]);
    assert!(status["current_step"].as_u64().unwrap() < 1_000_000);
}

#[test]
fn a_second_sigint_exits_at_once() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    // A model big enough that one step takes far longer than the two signals.
    let mut child = crate::common::tiny_run_std(
        &run,
        &[
            "train.max_steps=1000000",
            "train.log_steps=1",
            "model.n_layer=8",
            "model.n_embd=512",
            "train.batch_size=64",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn_for_test();
    let status_path = run.join("status/training_status.json");
    wait_for("the first step", Duration::from_mins(2), || {
        std::fs::read_to_string(&status_path)
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .is_some_and(|status| status["current_step"].as_u64() >= Some(1))
    });
    crate::common::signal(&child, "INT");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("stopping after the current step"), "{line}");
    crate::common::signal(&child, "INT");
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(130), "the second SIGINT exits at once");
}
