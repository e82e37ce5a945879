//! `trainui run -- COMMAND...`: starts a training job that speaks the
//! run-directory protocol (a Python script with the `trainui` package,
//! under `torchrun` or alone) with `TRAINUI_RUN_DIR` set, and shows it as
//! `trainui train` shows its own run: the TUI on a terminal, log lines
//! otherwise. The job's own output goes to `RUN_DIR/job_output.log`, out of
//! the TUI's way. SIGINT, SIGTERM and SIGHUP are passed on to the job;
//! SIGUSR1 and SIGUSR2 become the `eval_now` and `abort_generation` commands
//! (a launcher such as `torchrun` would die of them). trainui exits with
//! the job's exit status.
//!
//! The operator always has a way out. A job that goes on after a SIGINT or
//! SIGTERM (it ignores them, or hangs) is ended by a second one, or by `q`
//! `y` twice (or `q` `q`) in the TUI: trainui says what it does, and kills
//! the job's whole process group (the job runs in a group of its own, so
//! `torchrun`'s workers go with it) after a stated grace period,
//! [`JOB_KILL_AFTER`]; a third signal kills it at once.

use std::fs::OpenOptions;
use std::io::{IsTerminal, Write};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use crate::cli::RunArgs;
use crate::follow;
use crate::tui;
use crate::tui::app::{Exit, JOB_KILL_AFTER, Owner};
use crate::tui::process::Liveness;
use trainui_protocol::control;
use trainui_protocol::error::{Error, Result};
use trainui_protocol::events::{Command, Event};
use trainui_protocol::lines;
use trainui_protocol::process;
use trainui_protocol::rundir::{self, EventTail};

/// The file in the run directory that takes the job's stdout and stderr.
pub const JOB_OUTPUT: &str = "job_output.log";
/// The variable that tells the job where its run directory is.
pub const RUN_DIR_VAR: &str = "TRAINUI_RUN_DIR";
/// How often a grace period looks whether the job has ended.
const ENDED_POLL: Duration = Duration::from_millis(50);

/// Runs the job to its end and returns its exit status.
pub fn run(args: &RunArgs) -> Result<i32> {
    let run_dir = match &args.run_dir {
        Some(dir) => dir.clone(),
        None => default_run_dir(),
    };
    refuse_a_run(&run_dir)?;
    // Never writable by others, whatever the umask.
    rundir::create_dirs(&run_dir)
        .map_err(Error::io("cannot create the run directory", &run_dir))?;
    let run_dir = run_dir
        .canonicalize()
        .map_err(Error::io("cannot resolve", &run_dir))?;
    let mut child = spawn(&args.command, &run_dir)?;
    let ender = Arc::new(Ender::new(child.id()));
    // The job's end goes to the caller, and to the screen as a notice.
    let (status_sender, exit_status) = mpsc::channel();
    let (notices, notices_received) = mpsc::channel();
    let job_notices = notices.clone();
    let job_ender = Arc::clone(&ender);
    thread::Builder::new()
        .name("job".into())
        .spawn(move || {
            let status = child.wait().map_or(1, exit_code);
            job_ender.ended.store(true, Ordering::SeqCst);
            let _ = job_notices.send(Liveness::JobEnded(status));
            let _ = status_sender.send(status);
        })
        .map_err(|e| Error::Failed(format!("cannot wait for the job: {e}")))?;
    pass_on_signals(&ender, &run_dir)?;
    let status = if !args.no_tui && std::io::stdout().is_terminal() {
        show(
            &run_dir,
            &ender,
            args.plain,
            &exit_status,
            notices,
            &notices_received,
        )
    } else {
        print_lines(&run_dir, args.plain, &exit_status)
    }?;
    ender.finish();
    Ok(status)
}

/// Ends the job when the operator asked more than once: says what it does,
/// on the screen while the TUI is up and on stderr otherwise, and kills
/// the job's process group after a grace period.
struct Ender {
    /// The job's pid, which names its process group.
    group: u32,
    /// The job's process has ended (the group may outlive it).
    ended: AtomicBool,
    /// SIGINTs and SIGTERMs trainui was sent.
    asked: AtomicU32,
    /// The kill was scheduled: the group is killed when the grace ends.
    scheduled: AtomicBool,
    /// SIGKILL went to the group.
    killed: AtomicBool,
    /// Where to say things while the TUI is up.
    screen: Mutex<Option<mpsc::Sender<Liveness>>>,
}

impl Ender {
    fn new(group: u32) -> Self {
        Self {
            group,
            ended: AtomicBool::new(false),
            asked: AtomicU32::new(0),
            scheduled: AtomicBool::new(false),
            killed: AtomicBool::new(false),
            screen: Mutex::new(None),
        }
    }

    /// Says `text` to the operator: on the screen while the TUI has it, on
    /// stderr otherwise.
    fn say(&self, text: String) {
        let screen = self.screen.lock().ok().and_then(|screen| screen.clone());
        match screen {
            Some(screen) => {
                if let Err(mpsc::SendError(Liveness::Ending(text))) =
                    screen.send(Liveness::Ending(text))
                {
                    process::say(text);
                }
            }
            None => process::say(text),
        }
    }

    /// Shows what is said on the screen of `notices` (none: on stderr).
    fn speak_to(&self, notices: Option<mpsc::Sender<Liveness>>) {
        if let Ok(mut screen) = self.screen.lock() {
            *screen = notices;
        }
    }

    /// A SIGINT or SIGTERM to trainui: passed on to the job the first time
    /// and again the second, when the job's group is also killed after the
    /// grace period; the third kills it at once.
    fn asked(self: &Arc<Self>, signal: i32) {
        let name = signal_name(signal);
        let asked = self.asked.fetch_add(1, Ordering::SeqCst) + 1;
        if asked >= 3 && !self.ended.load(Ordering::SeqCst) {
            self.say(format!(
                "{name} again: SIGKILL to the job's process group (pgid {}) now",
                self.group
            ));
            self.kill();
            return;
        }
        // Scheduled before the signal goes on: a job that ends of it may
        // leave processes of its group, which are then killed.
        if asked == 2 && !self.ended.load(Ordering::SeqCst) {
            self.kill_later(&format!(
                "the job goes on after {name} (it ignores it, or hangs): SIGKILL to its \
                 process group (pgid {}) in {} s; {name} again kills it at once",
                self.group,
                JOB_KILL_AFTER.as_secs()
            ));
        }
        let _ = process::signal(self.group, signal);
    }

    /// Ends the job at once, as `q` `q` asks: SIGTERM to its process group,
    /// SIGKILL to the group after the grace period if it is still there.
    fn end_now(self: &Arc<Self>) {
        self.kill_later(&format!(
            "quitting now: SIGTERM to the job's process group (pgid {}); SIGKILL to it in \
             {} s if it has not ended",
            self.group,
            JOB_KILL_AFTER.as_secs()
        ));
        let _ = process::signal_group(self.group, signal_hook::consts::SIGTERM);
    }

    /// Says `announce` and kills the group when the grace period is over;
    /// when the job ends before, what is left of its group is killed then
    /// ([`Self::finish`]). Scheduled once.
    fn kill_later(self: &Arc<Self>, announce: &str) {
        if self.scheduled.swap(true, Ordering::SeqCst) {
            return;
        }
        self.say(announce.to_owned());
        let ender = Arc::clone(self);
        let deadline = Instant::now() + JOB_KILL_AFTER;
        let started = thread::Builder::new()
            .name("job-ender".into())
            .spawn(move || {
                while Instant::now() < deadline {
                    if ender.ended.load(Ordering::SeqCst) {
                        ender.finish();
                        return;
                    }
                    thread::sleep(ENDED_POLL);
                }
                if !ender.ended.load(Ordering::SeqCst) {
                    ender.say(format!(
                        "the job has not ended in {} s: SIGKILL to its process group (pgid {})",
                        JOB_KILL_AFTER.as_secs(),
                        ender.group
                    ));
                    ender.kill();
                }
            });
        if started.is_err() {
            // No thread for the grace period: no grace.
            self.kill();
        }
    }

    fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        let _ = process::signal_group(self.group, signal_hook::consts::SIGKILL);
    }

    /// After the job's end: when its end was asked for more than once and
    /// it ended before the kill, what is left of its process group
    /// (children that ignored the signals) is killed, once.
    fn finish(&self) {
        if !self.scheduled.load(Ordering::SeqCst)
            || self.killed.load(Ordering::SeqCst)
            || !group_lives(self.group)
            || self.killed.swap(true, Ordering::SeqCst)
        {
            return;
        }
        self.say(format!(
            "the job ended, processes of its group remain: SIGKILL to its process group \
             (pgid {})",
            self.group
        ));
        let _ = process::signal_group(self.group, signal_hook::consts::SIGKILL);
    }
}

/// Whether a living process (not a zombie) is in the process group `group`.
fn group_lives(group: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return process::signal_group(group, 0).is_ok();
    };
    entries.filter_map(std::result::Result::ok).any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // `pid (name) state ppid pgrp ...`: the name may hold anything.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("Z");
        let pgrp = fields.nth(1).and_then(|pgrp| pgrp.parse::<u32>().ok());
        pgrp == Some(group) && !matches!(state, "Z" | "X")
    })
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        signal_hook::consts::SIGINT => "SIGINT",
        signal_hook::consts::SIGTERM => "SIGTERM",
        signal_hook::consts::SIGHUP => "SIGHUP",
        _ => "a signal",
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
    // Not writable by others whatever the umask; never through a link, and
    // never a FIFO or a device (which would block or swallow the output).
    let output = rundir::open_own(
        &output_path,
        OpenOptions::new().create(true).append(true),
        0o644,
    )?;
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

fn pass_on_signals(ender: &Arc<Ender>, run_dir: &Path) -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
    let mut signals =
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2])
            .map_err(|e| Error::Failed(format!("cannot install signal handlers: {e}")))?;
    let run_dir = run_dir.to_owned();
    let ender = Arc::clone(ender);
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                let command = match signal {
                    SIGUSR1 => Command::EvalNow,
                    SIGUSR2 => Command::AbortGeneration,
                    SIGINT | SIGTERM => {
                        ender.asked(signal);
                        continue;
                    }
                    _ => {
                        let _ = process::signal(ender.group, signal);
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
    ender: &Arc<Ender>,
    plain: bool,
    exit_status: &mpsc::Receiver<i32>,
    notices: mpsc::Sender<Liveness>,
    notices_received: &mpsc::Receiver<Liveness>,
) -> Result<i32> {
    let events = follow::follow(run_dir)
        .map_err(|e| Error::Failed(format!("cannot read the job's events: {e}")))?;
    let watched = follow::liveness::watch_liveness(run_dir)
        .map_err(|e| Error::Failed(format!("cannot watch the job: {e}")))?;
    ender.speak_to(Some(notices.clone()));
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
    let mut app = follow::attached_app(run_dir, lines::colors_wanted(plain));
    app.owner = Owner::Job;
    app.view.ascii = !lines::unicode_wanted(plain);
    let mut record = |_: &Event| None;
    let mut send = |command: Command| match control::send(run_dir, &command) {
        Ok(_) => None,
        // A job that takes no commands (it does not speak the protocol)
        // is asked to stop as a terminal would ask it.
        Err(err) if command == Command::Stop => {
            let _ = process::signal(ender.group, signal_hook::consts::SIGTERM);
            Some(format!(
                "stop: SIGTERM passed on to the job; q y again ends it now (no command could \
                 be sent: {err})"
            ))
        }
        Err(err) => Some(err.to_string()),
    };
    let shown = tui::in_terminal(|terminal| {
        tui::run_sampled(
            terminal,
            &mut app,
            &mut tui::TerminalInput::default(),
            &events,
            Some(notices_received),
            &mut record,
            &mut send,
        )
    });
    ender.speak_to(None);
    shown?;
    process::say(app.farewell());
    if let Ok(status) = exit_status.try_recv() {
        return Ok(status);
    }
    if app.exit == Some(Exit::Now) {
        ender.end_now();
    } else {
        process::say(format!(
            "waiting for the job (pid {}) to end; its output is in {} (Ctrl-C passes SIGINT \
             on to it; twice ends it)",
            ender.group,
            run_dir.join(JOB_OUTPUT).display()
        ));
    }
    exit_status
        .recv()
        .map_err(|_| Error::Failed("lost the job's exit status".into()))
}

/// Headless: the job's events as log lines, as `trainui train --no-tui`
/// prints them, until the job ends.
fn print_lines(run_dir: &Path, plain: bool, exit_status: &mpsc::Receiver<i32>) -> Result<i32> {
    let style = lines::Style::detect(plain, std::io::stdout().is_terminal());
    let mut tail = EventTail::new(run_dir, 0);
    let mut out = std::io::stdout();
    let mut told = None;
    loop {
        let status = exit_status.recv_timeout(Duration::from_millis(200)).ok();
        // The job's last lines are on disk when it has ended.
        loop {
            let batch = tail.read_new(4 << 20);
            if tail.problem != told {
                told.clone_from(&tail.problem);
                if let Some(problem) = &told {
                    process::say(format!("warning: {problem}"));
                }
            }
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
