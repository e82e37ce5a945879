//! TensorBoard event files, live and exported, read back by TensorBoard's
//! own reader (the Python `tensorboard` package of the test environment)
//! with the values events.jsonl holds.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{assert_success, events_of, tiny_run, trainui};
use serde_json::Value;

fn python() -> String {
    std::env::var("TRAINUI_PYTHON")
        .expect("TRAINUI_PYTHON names a Python with the tensorboard package; ./dev test sets it")
}

/// What TensorBoard reads in `folder`: scalars by tag as `[step, value]`,
/// texts by tag as `[step, [strings]]`, and each tensor tag's plugin.
fn read(folder: &Path) -> Value {
    let output = std::process::Command::new(python())
        .arg(common::repo().join("tests/data/read_tensorboard.py"))
        .arg(folder)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * b.abs().max(1.0)
}

/// The scalars of `tag` against `(step, value)` pairs from events.jsonl.
fn assert_scalars(read: &Value, tag: &str, expected: &[(u64, f64)]) {
    let points = read["scalars"][tag]
        .as_array()
        .unwrap_or_else(|| panic!("{tag} in {read}"));
    assert_eq!(points.len(), expected.len(), "{tag}: {points:?}");
    for (point, (step, value)) in points.iter().zip(expected) {
        assert_eq!(point[0].as_u64(), Some(*step), "{tag}");
        assert!(
            close(point[1].as_f64().unwrap(), *value),
            "{tag}: {point} vs {value}"
        );
    }
}

fn check(read: &Value, run: &Path) {
    let steps = events_of(run, "step");
    let field = |name: &str| -> Vec<(u64, f64)> {
        steps
            .iter()
            .map(|e| (e["step"].as_u64().unwrap(), e[name].as_f64().unwrap()))
            .collect()
    };
    assert_scalars(read, "train/loss", &field("loss"));
    assert_scalars(read, "train/learning_rate", &field("learning_rate"));
    assert_scalars(read, "train/tokens_per_sec", &field("tokens_per_sec"));
    let val: Vec<(u64, f64)> = events_of(run, "val_loss")
        .iter()
        .map(|e| (e["step"].as_u64().unwrap(), e["loss"].as_f64().unwrap()))
        .collect();
    assert_eq!(val.len(), 2);
    assert_scalars(read, "eval/val_loss", &val);
    let finished = events_of(run, "eval_finished");
    let of_eval = |f: &dyn Fn(&Value) -> f64| -> Vec<(u64, f64)> {
        finished
            .iter()
            .map(|e| (e["step"].as_u64().unwrap(), f(e)))
            .collect()
    };
    assert_scalars(
        read,
        "eval/exact_match",
        &of_eval(&|e| e["exact_match"].as_f64().unwrap()),
    );
    assert_scalars(
        read,
        "eval/timeout_rate",
        &of_eval(&|e| {
            let c = &e["counters"];
            c["timed_out"].as_f64().unwrap() / c["generations"].as_f64().unwrap()
        }),
    );
    // Each evaluation's samples, as a table of the text plugin.
    assert_eq!(read["plugins"]["eval/samples"], "text");
    let texts = read["texts"]["eval/samples"].as_array().unwrap();
    assert_eq!(texts.len(), 2);
    let samples = events_of(run, "sample");
    for sample in &samples {
        let step = sample["step"].as_u64().unwrap();
        let text = texts.iter().find(|t| t[0].as_u64() == Some(step)).unwrap()[1][0]
            .as_str()
            .unwrap();
        let prompt = sample["prompt"].as_str().unwrap().replace('|', "\\|");
        assert!(text.contains(&prompt), "{prompt} in {text}");
        assert!(text.contains(sample["origin"].as_str().unwrap()), "{text}");
    }
}

#[test]
fn a_run_writes_tensorboard_files_and_export_writes_the_same_from_its_events() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let sets = [
        "train.max_steps=40",
        "train.log_steps=5",
        "eval.eval_steps=20",
        "eval.samples=2",
    ];
    let mut with_tensorboard = sets.to_vec();
    with_tensorboard.push("tensorboard.enabled=true");
    assert_success(&tiny_run(&run, &with_tensorboard).output().unwrap());
    check(&read(&run.join("tensorboard")), &run);

    // The same run, converted afterwards.
    let exported = dir.path().join("exported");
    trainui()
        .arg("export-tensorboard")
        .arg(&run)
        .arg("--out")
        .arg(&exported)
        .assert()
        .success();
    check(&read(&exported), &run);
    // Into the folder that already has the live files: refused, nothing lost.
    let out = trainui()
        .arg("export-tensorboard")
        .arg(&run)
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("already holds TensorBoard event files"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_dir(run.join("tensorboard")).unwrap().count(),
        1
    );

    // Without the key, no files.
    let plain = dir.path().join("plain");
    assert_success(&tiny_run(&plain, &sets).output().unwrap());
    assert!(!plain.join("tensorboard").exists());
    trainui()
        .arg("export-tensorboard")
        .arg(&plain)
        .assert()
        .success();
    check(&read(&plain.join("tensorboard")), &plain);
}

#[test]
fn a_resumed_run_shows_its_rewound_steps_once() {
    use std::io::Write as _;
    use trainui::events::{Event, RunInfo, StepMetrics};
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    let mut file = std::fs::File::create(run.join(trainui::rundir::EVENTS_FILE)).unwrap();
    let mut write = |event: &Event| {
        let mut line = trainui::rundir::event_line(event, std::time::SystemTime::now());
        line.push(b'\n');
        file.write_all(&line).unwrap();
    };
    let started = |start_step| {
        Event::Started(Box::new(RunInfo {
            pid: 1,
            start_step,
            ..RunInfo::new("run", 40)
        }))
    };
    let step = |step, loss| {
        Event::Step(StepMetrics {
            step,
            max_steps: 40,
            loss,
            learning_rate: 1e-3,
            tokens_per_sec: 100.0,
            elapsed_secs: 1.0,
            eta_secs: 1.0,
            grad_norm: None,
        })
    };
    // Steps 10 to 30 logged, then a resume from the checkpoint at 20 that
    // logs 30 and 40 with other losses.
    write(&started(0));
    for (s, loss) in [(10, 3.0), (20, 2.0), (30, 1.5)] {
        write(&step(s, loss));
    }
    write(&started(20));
    for (s, loss) in [(30, 1.25), (40, 1.0)] {
        write(&step(s, loss));
    }
    trainui()
        .arg("export-tensorboard")
        .arg(&run)
        .assert()
        .success();
    let read = read(&run.join("tensorboard"));
    assert_scalars(
        &read,
        "train/loss",
        &[(10, 3.0), (20, 2.0), (30, 1.25), (40, 1.0)],
    );
}
