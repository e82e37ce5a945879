//! `trainui runs`: the run directories under a folder, from their status
//! files, with whether each process is alive.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use crate::common::trainui;
use serde_json::Value;
use trainui_protocol::events::{GpuStatus, RunState, RunStatus};
use trainui_protocol::rundir;
use trainui_protocol::runlock::RunLock;

fn write_status(run_dir: &Path, state: RunState, step: u64, configure: impl Fn(&mut RunStatus)) {
    let mut status = RunStatus::new(run_dir.file_name().unwrap().to_string_lossy().into(), 3000);
    status.state = state;
    status.current_step = step;
    status.loss = Some(0.5);
    status.updated_at = rundir::now_rfc3339();
    configure(&mut status);
    std::fs::create_dir_all(run_dir.join("status")).unwrap();
    std::fs::write(
        run_dir.join(rundir::STATUS_FILE),
        serde_json::to_vec_pretty(&status).unwrap(),
    )
    .unwrap();
}

#[test]
fn runs_lists_each_run_with_its_state_and_whether_its_process_lives() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path();
    // Alive: this test holds its lock.
    let _lock = RunLock::take(&runs.join("alive")).unwrap();
    write_status(&runs.join("alive"), RunState::Training, 1200, |s| {
        s.val_loss = Some(0.42);
        s.generations = 10;
        s.timeouts = 1;
        s.timeout_rate = 0.1;
        s.gpus = vec![GpuStatus {
            index: 0,
            name: "NVIDIA H200".into(),
            utilization: 97,
            memory_used_bytes: 40 << 30,
            memory_total_bytes: 141 << 30,
            temperature: Some(61),
            power_watts: Some(412.0),
        }];
    });
    // Gone: training, but nobody holds its lock.
    drop(RunLock::take(&runs.join("gone")).unwrap());
    write_status(&runs.join("gone"), RunState::Training, 500, |_| {});
    drop(RunLock::take(&runs.join("done")).unwrap());
    write_status(&runs.join("done"), RunState::Finished, 3000, |_| {});
    std::fs::create_dir(runs.join("starting")).unwrap();
    std::fs::write(runs.join("starting").join(rundir::EVENTS_FILE), "").unwrap();
    std::fs::create_dir(runs.join("not-a-run")).unwrap();
    std::fs::write(runs.join("notes.txt"), "x").unwrap();

    let out = trainui().arg("runs").arg(runs).assert().success();
    let table = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    let line = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} in {table}"))
            .to_owned()
    };
    assert!(table.lines().next().unwrap().starts_with("run "), "{table}");
    let alive = line("alive");
    for shown in [
        "training · alive",
        "1,200/3,000",
        "0.5000",
        "0.4200",
        "10.0%",
        "s ago",
    ] {
        assert!(alive.contains(shown), "{shown}: {alive}");
    }
    assert!(
        line("gone").contains("training · GONE, no final state"),
        "{table}"
    );
    assert!(line("done").contains("finished") && !line("done").contains("alive"));
    assert!(line("starting").contains("no status yet"), "{table}");
    assert!(
        !table.contains("not-a-run") && !table.contains("notes"),
        "{table}"
    );

    let out = trainui()
        .args(["runs", "--json"])
        .arg(runs)
        .assert()
        .success();
    let json: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let list = json.as_array().unwrap();
    assert_eq!(list.len(), 4, "{json}");
    let run = |name: &str| list.iter().find(|r| r["name"] == name).unwrap();
    assert_eq!(run("alive")["alive"], true);
    assert_eq!(run("alive")["gone"], false);
    assert_eq!(run("alive")["step"], 1200);
    assert_eq!(run("alive")["gpus"][0]["utilization"], 97);
    assert_eq!(run("gone")["gone"], true);
    assert_eq!(run("done")["state"], "finished");
    assert_eq!(run("done")["gone"], false);
    assert_eq!(run("starting")["state"], Value::Null);
    // Most recently updated first; no status file last.
    assert_eq!(list.last().unwrap()["name"], "starting");
}

#[test]
fn runs_reads_hundreds_of_status_files_and_a_missing_folder_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    for n in 0..300 {
        write_status(
            &dir.path().join(format!("run-{n:03}")),
            RunState::Finished,
            n,
            |_| {},
        );
    }
    let out = trainui()
        .args(["runs", "--json"])
        .arg(dir.path())
        .assert()
        .success();
    let json: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 300);

    let out = trainui()
        .args(["runs", "/nonexistent/runs"])
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("/nonexistent/runs: cannot list runs"),
        "{stderr}"
    );
}
