//! The stall watchdog catches what no deadline can: a trainer that stops
//! making progress (injected with the test-only `TRAINUI_FAULT` hook).
#![allow(clippy::unwrap_used)] // helpers outside #[test] functions

use crate::common::SpawnForTest;

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{events_of, status, tiny_run, tiny_run_std, wait_exit, wait_for};

const SETS: [&str; 5] = [
    "train.max_steps=40",
    "checkpoint.save_steps=10",
    "eval.eval_steps=0",
    "watchdog.stall_timeout_seconds=2",
    "train.log_steps=5",
];

#[test]
fn a_stalled_run_is_marked_stalled_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut child = tiny_run_std(&run, &SETS)
        .env("TRAINUI_FAULT", "stall_at_step:20")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn_for_test();
    let started = Instant::now();
    let mut step_at_stall = None;
    wait_for("the stalled state", Duration::from_mins(2), || {
        let text =
            std::fs::read_to_string(run.join("status/training_status.json")).unwrap_or_default();
        let Ok(status) = serde_json::from_str::<serde_json::Value>(&text) else {
            return false;
        };
        step_at_stall = status["current_step"].as_u64();
        status["state"] == "stalled"
    });
    // Steps up to 20 take well under a second; the stall shows 2 s later.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(step_at_stall, Some(20));
    let stalled = &events_of(&run, "stalled")[0];
    assert_eq!(stalled["phase"], "training");
    assert!(stalled["silent_secs"].as_f64().unwrap() >= 2.0);
    // The log line follows the status file by a moment: the two files are
    // written one after the other.
    wait_for("the STALLED log line", Duration::from_secs(10), || {
        std::fs::read_to_string(run.join("training_output.log"))
            .unwrap_or_default()
            .contains("STALLED: no progress for 2s")
    });
    assert!(
        status(&run)["last_message"]
            .as_str()
            .unwrap()
            .starts_with("stalled")
    );
    // on_stall=warn keeps the process; a stuck trainer ignores a polite stop,
    // so two signals end it.
    crate::common::signal(&child, "TERM");
    std::thread::sleep(Duration::from_millis(300));
    crate::common::signal(&child, "TERM");
    assert_eq!(
        wait_exit(&mut child, Duration::from_mins(1)).code(),
        Some(128 + 15)
    );
}

#[test]
fn on_stall_exit_ends_with_75_and_resume_latest_finishes_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut sets = SETS.to_vec();
    sets.push("watchdog.on_stall=exit");
    let output = tiny_run(&run, &sets)
        .env("TRAINUI_FAULT", "stall_at_step:20")
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(75),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        status(&run)["state"],
        "stalled",
        "the status is written before the exit"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("--resume auto"));

    let output = tiny_run(&run, &sets)
        .args(["--resume", "latest"])
        .output()
        .unwrap();
    crate::common::assert_success(&output);
    let status = status(&run);
    assert_eq!(
        (status["state"].as_str(), status["current_step"].as_u64()),
        (Some("finished"), Some(40))
    );
    assert_eq!(
        events_of(&run, "started").last().unwrap()["start_step"],
        10,
        "from the checkpoint at 10"
    );
}
