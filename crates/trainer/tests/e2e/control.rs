//! Steering a headless run from outside: `trainui ctl`, the control spool,
//! and live changes of the config.
#![allow(clippy::unwrap_used)] // helpers outside #[test] functions

use crate::common::SpawnForTest;

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use crate::common::{
    events_so_far, status, tiny_run_std, trainui, wait_exit, wait_for, wait_for_event,
};

fn start(run: &Path, extra: &[&str]) -> crate::common::Spawned {
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
        .spawn_for_test()
}

fn ctl(run: &Path, args: &[&str]) -> Output {
    trainui().arg("ctl").arg(run).args(args).output().unwrap()
}

fn ok(output: &Output) -> String {
    crate::common::assert_success(output);
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
            "train.max_steps=200",
            "train.log_steps=10",
            "eval.eval_steps=0",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn_for_test();
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
    // Answered files are removed; the link is no command file of the run:
    // it stays, and so does what it points to.
    let left: Vec<_> = std::fs::read_dir(&spool)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["link.json"]);
    assert!(std::path::Path::new("/etc/passwd").exists());
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

    ok(&ctl(&run, &["stop"]));
    assert_eq!(
        wait_exit(&mut child, Duration::from_mins(1)).code(),
        Some(0)
    );
}

/// `ctl set KEY=VALUE`, then the step at which the trainer applied it (its
/// `settings` event). VALUE is JSON as the settings show it (`20.0` for
/// seconds).
fn set(run: &Path, key: &str, value: &str) -> u64 {
    let answer = ok(&ctl(run, &["set", &format!("{key}={value}")]));
    assert!(answer.starts_with("set: applied"), "{answer}");
    let (section, name) = key.split_once('.').unwrap();
    let wanted: serde_json::Value = serde_json::from_str(value).unwrap();
    let mut applied = None;
    wait_for(key, Duration::from_mins(1), || {
        applied = events_so_far(run)
            .iter()
            .rev()
            .find(|e| e["type"] == "settings" && e["settings"][section][name] == wanted)
            .map(|e| e["step"].as_u64().unwrap());
        applied.is_some()
    });
    applied.unwrap()
}

/// Events of `kind` after event number `from`, once there are `count`.
fn wait_events(run: &Path, from: usize, kind: &str, count: usize) -> Vec<serde_json::Value> {
    let mut found = Vec::new();
    wait_for(kind, Duration::from_mins(2), || {
        found = events_so_far(run)
            .into_iter()
            .skip(from)
            .filter(|e| e["type"] == kind)
            .collect();
        found.len() >= count
    });
    found
}

/// The first `count` events of `kind` at a step after `step`.
fn after_step(run: &Path, kind: &str, step: u64, count: usize) -> Vec<serde_json::Value> {
    let mut found = Vec::new();
    wait_for(kind, Duration::from_mins(2), || {
        found = events_so_far(run)
            .into_iter()
            .filter(|e| e["type"] == kind && e["step"].as_u64().unwrap() > step)
            .take(count)
            .collect();
        found.len() == count
    });
    found
}

/// Runs an evaluation now and returns its samples and its `val_loss` and
/// `eval_started` events.
fn evaluate(run: &Path) -> (Vec<serde_json::Value>, serde_json::Value, serde_json::Value) {
    let from = events_so_far(run).len();
    ok(&ctl(run, &["eval"]));
    wait_events(run, from, "eval_finished", 1);
    let after: Vec<serde_json::Value> = events_so_far(run).into_iter().skip(from).collect();
    let of = |kind: &str| -> Vec<serde_json::Value> {
        after
            .iter()
            .filter(|e| e["type"] == kind)
            .cloned()
            .collect()
    };
    (
        of("sample"),
        of("val_loss")[0].clone(),
        of("eval_started")[0].clone(),
    )
}

#[test]
fn every_live_key_takes_effect_through_ctl_set() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    // One validation example, twice: every evaluation generates it.
    let line = "{\"prompt\": \"rev 40721=\", \"completion\": \"12704\"}\n";
    let val = crate::common::temp_file(dir.path(), "val.jsonl", &line.repeat(2));
    let val = format!("data.val_file={}", val.display());
    let mut child = start(&run, &[&val, "checkpoint.save_steps=0"]);
    wait_for_event(&run, "step");

    // train.log_steps: step events every 10 steps, then every 3.
    let at = set(&run, "train.log_steps", "3");
    let steps: Vec<u64> = after_step(&run, "step", at, 3)
        .iter()
        .map(|e| e["step"].as_u64().unwrap())
        .collect();
    assert!(steps.iter().all(|s| s % 3 == 0), "{steps:?}");

    // checkpoint.save_steps, then checkpoint.save_total_limit.
    let at = set(&run, "checkpoint.save_steps", "7");
    let saved: Vec<u64> = after_step(&run, "checkpoint", at, 2)
        .iter()
        .map(|e| e["step"].as_u64().unwrap())
        .collect();
    assert!(saved.iter().all(|s| s % 7 == 0), "{saved:?}");
    let at = set(&run, "checkpoint.save_total_limit", "1");
    after_step(&run, "checkpoint", at, 1);
    wait_for("one checkpoint kept", Duration::from_mins(1), || {
        std::fs::read_dir(run.join("checkpoints"))
            .unwrap()
            .filter(|e| {
                !e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with('.')
            })
            .count()
            == 1
    });
    set(&run, "checkpoint.save_steps", "0");

    // eval.eval_steps: an evaluation every 40 steps, then none.
    let at = set(&run, "eval.eval_steps", "40");
    let step = after_step(&run, "eval_started", at, 1)[0]["step"]
        .as_u64()
        .unwrap();
    assert!(step.is_multiple_of(40), "{step} after {at}");
    set(&run, "eval.eval_steps", "0");

    // The weights stay as they are from here on.
    ok(&ctl(&run, &["pause"]));
    set(&run, "eval.val_batches", "3");
    set(&run, "eval.samples", "2");
    let (samples, val_loss, started) = evaluate(&run);
    assert_eq!(val_loss["batches"], 3);
    assert_eq!((started["samples"].as_u64(), samples.len()), (Some(2), 2));
    set(&run, "eval.samples", "1");

    // eval.temperature: greedy gives the same text twice; sampling another.
    let greedy = evaluate(&run).0[0]["output"].clone();
    assert_eq!(evaluate(&run).0[0]["output"], greedy);
    set(&run, "eval.temperature", "1.0");
    // A small model can draw the greedy text by chance: up to five draws.
    let differs = (0..5).any(|_| evaluate(&run).0[0]["output"] != greedy);
    assert!(differs, "five draws at temperature 1.0 all gave {greedy}");

    // eval.max_new_tokens and eval.min_new_tokens: exactly 3 tokens.
    set(&run, "eval.min_new_tokens", "3");
    set(&run, "eval.max_new_tokens", "3");
    let sample = evaluate(&run).0[0].clone();
    assert_eq!(sample["output_tokens"], 3, "{sample}");
    // No length limit: sampling ends the text well within the deadline...
    set(&run, "eval.min_new_tokens", "0");
    set(&run, "eval.max_new_tokens", "1000000");
    set(&run, "eval.eval_timeout_seconds", "20.0");
    let sample = evaluate(&run).0[0].clone();
    assert_eq!(sample["outcome"]["kind"], "completed", "{sample}");
    assert_eq!(sample["timeout_secs"], 20.0);
    // ...unless end-of-text is held back: then the deadline ends it.
    set(&run, "eval.eval_timeout_seconds", "1.0");
    set(&run, "eval.min_new_tokens", "1000000");
    let sample = evaluate(&run).0[0].clone();
    assert_eq!(sample["outcome"]["kind"], "timed_out", "{sample}");

    ok(&ctl(&run, &["stop"]));
    assert_eq!(
        wait_exit(&mut child, Duration::from_mins(1)).code(),
        Some(0)
    );
}

#[test]
fn a_stall_timeout_set_while_the_trainer_is_stuck_takes_effect() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut child = tiny_run_std(
        &run,
        &[
            "train.max_steps=1000000",
            "train.log_steps=1",
            "eval.eval_steps=0",
            "watchdog.stall_timeout_seconds=600",
        ],
    )
    .env("TRAINUI_FAULT", "stall_at_step:5")
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn_for_test();
    // The trainer stops beating after step 5, before that step's event.
    wait_for_event(&run, "step");
    wait_for("step 4", Duration::from_mins(1), || {
        status(&run)["current_step"] == 4
    });
    std::thread::sleep(Duration::from_secs(1));
    let answer = ok(&ctl(&run, &["set", "watchdog.stall_timeout_seconds=1"]));
    assert!(answer.starts_with("set: applied"), "{answer}");
    let stalled = wait_for_event(&run, "stalled");
    assert_eq!(stalled["timeout_secs"], 1.0);
    crate::common::signal(&child, "KILL");
    let _ = child.wait();
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
