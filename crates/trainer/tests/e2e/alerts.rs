//! Alerts end to end: `alerts.command` gets the events a person wants to
//! hear about (a non-finite loss from the real guard included), a failing
//! command is a warning, and `trainui watch` rings the real terminal for
//! what happens while it watches, not for the history it reads back.
#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use crate::common::{assert_runtime_error, assert_success, events_of, tiny_run, wait_for};
use serde_json::Value;
use trainui_protocol::events::{Event, RunState, Summary};
use trainui_protocol::rundir;

/// A command that writes each alert's stdin line to `DIR/KIND.json` (alerts
/// may run at once: one file each).
fn recording_command(dir: &Path) -> String {
    format!(
        "alerts.command=cat > '{}'/\"$TRAINUI_ALERT.json\"",
        dir.display()
    )
}

#[test]
fn a_non_finite_loss_reaches_the_alert_command_through_the_guard() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let out = dir.path().join("alerts");
    std::fs::create_dir(&out).unwrap();
    let command = recording_command(&out);
    let output = tiny_run(
        &run,
        &[
            "train.learning_rate=1e6",
            "train.min_learning_rate=0",
            "train.warmup_steps=0",
            "train.log_steps=1",
            "train.grad_clip=0",
            "eval.eval_steps=0",
            "train.max_steps=20",
            &command,
        ],
    )
    .output()
    .unwrap();
    assert_runtime_error(&output, &["the loss is NaN"]);
    let mut heard: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    heard.sort();
    assert_eq!(heard, ["failed.json", "non_finite.json"]);
    let read = |name: &str| -> Value {
        let text = std::fs::read_to_string(out.join(name)).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        serde_json::from_str(&text).unwrap()
    };
    let nan = read("non_finite.json");
    assert_eq!(nan["type"], "non_finite");
    assert_eq!(nan["loss"], "NaN");
    assert_eq!(nan["v"], 3);
    assert_eq!(read("failed.json")["type"], "failed");
    assert!(
        events_of(&run, "warning")
            .iter()
            .all(|w| !w["message"].as_str().unwrap().contains("alerts.command")),
        "the command succeeded"
    );
}

#[test]
fn a_failing_alert_command_is_a_warning_and_training_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let output = tiny_run(
        &run,
        &[
            "train.max_steps=6",
            "eval.eval_steps=0",
            "alerts.command=echo webhook unreachable >&2; exit 7",
        ],
    )
    .output()
    .unwrap();
    assert_success(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("warning: alerts.command") && stderr.contains("webhook unreachable"),
        "{stderr}"
    );
    let warnings = events_of(&run, "warning");
    let warning = warnings
        .iter()
        .find(|w| w["message"].as_str().unwrap().contains("alerts.command"))
        .unwrap_or_else(|| panic!("a warning in events.jsonl: {warnings:?}"));
    let message = warning["message"].as_str().unwrap();
    assert!(
        message.contains("(finished) failed (exit status: 7)"),
        "{message}"
    );
    let status: Value =
        serde_json::from_slice(&std::fs::read(run.join(rundir::STATUS_FILE)).unwrap()).unwrap();
    assert_eq!(status["state"], "finished");
}

#[test]
fn an_alert_command_past_its_time_limit_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let started = std::time::Instant::now();
    let output = tiny_run(
        &run,
        &[
            "train.max_steps=4",
            "eval.eval_steps=0",
            "alerts.command=sleep 120",
            "alerts.timeout_seconds=0.5",
        ],
    )
    .output()
    .unwrap();
    assert_success(&output);
    assert!(
        started.elapsed() < Duration::from_secs(100),
        "not held up by the command"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("ran past its 0.5s limit and was killed"),
        "{stderr}"
    );
}

#[test]
fn a_checkpoint_brings_no_alert_command_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let (run, out) = (dir.path().join("run"), dir.path().join("alerts"));
    std::fs::create_dir(&out).unwrap();
    let command = recording_command(&out);
    let sets = [
        "train.max_steps=4",
        "eval.eval_steps=0",
        "checkpoint.save_steps=4",
    ];
    let mut with_command = sets.to_vec();
    with_command.push(&command);
    assert_success(&tiny_run(&run, &with_command).output().unwrap());
    let finished = out.join("finished.json");
    assert!(finished.exists());
    std::fs::remove_file(&finished).unwrap();
    // Someone else's checkpoint, resumed without a config: its command is
    // not run.
    let output = crate::common::trainui()
        .args([
            "train",
            "--no-tui",
            "--set",
            "train.max_steps=6",
            "--run-dir",
        ])
        .arg(dir.path().join("mine"))
        .arg("--resume")
        .arg(run.join("checkpoints/checkpoint-4"))
        .output()
        .unwrap();
    assert_success(&output);
    assert!(!finished.exists(), "the checkpoint's alerts.command ran");
}

#[test]
fn an_empty_alert_command_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = tiny_run(&dir.path().join("run"), &["alerts.command= "])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("alerts.command is empty"), "{stderr}");
}

fn append(run_dir: &Path, event: &Event, at: SystemTime) {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(run_dir.join(rundir::EVENTS_FILE))
        .unwrap();
    let mut line = rundir::event_line(event, at);
    line.push(b'\n');
    file.write_all(&line).unwrap();
}

#[test]
fn watch_rings_the_terminal_for_what_happens_while_it_watches() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    // An hour-old history that ended: no alert for it.
    let hour_ago = SystemTime::now() - Duration::from_hours(1);
    let ended = |state| {
        Event::Finished(Summary {
            step: 30,
            max_steps: 30,
            state,
            loss: Some(0.5),
            elapsed_secs: 10.0,
        })
    };
    append(&run, &ended(RunState::Stopped), hour_ago);
    let screen = dir.path().join("typescript");
    let command = format!(
        "stty rows 30 cols 100; exec '{}' watch '{}'",
        crate::common::program("trainui").display(),
        run.display()
    );
    // script(1) gives watch a terminal and keeps every byte it writes.
    let mut script = Command::new("script")
        .args(["-qfec", &command])
        .arg(&screen)
        .env_remove("TMUX")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("script(1) from util-linux");
    let written = || std::fs::read(&screen).unwrap_or_default();
    let contains = |bytes: &[u8], needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    wait_for("watch's first screen", Duration::from_mins(1), || {
        contains(&written(), b"STOPPED")
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !contains(&written(), b"\x1b]777;"),
        "no alert for the history"
    );
    append(&run, &ended(RunState::Finished), SystemTime::now());
    wait_for("the alert", Duration::from_mins(1), || {
        contains(&written(), b"\x1b]777;notify;")
    });
    let bytes = written();
    let _ = script.kill();
    let _ = script.wait();
    assert!(
        contains(
            &bytes,
            b"\x07\x1b]9;trainui: run finished: at step 30/30, loss 0.5000\x07"
        ),
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    assert!(contains(
        &bytes,
        b"\x1b]777;notify;trainui: run finished;at step 30/30, loss 0.5000\x07"
    ));
}
