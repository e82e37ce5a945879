//! `trainui run -- COMMAND...`: starts a training job that speaks the
//! run-directory protocol (a Python script with the `trainui` package,
//! under `torchrun` or alone) with `TRAINUI_RUN_DIR` set, and shows it as
//! `trainui train` shows its own run: the TUI on a terminal, log lines
//! otherwise. The job's own output goes to `RUN_DIR/job_output.log`, out of
//! the TUI's way. SIGINT, SIGTERM and SIGHUP are passed on to the job;
//! SIGUSR1 and SIGUSR2 become the `eval_now` and `abort_generation` commands
//! (a launcher such as `torchrun` would die of them). trainui exits with
//! the job's exit status.

use std::fs::OpenOptions;
use std::io::{IsTerminal, Write};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crate::cli::RunArgs;
use crate::control;
use crate::error::{Error, Result};
use crate::events::{Command, Event};
use crate::lines;
use crate::process;
use crate::rundir::{self, EventTail};
use crate::tui;
use crate::tui::app::{Exit, Liveness, Owner};
use crate::watch;

/// The file in the run directory that takes the job's stdout and stderr.
pub const JOB_OUTPUT: &str = "job_output.log";
/// The variable that tells the job where its run directory is.
pub const RUN_DIR_VAR: &str = "TRAINUI_RUN_DIR";
/// How long a job asked to quit at once has before it is killed.
const KILL_AFTER: Duration = Duration::from_secs(10);

/// Runs the job to its end and returns its exit status.
pub fn run(args: &RunArgs) -> Result<i32> {
    let run_dir = match &args.run_dir {
        Some(dir) => dir.clone(),
        None => default_run_dir(),
    };
    refuse_a_run(&run_dir)?;
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o755)
        .create(&run_dir)
        .map_err(Error::io("cannot create the run directory", &run_dir))?;
    let run_dir = run_dir
        .canonicalize()
        .map_err(Error::io("cannot resolve", &run_dir))?;
    let mut child = spawn(&args.command, &run_dir)?;
    let pid = child.id();
    // The job's end goes to the caller, and to the screen as a notice.
    let (ended_sender, ended) = mpsc::channel();
    let (notices, notices_received) = mpsc::channel();
    let job_notices = notices.clone();
    thread::Builder::new()
        .name("job".into())
        .spawn(move || {
            let status = child.wait().map_or(1, exit_code);
            let _ = job_notices.send(Liveness::JobEnded(status));
            let _ = ended_sender.send(status);
        })
        .map_err(|e| Error::Failed(format!("cannot wait for the job: {e}")))?;
    pass_on_signals(pid, &run_dir)?;
    if !args.no_tui && std::io::stdout().is_terminal() {
        show(
            &run_dir,
            pid,
            args.plain,
            &ended,
            notices,
            &notices_received,
        )
    } else {
        print_lines(&run_dir, args.plain, &ended)
    }
}

fn default_run_dir() -> PathBuf {
    let now = rundir::now_rfc3339();
    // 2026-11-29T15:00:01.123Z -> 20261129-150001
    let stamp: String = now
        .chars()
        .take(19)
        .filter(char::is_ascii_digit)
        .enumerate()
        .flat_map(|(i, c)| (i == 8).then_some('-').into_iter().chain([c]))
        .collect();
    PathBuf::from(format!("runs/job-{stamp}"))
}

/// A job never trains over another run's files.
fn refuse_a_run(run_dir: &Path) -> Result<()> {
    for held in [rundir::EVENTS_FILE, "checkpoints"] {
        if run_dir.join(held).exists() {
            return Err(Error::Usage(format!(
                "{}: already holds a run ({held}); pick another --run-dir (nothing was touched)",
                run_dir.display()
            )));
        }
    }
    Ok(())
}

fn spawn(command: &[String], run_dir: &Path) -> Result<Child> {
    let Some((program, args)) = command.split_first() else {
        return Err(Error::Usage(
            "run needs a command, e.g. trainui run -- torchrun --nproc-per-node 2 train.py".into(),
        ));
    };
    let output_path = run_dir.join(JOB_OUTPUT);
    let output = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&output_path)
        .map_err(Error::io("cannot open", &output_path))?;
    let errors = output
        .try_clone()
        .map_err(Error::io("cannot open", &output_path))?;
    std::process::Command::new(program)
        .args(args)
        .env(RUN_DIR_VAR, run_dir)
        .stdin(Stdio::null())
        .stdout(output)
        .stderr(errors)
        // Its own process group: a Ctrl-C at the terminal reaches the job
        // once, through trainui, not twice (a second one means "at once").
        .process_group(0)
        .spawn()
        .map_err(|e| Error::Usage(format!("cannot start {program:?}: {e}")))
}

/// The shell's convention: the code, or 128 + the signal that ended it.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|signal| 128 + signal))
        .unwrap_or(1)
}

fn pass_on_signals(pid: u32, run_dir: &Path) -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
    let mut signals =
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2])
            .map_err(|e| Error::Failed(format!("cannot install signal handlers: {e}")))?;
    let run_dir = run_dir.to_owned();
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                let command = match signal {
                    SIGUSR1 => Command::EvalNow,
                    SIGUSR2 => Command::AbortGeneration,
                    _ => {
                        let _ = process::signal(pid, signal);
                        continue;
                    }
                };
                if let Err(err) = control::send(&run_dir, &command) {
                    process::say(format!("warning: {err}"));
                }
            }
        })
        .map_err(|e| Error::Failed(format!("cannot start the signal thread: {e}")))?;
    Ok(())
}

/// The TUI of the job until `q`; then waits for the job to end.
fn show(
    run_dir: &Path,
    pid: u32,
    plain: bool,
    ended: &mpsc::Receiver<i32>,
    notices: mpsc::Sender<Liveness>,
    notices_received: &mpsc::Receiver<Liveness>,
) -> Result<i32> {
    let events = watch::follow(run_dir)
        .map_err(|e| Error::Failed(format!("cannot read the job's events: {e}")))?;
    let watched = watch::watch_liveness(run_dir)
        .map_err(|e| Error::Failed(format!("cannot watch the job: {e}")))?;
    thread::Builder::new()
        .name("notices".into())
        .spawn(move || {
            for notice in watched {
                if notices.send(notice).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| Error::Failed(format!("cannot watch the job: {e}")))?;
    let mut app = watch::attached_app(run_dir, lines::colors_wanted(plain));
    app.owner = Owner::Job;
    app.ascii = !lines::unicode_wanted(plain);
    let mut record = |_: &Event| None;
    let mut send = |command: Command| {
        control::send(run_dir, &command)
            .err()
            .map(|e| e.to_string())
    };
    tui::in_terminal(|terminal| {
        tui::run_sampled(
            terminal,
            &mut app,
            &mut tui::TerminalInput::default(),
            &events,
            Some(notices_received),
            &mut record,
            &mut send,
        )
    })?;
    process::say(app.farewell());
    if let Ok(status) = ended.try_recv() {
        return Ok(status);
    }
    if app.exit == Some(Exit::Now) {
        process::say(format!("quitting now: SIGTERM to the job (pid {pid})"));
        let _ = process::signal(pid, signal_hook::consts::SIGTERM);
        if let Ok(status) = ended.recv_timeout(KILL_AFTER) {
            return Ok(status);
        }
        process::say(format!("the job did not end: SIGKILL to pid {pid}"));
        let _ = process::signal(pid, signal_hook::consts::SIGKILL);
    } else {
        process::say(format!(
            "waiting for the job (pid {pid}) to end; its output is in {}",
            run_dir.join(JOB_OUTPUT).display()
        ));
    }
    ended
        .recv()
        .map_err(|_| Error::Failed("lost the job's exit status".into()))
}

/// Headless: the job's events as log lines, as `trainui train --no-tui`
/// prints them, until the job ends.
fn print_lines(run_dir: &Path, plain: bool, ended: &mpsc::Receiver<i32>) -> Result<i32> {
    let style = lines::Style::detect(plain, std::io::stdout().is_terminal());
    let mut tail = EventTail::new(run_dir, 0);
    let mut out = std::io::stdout();
    loop {
        let status = ended.recv_timeout(Duration::from_millis(200)).ok();
        // The job's last lines are on disk when it has ended.
        loop {
            let batch = tail.read_new(4 << 20);
            if batch.is_empty() {
                break;
            }
            for event in batch {
                if let Some(line) = lines::format(&event, style) {
                    let _ = writeln!(out, "{}", line.colored);
                }
            }
        }
        if let Some(status) = status {
            let _ = out.flush();
            if status != 0 {
                process::say(format!(
                    "the job exited with status {status}; its output is in {}",
                    run_dir.join(JOB_OUTPUT).display()
                ));
            }
            return Ok(status);
        }
    }
}
