//! Real training runs on libtorch with the tiny config: a few seconds each.
#![allow(clippy::unwrap_used)] // helpers outside #[test] functions

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{events_of, status, step_losses, tiny_run, trainui};

#[test]
fn runs_n_steps_and_the_run_directory_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let output = tiny_run(&run, &["train.max_steps=12", "train.log_steps=4"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

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
        common::events(&run)
            .iter()
            .all(|e| e["v"] == 1 && e["time"].is_string())
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

#[test]
fn grad_accumulation_and_no_clipping_still_train() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    tiny_run(
        &run,
        &[
            "train.max_steps=4",
            "train.log_steps=1",
            "train.grad_accum_steps=3",
            "train.grad_clip=0",
        ],
    )
    .assert()
    .success();
    let tokens = events_of(&run, "step")[0]["tokens_per_sec"]
        .as_f64()
        .unwrap();
    assert!(tokens > 0.0);
    assert_eq!(status(&run)["current_step"], 4);

    // Each key changes what is trained: against a baseline with tight
    // clipping and no accumulation, accumulating three micro-batches and
    // turning clipping off each give other losses.
    let losses = |name: &str, sets: &[&str]| {
        let path = dir.path().join(name);
        let all: Vec<&str> = ["train.max_steps=4", "train.log_steps=1"]
            .iter()
            .chain(sets)
            .copied()
            .collect();
        tiny_run(&path, &all).assert().success();
        step_losses(&path)
    };
    let base = losses("base", &["train.grad_clip=0.1"]);
    assert_ne!(
        losses(
            "accum",
            &["train.grad_clip=0.1", "train.grad_accum_steps=3"]
        ),
        base
    );
    assert_ne!(losses("no-clip", &["train.grad_clip=0"]), base);
}

fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_stops_after_the_current_step_and_leaves_status_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut child = common::tiny_run_std(&run, &["train.max_steps=1000000", "train.log_steps=1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

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

    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let start = Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            start.elapsed() < Duration::from_mins(2),
            "the run did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
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
    let mut child = common::tiny_run_std(
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
    .spawn()
    .unwrap();
    let status_path = run.join("status/training_status.json");
    wait_for("the first step", Duration::from_mins(2), || {
        std::fs::read_to_string(&status_path)
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .is_some_and(|status| status["current_step"].as_u64() >= Some(1))
    });
    let pid = child.id().to_string();
    let interrupt = || {
        let kill = std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status();
        assert!(kill.unwrap().success());
    };
    interrupt();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("stopping after the current step"), "{line}");
    interrupt();
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(130), "the second SIGINT exits at once");
}
