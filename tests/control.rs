//! Steering a headless run from outside: `trainui ctl`, the control spool,
//! and live changes of the config.
#![allow(clippy::unwrap_used)] // helpers outside #[test] functions

mod common;

use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::Duration;

use common::{events_so_far, status, tiny_run_std, trainui, wait_exit, wait_for, wait_for_event};

fn start(run: &Path, extra: &[&str]) -> Child {
    let mut sets = vec![
        "train.max_steps=1000000",
        "train.log_steps=10",
        "eval.eval_steps=0",
        "eval.samples=1",
    ];
    sets.extend(extra);
    tiny_run_std(run, &sets)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn ctl(run: &Path, args: &[&str]) -> Output {
    trainui().arg("ctl").arg(run).args(args).output().unwrap()
}

fn ok(output: &Output) -> String {
    common::assert_success(output);
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn each_ctl_command_round_trips_against_a_headless_run() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut child = start(&run, &[]);
    wait_for_event(&run, "step");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(run.join("control"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o700, "the spool is owner-only");

    assert!(ok(&ctl(&run, &["eval"])).starts_with("eval: evaluating at step"));
    wait_for_event(&run, "eval_finished");
    assert!(ok(&ctl(&run, &["pause"])).starts_with("pause: paused at step"));
    assert_eq!(status(&run)["state"], "paused");
    assert!(ok(&ctl(&run, &["save"])).starts_with("save: saving a checkpoint"));
    wait_for_event(&run, "checkpoint");
    assert!(ok(&ctl(&run, &["resume"])).starts_with("resume: resumed at step"));
    assert_eq!(
        ok(&ctl(&run, &["abort"])),
        "abort: no generation was running\n"
    );
    assert!(ok(&ctl(&run, &["stop"])).starts_with("stop: stopping at step"));
    assert_eq!(
        wait_exit(&mut child, Duration::from_mins(1)).code(),
        Some(0)
    );
    assert_eq!(status(&run)["state"], "stopped");

    // The run is gone: ctl says so instead of waiting forever.
    let output = ctl(&run, &["eval", "--timeout", "1"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no answer from the run") && stderr.contains("is not running"),
        "{stderr}"
    );
}

#[test]
fn garbage_and_unknown_command_files_are_rejected_and_the_run_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut child = tiny_run_std(
        &run,
        &[
            "train.max_steps=400",
            "train.log_steps=10",
            "eval.eval_steps=0",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    wait_for_event(&run, "step");
    let spool = run.join("control");
    std::fs::write(spool.join("garbage.json"), "}{ not json").unwrap();
    std::fs::write(
        spool.join("unknown.json"),
        r#"{"v":1,"id":"u","created_unix":1e12,"command":"dance"}"#,
    )
    .unwrap();
    std::fs::write(
        spool.join("stale.json"),
        r#"{"v":1,"id":"s","created_unix":1,"command":"stop"}"#,
    )
    .unwrap();
    std::fs::write(spool.join("big.json"), " ".repeat(10_000)).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", spool.join("link.json")).unwrap();
    wait_for("five rejections", Duration::from_mins(1), || {
        events_so_far(&run)
            .iter()
            .filter(|e| e["type"] == "control" && e["accepted"] == false)
            .count()
            == 5
    });
    assert_eq!(
        wait_exit(&mut child, Duration::from_mins(2)).code(),
        Some(0)
    );
    assert_eq!(
        status(&run)["state"],
        "finished",
        "the stale stop was not obeyed"
    );
    let rejections: Vec<String> = events_so_far(&run)
        .iter()
        .filter(|e| e["type"] == "control")
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect();
    for reason in [
        "not a command",
        "unknown command \"dance\"",
        "stale",
        "10000 bytes",
        "symbolic link",
    ] {
        assert!(
            rejections.iter().any(|r| r.contains(reason)),
            "{reason}: {rejections:?}"
        );
    }
    assert_eq!(
        std::fs::read_dir(&spool).unwrap().count(),
        0,
        "answered files are removed"
    );
}

#[test]
fn live_settings_reach_the_status_file_and_take_effect() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut child = start(&run, &[]);
    wait_for_event(&run, "step");
    let settings = |status: &serde_json::Value| status["settings"].clone();
    assert_eq!(settings(&status(&run))["eval"]["timeout_warn_rate"], 0.1);

    // The warning threshold, which the TUI and `status` show, follows a set.
    assert_eq!(
        ok(&ctl(&run, &["set", "eval.timeout_warn_rate=0.5"])),
        "set: applied eval.timeout_warn_rate = 0.5\n"
    );
    wait_for("the settings event", Duration::from_mins(1), || {
        settings(&status(&run))["eval"]["timeout_warn_rate"] == 0.5
    });
    let summary = ok(&trainui().arg("status").arg(&run).output().unwrap());
    assert!(summary.contains("warns above 50.0%"), "{summary}");

    // train.log_steps: step events every 10 steps, then every 3.
    ok(&ctl(&run, &["set", "train.log_steps=3"]));
    let changed_at = events_so_far(&run)
        .iter()
        .find(|e| e["type"] == "settings" && e["settings"]["train"]["log_steps"] == 3)
        .map(|e| e["step"].as_u64().unwrap())
        .expect("a settings event");
    wait_for("steps logged every 3", Duration::from_mins(1), || {
        events_so_far(&run)
            .iter()
            .filter(|e| e["type"] == "step" && e["step"].as_u64().unwrap() > changed_at)
            .count()
            >= 3
    });
    let after: Vec<u64> = events_so_far(&run)
        .iter()
        .filter(|e| e["type"] == "step" && e["step"].as_u64().unwrap() > changed_at)
        .map(|e| e["step"].as_u64().unwrap())
        .collect();
    assert!(after.iter().all(|step| step % 3 == 0), "{after:?}");
    assert!(after.iter().any(|step| step % 10 != 0), "{after:?}");

    ok(&ctl(&run, &["stop"]));
    assert_eq!(
        wait_exit(&mut child, Duration::from_mins(1)).code(),
        Some(0)
    );
}

#[test]
fn live_changes_take_effect_and_model_changes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    // Generations that end only by their deadline, which starts at two minutes.
    let mut child = start(
        &run,
        &[
            "eval.eval_timeout_seconds=120",
            "eval.min_new_tokens=1000000",
            "eval.max_new_tokens=1000000",
        ],
    );
    wait_for_event(&run, "step");

    // An edit of config.json shortens the deadline...
    let config_path = run.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["eval"]["eval_timeout_seconds"] = 0.5.into();
    std::fs::write(&config_path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    let applied = wait_for_event(&run, "control");
    assert_eq!(applied["accepted"], true, "{applied}");
    assert!(
        applied["message"]
            .as_str()
            .unwrap()
            .contains("eval.eval_timeout_seconds = 0.5")
    );

    // ...and ctl set turns on periodic evaluation.
    assert_eq!(
        ok(&ctl(&run, &["set", "eval.eval_steps=20"])),
        "set: applied eval.eval_steps = 20\n"
    );
    let sample = wait_for_event(&run, "sample");
    assert_eq!(sample["outcome"]["kind"], "timed_out");
    assert!(sample["elapsed_secs"].as_f64().unwrap() < 5.0, "{sample}");
    assert_eq!(sample["timeout_secs"], 0.5);
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    assert_eq!(
        saved["eval"]["eval_steps"], 20,
        "config.json shows the config in force"
    );

    let refused = ctl(&run, &["set", "model.n_embd=64"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("model.n_embd cannot change while the run goes on")
    );
    let refused = ctl(&run, &["set", "eval.eval_timeout_seconds=1e30"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("at most 31536000 (one year)"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    ok(&ctl(&run, &["stop"]));
    assert_eq!(
        wait_exit(&mut child, Duration::from_mins(1)).code(),
        Some(0)
    );
}
