//! The real binary in a real terminal: tmux runs the TUI, keys are typed with
//! `send-keys`, and the screen is read with `capture-pane`.
#![allow(clippy::unwrap_used)] // helpers outside #[test] functions

use crate::common::SpawnForTest;

use std::process::Command;
use std::time::Duration;

use crate::common::{events_of, gone, repo, wait_for};

/// A tmux server of this test's own.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// A 100x30 session `tui` running `command` on a server of its own.
    fn start(tag: &str, command: &str) -> Self {
        let tmux = Self {
            socket: format!("trainui-{tag}-{}", std::process::id()),
        };
        tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "tui",
            "-x",
            "100",
            "-y",
            "30",
            command,
        ]);
        tmux
    }

    fn run(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux is installed (./dev test installs it)");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "tui"])
    }

    fn keys(&self, keys: &str) {
        self.run(&["send-keys", "-t", "tui", keys]);
    }

    fn wait_for_screen(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let mut screen = String::new();
        wait_for(what, Duration::from_mins(2), || {
            screen = self.screen();
            ready(&screen)
        });
        screen
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-server"]);
    }
}

/// The TUI is training and its loss chart shows points (braille dots).
fn chart_filled(screen: &str) -> bool {
    screen.contains("TRAINING")
        && screen
            .chars()
            .filter(|c| ('\u{2801}'..='\u{28ff}').contains(c))
            .count()
            > 10
}

#[test]
fn the_tui_trains_evaluates_aborts_and_quits_cleanly_in_tmux() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let binary = crate::common::program("trainui");
    // Generations that only end by the deadline (two minutes) or an abort.
    let command = format!(
        "cd {} && {} --config config/tiny.json --run-dir {} --set train.max_steps=1000000 \
         --set eval.eval_steps=0 --set eval.samples=1 --set eval.eval_timeout_seconds=120 \
         --set eval.min_new_tokens=1000000 --set eval.max_new_tokens=1000000; \
         echo TRAINUI_EXIT=$?; sleep 120",
        repo().display(),
        binary.display(),
        run.display()
    );
    let tmux = Tmux::start("test", &command);

    // The loss chart fills with braille points.
    let screen = tmux.wait_for_screen("the loss chart", chart_filled);
    assert!(screen.contains("loss · whole run"), "{screen}");
    assert!(
        screen.contains("no GPU") || screen.contains('%'),
        "{screen}"
    );

    // Key to screen, while the trainer keeps both cores busy: `l` toggles
    // the chart's scale and the footer says so.
    let mut latencies = Vec::new();
    for (round, said) in ["log scale", "linear scale"]
        .iter()
        .cycle()
        .take(6)
        .enumerate()
    {
        let before = std::time::Instant::now();
        tmux.keys("l");
        while !tmux.screen().contains(said) {
            assert!(before.elapsed() < Duration::from_mins(1), "no answer to l");
            std::thread::sleep(Duration::from_millis(2));
        }
        latencies.push(before.elapsed().as_secs_f64() * 1e3);
        // The next answer must not be the one already shown.
        std::thread::sleep(Duration::from_millis(50 + 10 * round as u64));
    }
    latencies.sort_by(f64::total_cmp);
    eprintln!("key to screen (ms, sorted): {latencies:.1?}");
    assert!(latencies[5] < 100.0, "key to screen: {latencies:?} ms");

    tmux.keys("e");
    // The generation shows as soon as the trainer beats in it; its answer
    // comes through the event stream a moment later on a loaded machine.
    let screen = tmux.wait_for_screen("a generation and the answer", |s| {
        s.contains("generating 1/1") && s.contains("eval: evaluating at step")
    });
    assert!(screen.contains("EVALUATING"), "{screen}");
    assert!(screen.contains("eval: evaluating at step"), "{screen}");

    tmux.keys("a");
    let screen = tmux.wait_for_screen("the aborted sample", |s| s.contains("ABORTED"));
    assert!(!screen.contains("generating 1/1"), "{screen}");
    let samples = events_of(&run, "sample");
    assert_eq!(samples[0]["outcome"]["kind"], "aborted");

    tmux.keys("q");
    tmux.wait_for_screen("the quit question", |s| {
        s.contains("Stop training and quit?")
    });
    tmux.keys("y");
    let screen = tmux.wait_for_screen("the exit", |s| s.contains("TRAINUI_EXIT="));
    assert!(screen.contains("TRAINUI_EXIT=0"), "{screen}");
    assert!(
        !screen.contains("TRAINING") && !screen.contains("┌"),
        "the TUI is gone:\n{screen}"
    );
    // One line says how the run ended, where it saved and how to go on.
    let joined = screen.replace('\n', "");
    assert!(
        joined.contains("stopped at step") && joined.contains("last checkpoint"),
        "{screen}"
    );
    assert!(joined.contains("--resume latest"), "{screen}");
    assert_eq!(
        tmux.run(&["display-message", "-p", "-t", "tui", "#{alternate_on}"])
            .trim(),
        "0"
    );
    let status: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("status/training_status.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(status["state"], "stopped");
    assert_eq!(status["aborts"], 1);
}

#[test]
fn watch_attaches_to_a_headless_run_steers_it_and_leaves_it_running() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut job = crate::common::tiny_run_std(
        &run,
        &[
            "train.max_steps=1000000",
            "eval.eval_steps=0",
            "eval.samples=1",
        ],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn_for_test();
    crate::common::wait_for_event(&run, "step");
    let binary = crate::common::program("trainui");
    let command = format!(
        "{} watch {}; echo WATCH_EXIT=$?; sleep 120",
        binary.display(),
        run.display()
    );
    let tmux = Tmux::start("watch", &command);

    // The history replays and keeps growing.
    let screen = tmux.wait_for_screen("the replayed chart", chart_filled);
    assert!(screen.contains("loss · whole run"), "{screen}");

    // A key goes through the control spool and the run answers.
    tmux.keys("e");
    tmux.wait_for_screen("the evaluation", |s| s.contains("eval: evaluating at step"));
    crate::common::wait_for_event(&run, "eval_finished");

    // Quitting watch leaves the run alone: no question, no stop.
    tmux.keys("q");
    let screen = tmux.wait_for_screen("the exit", |s| s.contains("WATCH_EXIT="));
    assert!(screen.contains("WATCH_EXIT=0"), "{screen}");
    assert!(job.try_wait().unwrap().is_none(), "the run goes on");
    crate::common::signal(&job, "TERM");
    assert_eq!(
        crate::common::wait_exit(&mut job, Duration::from_mins(1)).code(),
        Some(0)
    );
}

#[test]
fn r_on_a_stalled_run_restarts_it_from_the_latest_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let binary = crate::common::program("trainui");
    // The fault hook stalls every process of this run at step 20; the
    // restarted one resumes from the checkpoint at 10 and stalls again.
    let command = format!(
        "cd {} && TRAINUI_FAULT=stall_at_step:20 {} --config config/tiny.json --run-dir {} \
         --set train.max_steps=1000000 --set eval.eval_steps=0 --set checkpoint.save_steps=10 \
         --set watchdog.stall_timeout_seconds=1; echo TRAINUI_EXIT=$?; sleep 120",
        repo().display(),
        binary.display(),
        run.display()
    );
    let tmux = Tmux::start("restart", &command);
    let screen = tmux.wait_for_screen("the stall banner", |s| s.contains("STALLED for"));
    assert!(screen.contains("r restarts from checkpoint-"), "{screen}");
    // The banner counts up.
    let stalled_for = |screen: &str| -> u64 {
        let at = screen.find("STALLED for 0:").unwrap() + "STALLED for ".len();
        let clock = &screen[at..at + 7];
        let parts: Vec<u64> = clock.split(':').map(|p| p.parse().unwrap()).collect();
        parts[0] * 3600 + parts[1] * 60 + parts[2]
    };
    let first = stalled_for(&screen);
    tmux.wait_for_screen("the banner two seconds on", |s| {
        s.contains("STALLED for 0:") && stalled_for(s) >= first + 2
    });
    tmux.keys("r");
    tmux.wait_for_screen("the question", |s| s.contains("Restart the stalled run?"));
    tmux.keys("y");
    wait_for("the restarted process", Duration::from_mins(2), || {
        events_of(&run, "started").len() == 2
    });
    let restarted = &events_of(&run, "started")[1];
    assert_eq!(restarted["start_step"], 10);
    assert!(
        restarted["resumed_from"]
            .as_str()
            .unwrap()
            .ends_with("checkpoint-10")
    );
    tmux.wait_for_screen("the new process's screen", |s| {
        s.contains("STALLED") || s.contains("TRAINING")
    });
    tmux.run(&["kill-server"]);
}

#[test]
fn watch_says_when_the_run_is_gone_and_sends_it_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut job = crate::common::tiny_run_std(
        &run,
        &[
            "train.max_steps=1000000",
            "eval.eval_steps=0",
            "checkpoint.save_steps=20",
        ],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn_for_test();
    crate::common::wait_for_event(&run, "checkpoint");
    let binary = crate::common::program("trainui");
    let command = format!("{} watch {}; sleep 120", binary.display(), run.display());
    let tmux = Tmux::start("gone", &command);
    tmux.wait_for_screen("the watched run", |s| s.contains("TRAINING"));

    crate::common::signal(&job, "KILL");
    let _ = job.wait();
    let screen = tmux.wait_for_screen("the gone banner", |s| s.contains("GONE since"));
    assert!(!screen.contains("TRAINING"), "{screen}");
    assert!(
        screen.contains("resume: trainui train --run-dir"),
        "{screen}"
    );

    // Its keys send nothing to a dead run: no command file is left behind.
    tmux.keys("e");
    let screen = tmux.wait_for_screen("the answer", |s| s.contains("process is gone"));
    assert!(screen.contains("resume with"), "{screen}");
    let left = std::fs::read_dir(run.join("control")).unwrap().count();
    assert_eq!(left, 0);
}

#[test]
fn watch_compares_a_folder_of_runs_and_steers_the_followed_one_only() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let (live, done) = (runs.join("a-live"), runs.join("b-done"));
    let finished = crate::common::tiny_run_std(&done, &["train.max_steps=30", "eval.eval_steps=0"])
        .output()
        .unwrap();
    assert!(finished.status.success(), "{finished:?}");
    let mut job = crate::common::tiny_run_std(
        &live,
        &[
            "train.max_steps=1000000",
            "eval.eval_steps=0",
            "eval.samples=1",
        ],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn_for_test();
    crate::common::wait_for_event(&live, "step");
    let binary = crate::common::program("trainui");
    let command = format!(
        "{} watch {}; echo WATCH_EXIT=$?; sleep 120",
        binary.display(),
        runs.display()
    );
    let tmux = Tmux::start("compare", &command);

    // Both runs: one chart, one table; the finished one says so.
    let screen = tmux.wait_for_screen("both runs", |s| {
        s.contains("2 of 2 runs") && s.contains("FINISHED") && s.contains("30/30")
    });
    assert!(screen.contains("▶ a-live 1/2"), "{screen}");
    assert!(screen.contains("b-done"), "{screen}");

    // `e` goes to the followed run, and says which.
    tmux.keys("e");
    tmux.wait_for_screen("the answer", |s| s.contains("sent: eval to a-live"));
    crate::common::wait_for_event(&live, "eval_finished");

    // Following the finished run: its panes, and no command for it.
    tmux.keys("Right");
    tmux.wait_for_screen("the other run", |s| s.contains("▶ b-done 2/2"));
    tmux.keys("e");
    tmux.wait_for_screen("the refusal", |s| s.contains("the run is finished"));
    assert!(
        !done.join("control").exists()
            || std::fs::read_dir(done.join("control")).unwrap().count() == 0,
        "nothing was sent to the finished run"
    );
    tmux.keys("v");
    tmux.wait_for_screen("its curve hidden", |s| s.contains("1 of 2 runs"));

    // The live run's process goes: its row says GONE.
    crate::common::signal(&job, "KILL");
    let _ = job.wait();
    tmux.wait_for_screen("the gone run", |s| s.contains("GONE"));
    tmux.keys("q");
    let screen = tmux.wait_for_screen("the exit", |s| s.contains("WATCH_EXIT="));
    assert!(screen.contains("WATCH_EXIT=0"), "{screen}");
    assert!(
        screen.contains("b-done finished at step 30/30"),
        "a farewell per run: {screen}"
    );
}

/// The command of `e` as each rank recorded it applied: (rank, step).
fn acks(run: &std::path::Path, command: &str) -> Vec<(u64, u64)> {
    (0..2)
        .flat_map(|rank| {
            std::fs::read_to_string(run.join(format!("ranks/rank-{rank}.jsonl")))
                .unwrap_or_default()
                .lines()
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .filter(|e| e["type"] == "command_ack" && e["command"] == command)
                .map(|e| (e["rank"].as_u64().unwrap(), e["step"].as_u64().unwrap()))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn trainui_run_shows_a_torchrun_job_whose_ranks_obey_its_keys() {
    let python = std::env::var("TRAINUI_PYTHON").expect("./dev test sets TRAINUI_PYTHON");
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("job");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let binary = crate::common::program("trainui");
    let command = format!(
        "cd {} && GLOO_SOCKET_IFNAME=lo {} run --run-dir {} -- {python} -m torch.distributed.run \
         --nproc-per-node 2 --master-addr 127.0.0.1 --master-port {port} \
         examples/torchrun_loop.py --max-steps 1000000 --eval-steps 1000000; \
         echo RUN_EXIT=$?; sleep 120",
        repo().display(),
        binary.display(),
        run.display()
    );
    let tmux = Tmux::start("run", &command);
    let screen = tmux.wait_for_screen("the job's chart", chart_filled);
    assert!(screen.contains("pytorch ×2"), "{screen}");

    // `e`: both ranks evaluate, at the same step.
    tmux.keys("e");
    tmux.wait_for_screen("the answer", |s| s.contains("eval: evaluating at step"));
    let mut evals = Vec::new();
    wait_for("both ranks' evaluation", Duration::from_mins(1), || {
        evals = acks(&run, "eval_now");
        evals.len() == 2
    });
    assert_eq!(evals[0].1, evals[1].1, "{evals:?}");

    // `q`, `y`: both ranks stop at the same step, and trainui exits with
    // the job's status once the job has saved and ended.
    tmux.keys("q");
    tmux.wait_for_screen("the quit question", |s| {
        s.contains("Stop training and quit?")
    });
    tmux.keys("y");
    let screen = tmux.wait_for_screen("the exit", |s| s.contains("RUN_EXIT="));
    assert!(screen.contains("RUN_EXIT=0"), "{screen}");
    let stops = acks(&run, "stop");
    assert_eq!(stops.len(), 2, "{stops:?}");
    assert_eq!(stops[0].1, stops[1].1, "{stops:?}");
    let step = stops[0].1;
    assert!(run.join(format!("checkpoints/checkpoint-{step}")).is_dir());
    assert!(!events_of(&run, "finished").is_empty());
}

#[test]
fn quit_at_once_leaves_a_true_final_state_and_a_c_locale_screen_is_ascii() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let binary = crate::common::program("trainui");
    // A generation that only ends by its deadline holds the run in
    // `evaluating` when `q` `q` quits.
    let command = format!(
        "cd {} && LC_ALL=C {} --config config/tiny.json --run-dir {} --set train.max_steps=1000000 \
         --set eval.eval_steps=0 --set eval.samples=1 --set eval.eval_timeout_seconds=120 \
         --set eval.min_new_tokens=1000000 --set eval.max_new_tokens=1000000 \
         --set checkpoint.save_steps=10; echo TRAINUI_EXIT=$?; sleep 120",
        repo().display(),
        binary.display(),
        run.display()
    );
    let tmux = Tmux::start("quitnow", &command);
    let screen = tmux.wait_for_screen("the training screen", |s| {
        s.contains("TRAINING") && s.contains("###")
    });
    assert!(screen.is_ascii(), "{screen}");
    assert!(screen.contains("+ loss | whole run"), "{screen}");
    crate::common::wait_for_event(&run, "checkpoint");
    tmux.keys("e");
    tmux.wait_for_screen("a generation", |s| s.contains("generating 1/1"));
    tmux.keys("q");
    tmux.wait_for_screen("the quit question", |s| {
        s.contains("Stop training and quit?")
    });
    tmux.keys("q");
    let screen = tmux.wait_for_screen("the exit", |s| s.contains("TRAINUI_EXIT="));
    assert!(screen.contains("TRAINUI_EXIT=130"), "{screen}");
    let joined = screen.replace('\n', "");
    assert!(
        joined.contains("quit at once at step") && joined.contains("without saving"),
        "{screen}"
    );
    let status: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("status/training_status.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(status["state"], "stopped", "{status}");
    let message = status["last_message"].as_str().unwrap();
    assert!(message.contains("quit at once"), "{message}");
    assert!(!events_of(&run, "finished").is_empty());
}

#[test]
fn a_terminal_that_closes_stops_and_saves_the_run_with_a_true_final_state() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let binary = crate::common::program("trainui");
    let command = format!(
        "cd {} && {} --config config/tiny.json --run-dir {} --set train.max_steps=1000000 \
         --set eval.eval_steps=0; sleep 120",
        repo().display(),
        binary.display(),
        run.display()
    );
    let tmux = Tmux::start("hangup", &command);
    tmux.wait_for_screen("the training screen", chart_filled);
    // The window closes: the terminal hangs up under the TUI.
    tmux.run(&["kill-server"]);
    wait_for("the final state", Duration::from_mins(1), || {
        crate::common::status(&run)["state"] == "stopped"
    });
    let step = crate::common::status(&run)["current_step"]
        .as_u64()
        .unwrap();
    assert!(run.join(format!("checkpoints/checkpoint-{step}")).is_dir());
}

impl Tmux {
    /// The pane's text with wrapped lines joined (a long message is one line).
    fn joined(&self) -> String {
        self.run(&["capture-pane", "-p", "-J", "-t", "tui"])
    }

    fn title(&self) -> String {
        self.run(&["display-message", "-p", "-t", "tui", "#{pane_title}"])
            .trim()
            .to_owned()
    }
}

#[test]
fn q_y_twice_ends_a_job_that_ignores_its_stop_and_its_signals_with_its_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("stubborn");
    // The job reads no commands and ignores SIGINT and SIGTERM, as does the
    // child it starts in its process group.
    let script = dir.path().join("stubborn.sh");
    std::fs::write(
        &script,
        "trap '' INT TERM\nsleep 1000 &\necho $! > \"$TRAINUI_RUN_DIR/child.pid\"\n\
         echo $$ > \"$TRAINUI_RUN_DIR/job.pid\"\nwait\n",
    )
    .unwrap();
    let binary = crate::common::program("trainui");
    let command = format!(
        "{} run --run-dir {} -- sh {}; echo RUN_EXIT=$?; sleep 120",
        binary.display(),
        run.display(),
        script.display()
    );
    let tmux = Tmux::start("stubborn", &command);
    let mut pids = [0u32; 2];
    wait_for("the job and its child", Duration::from_mins(1), || {
        for (pid, file) in pids.iter_mut().zip(["job.pid", "child.pid"]) {
            *pid = std::fs::read_to_string(run.join(file))
                .ok()
                .and_then(|text| text.trim().parse().ok())
                .unwrap_or(0);
        }
        pids.iter().all(|&pid| pid != 0)
    });
    tmux.wait_for_screen("the job's screen", |s| s.contains("stubborn"));
    tmux.keys("q");
    tmux.wait_for_screen("the quit question", |s| {
        s.contains("Stop training and quit?") && s.contains("SIGKILL 10 s later")
    });
    tmux.keys("y");
    tmux.wait_for_screen("the stop sent", |s| s.contains("q y again ends it now"));
    std::thread::sleep(Duration::from_secs(1));
    assert!(!gone(pids[0]) && !gone(pids[1]), "the job goes on");
    tmux.keys("q");
    let screen = tmux.wait_for_screen("the second question", |s| {
        s.contains("The job was asked to stop and goes on.")
    });
    assert!(
        screen.contains("SIGKILL to the group 10 s later"),
        "{screen}"
    );
    let asked = std::time::Instant::now();
    tmux.keys("y");
    tmux.wait_for_screen("the exit", |s| s.contains("RUN_EXIT="));
    let waited = asked.elapsed();
    let said = tmux.joined();
    assert!(said.contains("RUN_EXIT=137"), "{said}");
    assert!(
        waited >= Duration::from_secs(9),
        "after the grace: {waited:?}"
    );
    assert!(
        said.contains(&format!(
            "quitting now: SIGTERM to the job's process group (pgid {}); SIGKILL to it in 10 s \
             if it has not ended",
            pids[0]
        )),
        "{said}"
    );
    assert!(
        said.contains(&format!(
            "the job has not ended in 10 s: SIGKILL to its process group (pgid {})",
            pids[0]
        )),
        "{said}"
    );
    wait_for(
        "the job's group to be gone",
        Duration::from_secs(10),
        || gone(pids[0]) && gone(pids[1]),
    );
}

#[test]
fn a_crafted_run_name_neither_retitles_the_pane_nor_reaches_the_terminal_raw() {
    use trainui_protocol::events::{Event, RunInfo, RunState, Summary};
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("crafted");
    std::fs::create_dir(&run).unwrap();
    let name = "x\x1b]2;PWNED\x07\x1b]52;c;cm0gLXJmIH4K\x07\u{202e}y";
    let events = [
        Event::Started(Box::new(RunInfo::new(name, 10))),
        Event::Warning {
            step: 0,
            message: "\x1b[2J\x1b]2;WARNED\x07".into(),
        },
        Event::Finished(Summary {
            step: 10,
            max_steps: 10,
            state: RunState::Finished,
            loss: Some(0.5),
            elapsed_secs: 3.0,
        }),
    ];
    let lines: String = events
        .iter()
        .map(|event| serde_json::to_string(event).unwrap() + "\n")
        .collect();
    std::fs::write(run.join("events.jsonl"), lines).unwrap();
    let binary = crate::common::program("trainui");
    let command = format!(
        "{} watch {}; echo WATCH_EXIT=$?; sleep 120",
        binary.display(),
        run.display()
    );
    let tmux = Tmux::start("crafted", &command);
    let before = tmux.title();
    let screen = tmux.wait_for_screen("the crafted run", |s| s.contains("FINISHED"));
    assert!(
        screen.contains("x\\x1b]2;PWNED\\x07\\x1b]52;c;cm0gLXJmIH4K\\x07\\u{202e}y"),
        "{screen}"
    );
    tmux.keys("q");
    tmux.wait_for_screen("the exit", |s| s.contains("WATCH_EXIT="));
    let said = tmux.joined();
    assert!(said.contains("WATCH_EXIT=0"), "{said}");
    // The farewell names the run escaped, on one line.
    assert!(
        said.contains(
            "x\\x1b]2;PWNED\\x07\\x1b]52;c;cm0gLXJmIH4K\\x07\\u{202e}y finished at step 10/10"
        ),
        "{said}"
    );
    let title = tmux.title();
    assert!(
        !title.contains("PWNED") && !title.contains("WARNED") && title == before,
        "the pane was retitled: {title:?} (was {before:?})"
    );
}
