//! Jobs of the Python package (`python/`, `examples/`) seen from the Rust
//! side: `trainui run` starts them, and `status`, `ctl` and the rank files
//! treat them as they treat a run of `trainui train`.
#![allow(clippy::unwrap_used)] // helpers outside #[test] functions

use crate::common::SpawnForTest;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::common::{
    events_so_far, gone, repo, signal, status, trainui, wait_exit, wait_for, wait_for_event,
};

fn python() -> String {
    std::env::var("TRAINUI_PYTHON").expect(
        "TRAINUI_PYTHON names a Python with torch 2.13.0 and transformers; ./dev test sets it",
    )
}

/// `trainui run --no-tui --run-dir RUN -- COMMAND...`, from the repository root.
fn run_job(run_dir: &Path, command: &[&str]) -> std::process::Command {
    let mut process = std::process::Command::new(crate::common::program("trainui"));
    process
        .current_dir(repo())
        .env("GLOO_SOCKET_IFNAME", "lo")
        .args(["run", "--no-tui", "--run-dir"])
        .arg(run_dir)
        .arg("--")
        .args(command);
    process
}

/// Kills the job `trainui run` (pid `parent`) started, and its process
/// group: a test that fails leaves no job behind.
struct JobGroup(u32);

impl Drop for JobGroup {
    fn drop(&mut self) {
        let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.0))
            .unwrap_or_default();
        for pid in children.split_whitespace() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn ctl(run_dir: &Path, args: &[&str]) -> String {
    let output = trainui()
        .arg("ctl")
        .arg(run_dir)
        .args(args)
        .args(["--timeout", "60"])
        .output()
        .unwrap();
    crate::common::assert_success(&output);
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn checkpoints(run_dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(run_dir.join("checkpoints"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("checkpoint-"))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_transformers_trainer_job_is_steered_by_ctl_like_a_trainui_run() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("hf");
    let python = python();
    let mut job = run_job(
        &run,
        &[
            &python,
            "examples/hf_trainer.py",
            "--max-steps",
            "100000",
            "--eval-steps",
            "100000",
            "--save-steps",
            "100000",
            "--samples",
            "2",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn_for_test();
    let _group = JobGroup(job.id());
    wait_for_event(&run, "step");

    // `status` reads it like a trainui run, and says who writes it.
    let output = trainui().arg("status").arg(&run).output().unwrap();
    crate::common::assert_success(&output);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("(pid") && text.contains("running"), "{text}");
    assert!(
        text.contains("trainui-python 0.1.0 (transformers), 1 rank"),
        "{text}"
    );
    assert!(text.contains("rank 0 ("), "{text}");
    assert_eq!(status(&run)["producer"]["framework"], "transformers");

    let said = ctl(&run, &["eval"]);
    assert!(said.starts_with("eval: evaluating at step"), "{said}");
    wait_for_event(&run, "eval_finished");
    let said = ctl(&run, &["save"]);
    assert!(said.starts_with("save: "), "{said}");
    wait_for("the saved checkpoint", Duration::from_mins(1), || {
        !checkpoints(&run).is_empty()
    });
    let said = ctl(&run, &["set", "train.learning_rate=0.0001"]);
    assert!(said.starts_with("set: "), "{said}");
    wait_for("the new learning rate", Duration::from_mins(1), || {
        events_so_far(&run)
            .iter()
            .rev()
            .find(|e| e["type"] == "step")
            .is_some_and(|e| e["learning_rate"].as_f64().unwrap() <= 1e-4)
    });
    let said = ctl(&run, &["stop"]);
    assert!(said.starts_with("stop: "), "{said}");
    // trainui exits with the job's status: a stopped job exits 0 ...
    assert_eq!(wait_exit(&mut job, Duration::from_mins(2)).code(), Some(0));
    let status = status(&run);
    assert_eq!(status["state"], "stopped");
    // ... after a final checkpoint at the step it stopped at.
    let step = status["current_step"].as_u64().unwrap();
    assert!(
        run.join(format!("checkpoints/checkpoint-{step}")).is_dir(),
        "{:?}",
        checkpoints(&run)
    );
    assert_eq!(
        status["last_checkpoint"].as_str().unwrap(),
        run.join(format!("checkpoints/checkpoint-{step}"))
            .to_str()
            .unwrap()
    );
    // The job's lines came through trainui, as `train --no-tui` prints them;
    // its own output went to job_output.log.
    let mut printed = String::new();
    std::io::Read::read_to_string(job.stdout.as_mut().unwrap(), &mut printed).unwrap();
    assert!(printed.contains("FULL EVAL - Step"), "{printed}");
    assert!(
        printed.contains(&format!("stopped at step {step}/100000")),
        "{printed}"
    );
    assert!(run.join("job_output.log").is_file());
}

/// The incident trainui was made for, recovered with no one touching it: a
/// Trainer job whose evaluation hangs where no generation deadline looks
/// (its validation data never comes) stalls, ends with the stall status,
/// is relaunched by `trainui run --restart-on-stall` from its newest
/// checkpoint, and finishes.
#[test]
fn a_trainer_job_whose_evaluation_hangs_is_relaunched_from_its_checkpoint_and_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("hangs");
    let python = python();
    let mut command = std::process::Command::new(crate::common::program("trainui"));
    command
        .current_dir(repo())
        .args(["run", "--no-tui", "--restart-on-stall", "1", "--run-dir"])
        .arg(&run)
        .arg("--")
        .args([
            &python,
            "examples/hf_trainer.py",
            "--max-steps",
            "60",
            "--eval-steps",
            "30",
            "--save-steps",
            "20",
            "--samples",
            "2",
            "--stall-timeout",
            "5",
            "--fault",
            "hang_eval_once",
        ]);
    let mut job = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn_for_test();
    let _group = JobGroup(job.id());
    assert_eq!(wait_exit(&mut job, Duration::from_mins(4)).code(), Some(0));
    let mut said = String::new();
    std::io::Read::read_to_string(job.stderr.as_mut().unwrap(), &mut said).unwrap();
    let checkpoint_20 = run.join("checkpoints/checkpoint-20");
    assert!(
        said.contains(&format!(
            "the job stalled (exit status 75): restarting it (1 of 1) from {}",
            checkpoint_20.display()
        )),
        "{said}"
    );

    // The events tell it all: the stall in the evaluation at step 30, the
    // relaunch, the resumed step, and the end.
    let events = events_so_far(&run);
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    let stalled = kinds.iter().position(|&k| k == "stalled").unwrap();
    assert_eq!(events[stalled]["step"], 30, "{:?}", events[stalled]);
    let starts: Vec<&serde_json::Value> =
        events.iter().filter(|e| e["type"] == "started").collect();
    assert_eq!(starts.len(), 2, "{kinds:?}");
    assert_eq!(starts[0]["resumed_from"], serde_json::Value::Null);
    assert_eq!(starts[1]["start_step"], 20);
    assert_eq!(
        starts[1]["resumed_from"].as_str().unwrap(),
        checkpoint_20.to_str().unwrap()
    );
    let relaunch = events
        .iter()
        .position(|e| {
            e["type"] == "warning"
                && e["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("relaunched by trainui run after a stall (restart 1), from ")
        })
        .unwrap();
    assert!(stalled < relaunch, "{kinds:?}");
    let eval_after = events[relaunch..]
        .iter()
        .find(|e| e["type"] == "eval_finished")
        .unwrap();
    assert_eq!(eval_after["step"], 30);
    let status = status(&run);
    assert_eq!(status["state"], "finished");
    assert_eq!(status["current_step"], 60);
    assert!(run.join("checkpoints/checkpoint-60").is_dir());
}

/// Without a TUI, `trainui run` shows the job's output as a command's own
/// (escaped: the job's output is data), besides the log lines it prints
/// from the events; the log keeps the bytes as they came.
#[test]
fn run_without_a_tui_passes_the_jobs_output_through_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("talks");
    let output = run_job(
        &run,
        &[
            "sh",
            "-c",
            "printf 'out \\033]0;title\\007 here\\n'; echo \"to stderr $TRAINUI_PRINT_LINES \
             $PYTHONUNBUFFERED ${TRAINUI_ALERTS:-none}\" >&2; printf 'no newline'; exit 3",
        ],
    )
    .output()
    .unwrap();
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stdout.contains("out \\x1b]0;title\\x07 here\n"),
        "{stdout:?}"
    );
    assert!(stdout.contains("no newline\n"), "{stdout:?}");
    assert!(
        !stdout.contains('\x1b') && !stdout.contains('\x07'),
        "{stdout:?}"
    );
    // The job prints no log lines of its own (trainui prints them), and
    // Python writes its output as it comes.
    assert!(stderr.contains("to stderr 0 1 none\n"), "{stderr:?}");
    assert!(
        stderr.contains(&format!(
            "the job exited with status 3; its output is in {}",
            run.canonicalize().unwrap().join("job_output.log").display()
        )),
        "{stderr}"
    );
    let log = std::fs::read(run.join("job_output.log")).unwrap();
    let log = String::from_utf8_lossy(&log);
    assert!(log.contains("out \x1b]0;title\x07 here\n"), "{log:?}");
    assert!(log.contains("no newline"), "{log:?}");
}

/// `alerts.command` for any job: `trainui run --alerts-command` runs it
/// for the job's events (once: the job is told to leave it to trainui).
#[test]
fn run_runs_the_alerts_command_for_a_python_jobs_events() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("alerts");
    let heard = dir.path().join("heard");
    let python = python();
    let script = "import os, trainui\n\
                  assert os.environ['TRAINUI_ALERTS'] == 'launcher'\n\
                  run = trainui.Run(max_steps=4, settings={'train': {'log_steps': 2}})\n\
                  run.start()\n\
                  for step in range(1, 5):\n    run.log_step(step, loss=1.0 / step, learning_rate=1e-3)\n\
                  run.finish()\n";
    let mut command = std::process::Command::new(crate::common::program("trainui"));
    command
        .current_dir(repo())
        .args([
            "run",
            "--no-tui",
            "--alerts-timeout",
            "20",
            "--alerts-command",
        ])
        .arg(format!(
            "{{ echo \"$TRAINUI_ALERT|$TRAINUI_ALERT_TITLE|$TRAINUI_ALERT_BODY\"; cat; }} >> '{}'",
            heard.display()
        ))
        .arg("--run-dir")
        .arg(&run)
        .args(["--", &python, "-c", script]);
    let output = command.output().unwrap();
    crate::common::assert_success(&output);
    let heard = std::fs::read_to_string(&heard).unwrap();
    let mut lines = heard.lines();
    assert_eq!(
        lines.next(),
        Some("finished|trainui: alerts finished|at step 4/4, loss 0.2917"),
        "{heard}"
    );
    let line: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(line["type"], "finished");
    assert_eq!(lines.next(), None, "one alert, told once: {heard}");
}

#[test]
fn run_passes_on_the_jobs_exit_status_and_refuses_a_directory_that_holds_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("fails");
    let output = run_job(&run, &["sh", "-c", "echo from the job; exit 3"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("the job exited with status 3"), "{stderr}");
    let job_output = std::fs::read_to_string(run.join("job_output.log")).unwrap();
    assert_eq!(job_output, "from the job\n");

    // The job learns its run directory from TRAINUI_RUN_DIR.
    let told = dir.path().join("told");
    let output = run_job(&told, &["sh", "-c", "echo \"$TRAINUI_RUN_DIR\""])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let job_output = std::fs::read_to_string(told.join("job_output.log")).unwrap();
    assert_eq!(
        job_output.trim(),
        told.canonicalize().unwrap().to_str().unwrap()
    );

    // A directory that holds a run is left as it is.
    let held = dir.path().join("held");
    std::fs::create_dir(&held).unwrap();
    std::fs::write(held.join("events.jsonl"), "{\"v\":3}\n").unwrap();
    let output = run_job(&held, &["sh", "-c", "touch started"])
        .output()
        .unwrap();
    crate::common::assert_user_error(&output, &["already holds a run", "another --run-dir"]);
    assert_eq!(
        std::fs::read_to_string(held.join("events.jsonl")).unwrap(),
        "{\"v\":3}\n"
    );
    assert!(!held.join("job_output.log").exists() && !repo().join("started").exists());
}

#[test]
fn usr1_to_trainui_run_evaluates_and_sigterm_stops_the_job_which_saves_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("loop");
    let python = python();
    let mut job = run_job(
        &run,
        &[
            &python,
            "examples/torchrun_loop.py",
            "--max-steps",
            "100000",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn_for_test();
    let _group = JobGroup(job.id());
    wait_for_event(&run, "step");
    // SIGUSR1 becomes the eval_now command (a launcher would die of it).
    signal(&job, "USR1");
    wait_for(
        "the evaluation SIGUSR1 asked for",
        Duration::from_mins(1),
        || {
            events_so_far(&run)
                .iter()
                .any(|e| e["type"] == "command_ack" && e["command"] == "eval_now")
        },
    );
    signal(&job, "TERM");
    assert_eq!(wait_exit(&mut job, Duration::from_mins(2)).code(), Some(0));
    let status = status(&run);
    assert_eq!(status["state"], "stopped");
    let step = status["current_step"].as_u64().unwrap();
    assert!(run.join(format!("checkpoints/checkpoint-{step}")).is_dir());
}

#[test]
fn status_names_the_rank_of_a_torchrun_job_that_went_silent() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("two");
    let python = python();
    let job = run_job(
        &run,
        &[
            &python,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--master-addr",
            "127.0.0.1",
            "--master-port",
            &free_port().to_string(),
            "examples/torchrun_loop.py",
            "--max-steps",
            "100000",
            "--stall-timeout",
            "5",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn_for_test();
    let _group = JobGroup(job.id());
    wait_for_event(&run, "step");
    let rank_file = run.join("ranks/rank-1.json");
    wait_for("rank 1's heartbeat", Duration::from_mins(1), || {
        rank_file.is_file()
    });
    let beat: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&rank_file).unwrap()).unwrap();
    let pid = beat["pid"].as_u64().unwrap();
    let status_text = || {
        let output = trainui().arg("status").arg(&run).output().unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let before = status_text();
    assert!(before.contains("(pytorch), 2 ranks"), "{before}");
    assert!(before.contains("rank 1 ("), "{before}");
    assert!(!before.contains("went silent"), "{before}");

    std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    let mut after = String::new();
    wait_for("status to name rank 1", Duration::from_mins(1), || {
        after = status_text();
        after.contains("rank 1 went silent first: last beat")
    });
    let line = after
        .lines()
        .find(|l| l.contains("rank 1 ("))
        .unwrap_or_default();
    assert!(
        line.contains(&format!("pid {pid}")) && line.contains("GONE"),
        "{after}"
    );
    // torchrun ends the other rank when one dies; whatever rank 0 did then,
    // status names rank 1 as the one that went first.
    assert!(after.contains("(its process ended)"), "{after}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A job that ignores SIGINT and SIGTERM, as does the child it starts in
/// its process group (`sleep` inherits the ignoring); each writes its pid
/// into the run directory.
const STUBBORN_JOB: &str = "trap '' INT TERM; sleep 1000 & echo $! > \"$TRAINUI_RUN_DIR/child.pid\"; \
     echo $$ > \"$TRAINUI_RUN_DIR/job.pid\"; wait";

/// The pids of the stubborn job and its child, once both are written.
fn stubborn_pids(run: &Path) -> [u32; 2] {
    let mut pids = [0, 0];
    wait_for("the job and its child", Duration::from_mins(1), || {
        for (pid, file) in pids.iter_mut().zip(["job.pid", "child.pid"]) {
            *pid = std::fs::read_to_string(run.join(file))
                .ok()
                .and_then(|text| text.trim().parse().ok())
                .unwrap_or(0);
        }
        pids.iter().all(|&pid| pid != 0)
    });
    pids
}

#[test]
fn a_second_sigint_ends_a_job_that_ignores_it_with_its_process_group_after_a_stated_grace() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("stubborn");
    let mut job = run_job(&run, &["sh", "-c", STUBBORN_JOB])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn_for_test();
    let _group = JobGroup(job.id());
    let pids = stubborn_pids(&run);
    // The first SIGINT is passed on; the job ignores it.
    signal(&job, "INT");
    std::thread::sleep(Duration::from_secs(2));
    assert!(job.try_wait().unwrap().is_none(), "the job ignores SIGINT");
    assert!(!gone(pids[0]) && !gone(pids[1]));
    let asked = std::time::Instant::now();
    signal(&job, "INT");
    // The grace period (10 s) and a generous margin for a loaded machine.
    let status = wait_exit(&mut job, Duration::from_mins(1));
    let waited = asked.elapsed();
    assert_eq!(status.code(), Some(128 + 9), "killed: 128 + SIGKILL");
    assert!(
        waited >= Duration::from_secs(9),
        "after the grace: {waited:?}"
    );
    let mut said = String::new();
    std::io::Read::read_to_string(job.stderr.as_mut().unwrap(), &mut said).unwrap();
    assert!(
        said.contains(&format!(
            "the job goes on after SIGINT (it ignores it, or hangs): SIGKILL to its process \
             group (pgid {}) in 10 s",
            pids[0]
        )),
        "{said}"
    );
    assert!(said.contains("the job exited with status 137"), "{said}");
    wait_for(
        "the job's group to be gone",
        Duration::from_secs(10),
        || gone(pids[0]) && gone(pids[1]),
    );

    // A third signal does not wait for the grace period.
    let run = dir.path().join("impatient");
    let mut job = run_job(&run, &["sh", "-c", STUBBORN_JOB])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn_for_test();
    let _group = JobGroup(job.id());
    let pids = stubborn_pids(&run);
    signal(&job, "TERM");
    signal(&job, "INT");
    std::thread::sleep(Duration::from_millis(500));
    let asked = std::time::Instant::now();
    signal(&job, "TERM");
    let status = wait_exit(&mut job, Duration::from_mins(1));
    assert_eq!(status.code(), Some(128 + 9));
    assert!(
        asked.elapsed() < Duration::from_secs(8),
        "{:?}",
        asked.elapsed()
    );
    let mut said = String::new();
    std::io::Read::read_to_string(job.stderr.as_mut().unwrap(), &mut said).unwrap();
    assert!(
        said.contains("SIGTERM again: SIGKILL to the job's process group"),
        "{said}"
    );
    wait_for(
        "the job's group to be gone",
        Duration::from_secs(10),
        || gone(pids[0]) && gone(pids[1]),
    );

    // A job that ends of the second SIGINT but leaves its child behind:
    // the child goes too.
    let run = dir.path().join("leaves-a-child");
    let script = STUBBORN_JOB.replace(
        "; wait",
        "; n=0; trap 'n=$((n+1)); [ $n -ge 2 ] && exit 3' INT; while :; do wait; done",
    );
    let mut job = run_job(&run, &["sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn_for_test();
    let _group = JobGroup(job.id());
    let pids = stubborn_pids(&run);
    signal(&job, "INT");
    std::thread::sleep(Duration::from_millis(500));
    signal(&job, "INT");
    let status = wait_exit(&mut job, Duration::from_mins(1));
    let mut said = String::new();
    std::io::Read::read_to_string(job.stderr.as_mut().unwrap(), &mut said).unwrap();
    assert_eq!(status.code(), Some(3), "the job's own status: {said}");
    assert!(
        said.contains("the job ended, processes of its group remain: SIGKILL"),
        "{said}"
    );
    wait_for(
        "the job's child to be gone",
        Duration::from_secs(10),
        || gone(pids[1]),
    );
}

#[test]
fn run_makes_nothing_others_can_write_whatever_the_umask_and_writes_through_no_link() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("deep/er/run");
    let binary = crate::common::program("trainui");
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 000; exec {} run --no-tui --run-dir {} -- sh -c 'echo hello; touch \"$TRAINUI_RUN_DIR/made\"'",
            binary.display(),
            run.display()
        ))
        .output()
        .unwrap();
    crate::common::assert_success(&output);
    for path in [
        dir.path().join("deep"),
        dir.path().join("deep/er"),
        run.clone(),
        run.join("job_output.log"),
    ] {
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o022, 0, "{}: {mode:o}", path.display());
    }
    assert_eq!(
        std::fs::read_to_string(run.join("job_output.log")).unwrap(),
        "hello\n"
    );

    // job_output.log as a link elsewhere, or as a FIFO: refused, at once.
    for (name, make) in [
        ("linked", "ln -s ../target.txt job_output.log"),
        ("fifo", "mkfifo job_output.log"),
    ] {
        let run = dir.path().join(name);
        std::fs::create_dir(&run).unwrap();
        std::fs::write(dir.path().join("target.txt"), "kept\n").unwrap();
        let made = std::process::Command::new("sh")
            .args(["-c", make])
            .current_dir(&run)
            .status()
            .unwrap();
        assert!(made.success());
        let mut job = run_job(&run, &["sh", "-c", "echo written"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn_for_test();
        let status = wait_exit(&mut job, Duration::from_secs(30));
        let mut said = String::new();
        std::io::Read::read_to_string(job.stderr.as_mut().unwrap(), &mut said).unwrap();
        assert_eq!(status.code(), Some(2), "{name}: {said}");
        assert!(said.contains("job_output.log: is a"), "{name}: {said}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("target.txt")).unwrap(),
            "kept\n"
        );
    }
}
