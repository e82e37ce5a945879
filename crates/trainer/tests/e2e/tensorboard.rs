//! TensorBoard event files, live and exported, read back by TensorBoard's
//! own reader (the Python `tensorboard` package of the test environment)
//! with the values events.jsonl holds.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use crate::common::{as_another_user, assert_success, events_of, tiny_run, trainui};
use serde_json::Value;

fn python() -> String {
    std::env::var("TRAINUI_PYTHON")
        .expect("TRAINUI_PYTHON names a Python with the tensorboard package; ./dev test sets it")
}

/// What TensorBoard reads in `folder`: scalars by tag as `[step, value]`,
/// texts by tag as `[step, [strings]]`, and each tensor tag's plugin.
fn read(folder: &Path) -> Value {
    let output = std::process::Command::new(python())
        .arg(crate::common::repo().join("crates/trainer/tests/data/read_tensorboard.py"))
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
    let norms: Vec<(u64, f64)> = steps
        .iter()
        .filter_map(|e| Some((e["step"].as_u64()?, e["grad_norm"].as_f64()?)))
        .collect();
    assert_eq!(norms.len(), steps.len(), "every step reports its norm");
    assert_scalars(read, "train/grad_norm", &norms);
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
    use trainui_protocol::events::{Event, RunInfo, StepMetrics};
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    let mut file = std::fs::File::create(run.join(trainui_protocol::rundir::EVENTS_FILE)).unwrap();
    let mut write = |event: &Event| {
        let mut line = trainui_protocol::rundir::event_line(event, std::time::SystemTime::now());
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
            tokens_seen: None,
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

/// A tiny run's settings that end in a second or two.
const QUICK: [&str; 4] = [
    "train.max_steps=4",
    "train.log_steps=2",
    "eval.eval_steps=4",
    "eval.samples=1",
];

/// The names in `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_tensorboard_entry_that_is_not_a_folder_is_refused_before_anything_is_written() {
    type Make = dyn Fn(&Path);
    let dir = tempfile::tempdir().unwrap();
    let mut sets = QUICK.to_vec();
    sets.push("tensorboard.enabled=true");
    let cases: [(&str, &Make); 2] = [
        ("is not a folder", &|p| std::fs::write(p, "notes").unwrap()),
        ("is a link to /nonexistent/tb, which does not exist", &|p| {
            std::os::unix::fs::symlink("/nonexistent/tb", p).unwrap();
        }),
    ];
    for (index, (reason, make)) in cases.iter().enumerate() {
        let run = dir.path().join(format!("run-{index}"));
        std::fs::create_dir(&run).unwrap();
        let folder = run.join("tensorboard");
        make(&folder);
        let output = tiny_run(&run, &sets).output().unwrap();
        crate::common::assert_user_error(
            &output,
            &[
                &folder.display().to_string(),
                reason,
                "tensorboard.enabled=false",
            ],
        );
        assert_eq!(entries(&run), ["tensorboard"], "{reason}: nothing written");
        // Moved away, the same command starts the run afresh.
        std::fs::remove_file(&folder).unwrap();
        assert_success(&tiny_run(&run, &sets).output().unwrap());
        assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 1);
    }

    // A folder no event file can be made in (as /proc/1 is, even for
    // root) fails the run before its own files are written: it can start
    // afresh once the folder is fixed.
    let run = dir.path().join("unwritable");
    std::fs::create_dir(&run).unwrap();
    let folder = run.join("tensorboard");
    std::os::unix::fs::symlink("/proc/1", &folder).unwrap();
    let output = tiny_run(&run, &sets).output().unwrap();
    crate::common::assert_runtime_error(&output, &["tensorboard/events.out.tfevents"]);
    for written in ["events.jsonl", "config.json", "status"] {
        assert!(
            !run.join(written).exists(),
            "{written}: {:?}",
            entries(&run)
        );
    }
    std::fs::remove_file(&folder).unwrap();
    assert_success(&tiny_run(&run, &sets).output().unwrap());
}

/// A run directory of a few steps, written by hand.
fn hand_written_run(run: &Path) {
    use std::io::Write as _;
    use trainui_protocol::events::{Event, RunInfo, StepMetrics};
    std::fs::create_dir_all(run).unwrap();
    let mut file = std::fs::File::create(run.join(trainui_protocol::rundir::EVENTS_FILE)).unwrap();
    let mut write = |event: &Event| {
        let mut line = trainui_protocol::rundir::event_line(event, std::time::SystemTime::now());
        line.push(b'\n');
        file.write_all(&line).unwrap();
    };
    write(&Event::Started(Box::new(RunInfo {
        pid: 1,
        ..RunInfo::new("run", 3)
    })));
    for step in 1..=3 {
        write(&Event::Step(StepMetrics {
            step,
            max_steps: 3,
            loss: 4.0 / step as f64,
            learning_rate: 1e-3,
            tokens_per_sec: 100.0,
            elapsed_secs: 1.0,
            eta_secs: 1.0,
            grad_norm: None,
            tokens_seen: None,
        }));
    }
}

/// `trainui export-tensorboard`, ended if it has not after a minute (a
/// guard against hangs).
fn export() -> assert_cmd::Command {
    let mut command = trainui();
    command
        .arg("export-tensorboard")
        .timeout(std::time::Duration::from_mins(1));
    command
}

#[test]
fn export_of_an_events_file_that_cannot_be_read_fails_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let replaced = |name: &str, make: &dyn Fn(&Path)| {
        let run = dir.path().join(name);
        hand_written_run(&run);
        let events = run.join(trainui_protocol::rundir::EVENTS_FILE);
        std::fs::remove_file(&events).unwrap();
        make(&events);
        run
    };
    let cases = [
        (
            replaced("fifo", &|p| {
                let made = std::process::Command::new("mkfifo")
                    .arg(p)
                    .status()
                    .unwrap();
                assert!(made.success());
            }),
            "a FIFO",
        ),
        (
            replaced("zero", &|p| {
                std::os::unix::fs::symlink("/dev/zero", p).unwrap();
            }),
            "a character device",
        ),
        (
            replaced("null", &|p| {
                std::os::unix::fs::symlink("/dev/null", p).unwrap();
            }),
            "a character device",
        ),
        (
            replaced("folder", &|p| std::fs::create_dir(p).unwrap()),
            "a folder",
        ),
        (
            // The socket file stays when its listener is gone.
            replaced("socket", &|p| {
                std::os::unix::net::UnixListener::bind(p).unwrap();
            }),
            "a socket",
        ),
        (
            replaced("dangling", &|p| {
                std::os::unix::fs::symlink("/nonexistent/events.jsonl", p).unwrap();
            }),
            "which does not exist",
        ),
    ];
    for (run, reason) in &cases {
        let output = export().arg(run).output().unwrap();
        let events = run.join(trainui_protocol::rundir::EVENTS_FILE);
        crate::common::assert_user_error(&output, &[&events.display().to_string(), reason]);
        assert_eq!(entries(run), ["events.jsonl"], "{reason}: nothing written");
        // Nor into a folder of one's own.
        let out = dir.path().join("out");
        let output = export().arg(run).arg("--out").arg(&out).output().unwrap();
        crate::common::assert_user_error(&output, &[reason]);
        assert!(!out.exists(), "{reason}");
    }
}

#[test]
fn export_of_an_events_file_its_reader_may_not_read_fails_and_writes_nothing() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("private");
    hand_written_run(&run);
    let events = run.join(trainui_protocol::rundir::EVENTS_FILE);
    let Some(mut export) = as_another_user(dir.path(), &[&run]) else {
        return;
    };
    std::fs::set_permissions(&events, std::fs::Permissions::from_mode(0o000)).unwrap();
    let output = export.arg("export-tensorboard").arg(&run).output().unwrap();
    crate::common::assert_user_error(
        &output,
        &[&events.display().to_string(), "ermission denied"],
    );
    assert_eq!(entries(&run), ["events.jsonl"]);
}

#[test]
fn export_into_a_file_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    hand_written_run(&run);
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "mine").unwrap();
    for out in [file.clone(), run.join("tensorboard")] {
        if out != file {
            std::fs::write(&out, "mine").unwrap();
        }
        let output = export().arg(&run).arg("--out").arg(&out).output().unwrap();
        crate::common::assert_user_error(&output, &[&out.display().to_string(), "is not a folder"]);
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "mine");
    }
    // The run's own folder, when it is a file.
    let output = export().arg(&run).output().unwrap();
    crate::common::assert_user_error(&output, &["tensorboard: is not a folder", "--out"]);
}

#[test]
fn export_skips_over_long_and_foreign_lines_with_a_warning() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    hand_written_run(&run);
    let mut events = std::fs::OpenOptions::new()
        .append(true)
        .open(run.join(trainui_protocol::rundir::EVENTS_FILE))
        .unwrap();
    let long = format!(
        "{{\"v\":3,\"type\":\"step\",\"pad\":\"{}\"}}\n",
        "x".repeat(trainui_protocol::runfile::MAX_EVENT_LINE + 10)
    );
    events.write_all(long.as_bytes()).unwrap();
    events.write_all(b"{\"not\": \"an event\"}\n").unwrap();
    drop(events);
    let output = export().arg(&run).output().unwrap();
    assert_success(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("skipped 1 line longer than")
            && stderr.contains("skipped 1 line that is not a trainui event"),
        "{stderr}"
    );
}

#[test]
fn event_files_are_never_writable_by_others_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    hand_written_run(&run);
    let out = dir.path().join("deep/er/tb");
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg("umask 000; exec \"$@\"")
        .arg("sh")
        .arg(crate::common::program("trainui"))
        .arg("export-tensorboard")
        .arg(&run)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_success(&output);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    for folder in [
        dir.path().join("deep"),
        dir.path().join("deep/er"),
        out.clone(),
    ] {
        assert_eq!(mode(&folder), 0o755, "{}", folder.display());
    }
    let file = std::fs::read_dir(&out)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(mode(&file), 0o644, "{}", file.display());
}
