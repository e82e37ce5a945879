//! Evaluation can never hang the run: deadlines, aborts and errors end a
//! generation, get counted and logged, and training goes on.
#![allow(clippy::unwrap_used)] // helpers outside #[test] functions

use crate::common::SpawnForTest;

use std::process::Stdio;
use std::time::Duration;

use crate::common::{events_of, signal, status, tiny_run, tiny_run_std, wait_exit, wait_for_event};

/// Generations that can only end by their deadline: end-of-text is never
/// picked and the length limit is out of reach.
const NEVER_ENDING: [&str; 2] = ["eval.min_new_tokens=1000000", "eval.max_new_tokens=1000000"];

#[test]
fn a_generation_that_never_ends_times_out_and_training_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut sets = vec![
        "train.max_steps=10",
        "eval.eval_steps=5",
        "eval.samples=2",
        "eval.eval_timeout_seconds=0.5",
    ];
    sets.extend(NEVER_ENDING);
    let output = tiny_run(&run, &sets).output().unwrap();
    crate::common::assert_success(&output);

    let samples = events_of(&run, "sample");
    assert_eq!(samples.len(), 4, "two evals of two samples");
    for sample in &samples {
        assert_eq!(sample["outcome"]["kind"], "timed_out");
        let elapsed = sample["elapsed_secs"].as_f64().unwrap();
        assert!(
            (0.5..1.0).contains(&elapsed),
            "ended {elapsed}s into a 0.5s deadline"
        );
        assert!(
            sample["output_tokens"].as_u64().unwrap() > 0,
            "partial text is kept"
        );
        assert!(sample["prompt"].as_str().is_some_and(|p| !p.is_empty()));
    }
    let status = status(&run);
    assert_eq!(status["state"], "finished");
    assert_eq!(status["current_step"], 10);
    assert_eq!(status["evals"], 2);
    assert_eq!(status["generations"], 4);
    assert_eq!(status["timeouts"], 4);
    assert_eq!(status["timeout_rate"], 1.0);

    let log = std::fs::read_to_string(run.join("training_output.log")).unwrap();
    let timeouts: Vec<&str> = log
        .lines()
        .filter(|l| l.to_lowercase().contains("timeout:"))
        .collect();
    assert_eq!(timeouts.len(), 4, "{log}");
    assert!(
        timeouts[0].starts_with("TIMEOUT: Model generation exceeded 0.5s at step 5"),
        "{log}"
    );
    assert!(timeouts[3].contains("at step 10"), "{log}");
    let warnings = events_of(&run, "warning");
    assert!(
        warnings.iter().any(|w| w["message"]
            .as_str()
            .unwrap()
            .contains("timeout rate 100.0%")),
        "{warnings:?}"
    );
}

#[test]
fn abort_ends_a_long_generation_promptly_and_training_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut sets = vec!["train.max_steps=8", "eval.eval_steps=5", "eval.samples=1"];
    sets.extend(NEVER_ENDING);
    sets.push("eval.eval_timeout_seconds=120");
    let mut child = tiny_run_std(&run, &sets)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn_for_test();

    // The live text of the running generation shows up before the abort.
    let progress = wait_for_event(&run, "generation_progress");
    assert!(progress["tokens"].as_u64().unwrap() > 0);
    assert!(!progress["text"].as_str().unwrap().is_empty());
    signal(&child, "USR2");
    let sample = wait_for_event(&run, "sample");
    assert_eq!(sample["outcome"]["kind"], "aborted");
    assert!(
        sample["elapsed_secs"].as_f64().unwrap() < 60.0,
        "aborted long before the deadline"
    );

    let exit = wait_exit(&mut child, Duration::from_mins(2));
    assert_eq!(exit.code(), Some(0));
    let status = status(&run);
    assert_eq!(
        (status["state"].as_str(), status["current_step"].as_u64()),
        (Some("finished"), Some(8))
    );
    assert_eq!(status["aborts"], 1);
    let acks = events_of(&run, "command_ack");
    assert!(acks.iter().any(|a| a["command"] == "abort_generation" && a["message"] == "aborted the generation"), "{acks:?}");
    let log = std::fs::read_to_string(run.join("training_output.log")).unwrap();
    assert!(
        log.contains("ABORTED: generation stopped by the operator"),
        "{log}"
    );
}

#[test]
fn eval_now_runs_an_evaluation_between_scheduled_ones() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let sets = [
        "train.max_steps=1000000",
        "eval.eval_steps=0",
        "eval.samples=1",
    ];
    let mut child = tiny_run_std(&run, &sets)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn_for_test();
    wait_for_event(&run, "step");
    signal(&child, "USR1");
    let summary = wait_for_event(&run, "eval_finished");
    assert_eq!(summary["eval"], 1);
    assert!(summary["val_loss"].as_f64().unwrap() > 0.0);
    assert_eq!(summary["samples"], 1);
    signal(&child, "TERM");
    assert_eq!(
        wait_exit(&mut child, Duration::from_mins(2)).code(),
        Some(0)
    );
    assert_eq!(
        events_of(&run, "eval_started").len(),
        1,
        "eval_steps=0: no scheduled eval"
    );
    assert_eq!(status(&run)["evals"], 1);
}

#[test]
fn a_full_eval_prints_the_incident_format() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let output = tiny_run(
        &run,
        &[
            "train.max_steps=20",
            "eval.eval_steps=20",
            "eval.samples=2",
            "eval.val_batches=3",
        ],
    )
    .output()
    .unwrap();
    crate::common::assert_success(&output);
    let stdout = String::from_utf8(output.stdout).unwrap();
    for needle in [
        "FULL EVAL - Step 20",
        "PROMPT: ",
        "GOLDEN (",
        "MODEL (",
        "LOSS ON THIS EXAMPLE: ",
        "Loss Comparison: Train=",
    ] {
        assert!(
            stdout.contains(needle),
            "{needle:?} missing from:\n{stdout}"
        );
    }
    assert!(
        stdout.lines().any(|l| l == "MATCH" || l == "MISMATCH"),
        "{stdout}"
    );
    assert!(stdout.is_ascii(), "piped output is plain ASCII");
    let summary = &events_of(&run, "eval_finished")[0];
    let gap = summary["gap"].as_f64().unwrap();
    let (val, train) = (
        summary["val_loss"].as_f64().unwrap(),
        summary["train_loss"].as_f64().unwrap(),
    );
    assert!((gap - (val - train)).abs() < 1e-9);
    assert_eq!(
        events_of(&run, "val_loss")[0]["batches"],
        3,
        "eval.val_batches"
    );
    let first = &events_of(&run, "sample")[0];
    assert!(
        first["loss"].as_f64().unwrap() > 0.0,
        "each sample has its own loss"
    );
    assert!(first["golden_tokens"].as_u64().unwrap() > 0);
}
