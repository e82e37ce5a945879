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

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::io::{IsTerminal, Read, Write};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crate::alerts::{self, AlertCommand};
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
use trainui_protocol::text;
use trainui_protocol::watchdog::STALL_EXIT_CODE;

/// The file in the run directory that takes the job's stdout and stderr.
pub const JOB_OUTPUT: &str = rundir::JOB_OUTPUT_FILE;
/// The variable that tells the job where its run directory is.
pub const RUN_DIR_VAR: &str = "TRAINUI_RUN_DIR";
/// On a relaunch after a stall: which one it is (1 for the first).
pub const RESTART_VAR: &str = "TRAINUI_RESTART";
/// On a relaunch after a stall: the checkpoint to resume from, the newest
/// one the run's events name that is still on disk (unset when there is
/// none: the job starts over).
pub const RESUME_CHECKPOINT_VAR: &str = "TRAINUI_RESUME_CHECKPOINT";
/// `exit` under `--restart-on-stall`: the job's watchdog ends a stalled job
/// with [`STALL_EXIT_CODE`], so that trainui can relaunch it.
pub const ON_STALL_VAR: &str = "TRAINUI_ON_STALL";
/// `0`: the job prints no log lines of its own; trainui prints them from
/// the job's events (once, on its own output).
pub const PRINT_LINES_VAR: &str = "TRAINUI_PRINT_LINES";
/// `launcher` when trainui runs `alerts.command` for the job's events: the
/// job's own alerts stay quiet, so that nothing is told twice.
pub const ALERTS_VAR: &str = "TRAINUI_ALERTS";
/// How often a grace period looks whether the job has ended.
const ENDED_POLL: Duration = Duration::from_millis(50);
/// How long the end of a job waits for the last of its output to be
/// passed on (a process the job left behind may hold its pipes open).
const OUTPUT_GRACE: Duration = Duration::from_secs(1);
/// Checkpoints remembered from the job's events, newest last: a relaunch
/// takes the newest still on disk.
const CHECKPOINTS_KEPT: usize = 32;

/// Runs the job to its end (and again after each stall, as asked) and
/// returns its exit status.
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
    let tui = !args.no_tui && std::io::stdout().is_terminal();
    let launch = Launch {
        command: args.command.clone(),
        run_dir: run_dir.clone(),
        pass_through: !tui,
        alerts_by_launcher: args.alerts_command.is_some(),
        exit_on_stall: args.restart_on_stall > 0,
    };
    let first = launch.start(None)?;
    let ender = Arc::new(Ender::new(first.child.id()));
    // The job's end goes to the caller, and to the screen as a notice.
    let (status_sender, exit_status) = mpsc::channel();
    let (notices, notices_received) = mpsc::channel();
    let job_notices = notices.clone();
    let job_ender = Arc::clone(&ender);
    let restarts = args.restart_on_stall;
    thread::Builder::new()
        .name("job".into())
        .spawn(move || {
            let status = launch.until_the_end(first, restarts, &job_ender);
            job_ender.ended.store(true, Ordering::SeqCst);
            let _ = job_notices.send(Liveness::JobEnded(status));
            let _ = status_sender.send(status);
        })
        .map_err(|e| Error::Failed(format!("cannot wait for the job: {e}")))?;
    pass_on_signals(&ender, &run_dir)?;
    let mut alerts = args.alerts_command.clone().map(|command| {
        JobAlerts::new(AlertCommand::new(
            command,
            args.alerts_timeout.duration(),
            run_dir.clone(),
        ))
    });
    let status = if tui {
        show(
            &run_dir,
            &ender,
            args.plain,
            &exit_status,
            (notices, &notices_received),
            alerts.as_mut(),
            args.restart_on_stall,
        )
    } else {
        print_lines(&run_dir, args.plain, &exit_status, alerts.as_mut())
    }?;
    ender.finish();
    if let Some(alerts) = alerts.as_mut() {
        alerts.settle();
    }
    Ok(status)
}

/// How the job is started, the first time and after each stall.
struct Launch {
    command: Vec<String>,
    run_dir: PathBuf,
    /// The job's output also goes to trainui's own stdout and stderr, as a
    /// command's output does (no TUI to show it in).
    pass_through: bool,
    /// trainui runs `alerts.command` for the job (see [`ALERTS_VAR`]).
    alerts_by_launcher: bool,
    /// A stall ends the job, which is then relaunched (see [`ON_STALL_VAR`]).
    exit_on_stall: bool,
}

/// A started job, and the threads that pass its output on.
struct Started {
    child: Child,
    /// Closed when every thread passing on the job's output is done.
    output_done: Option<mpsc::Receiver<()>>,
}

impl Launch {
    /// Starts the job: `restart` names the stall it follows, with the
    /// checkpoint to resume from, if any.
    fn start(&self, restart: Option<(u32, Option<&Path>)>) -> Result<Started> {
        let Some((program, args)) = self.command.split_first() else {
            return Err(Error::Usage(
                "run needs a command, e.g. trainui run -- torchrun --nproc-per-node 2 train.py"
                    .into(),
            ));
        };
        let output_path = self.run_dir.join(JOB_OUTPUT);
        // Not writable by others whatever the umask; never through a link,
        // and never a FIFO or a device (which would block or swallow the
        // output).
        let output = rundir::open_own(
            &output_path,
            OpenOptions::new().create(true).append(true),
            0o644,
        )?;
        let mut command = std::process::Command::new(program);
        command
            .args(args)
            .env(RUN_DIR_VAR, &self.run_dir)
            .env(PRINT_LINES_VAR, "0")
            .env_remove(RESTART_VAR)
            .env_remove(RESUME_CHECKPOINT_VAR)
            .stdin(Stdio::null())
            // Its own process group: a Ctrl-C at the terminal reaches the
            // job once, through trainui, not twice (a second one means "at
            // once").
            .process_group(0);
        // Python writes its output as it comes, not in blocks, so that the
        // screen and the log are current (unless the job's caller chose).
        if std::env::var_os("PYTHONUNBUFFERED").is_none() {
            command.env("PYTHONUNBUFFERED", "1");
        }
        if self.alerts_by_launcher {
            command.env(ALERTS_VAR, "launcher");
        }
        if self.exit_on_stall {
            command.env(ON_STALL_VAR, "exit");
        }
        if let Some((number, checkpoint)) = restart {
            command.env(RESTART_VAR, number.to_string());
            if let Some(checkpoint) = checkpoint {
                command.env(RESUME_CHECKPOINT_VAR, checkpoint);
            }
        }
        let cannot_start =
            |e: std::io::Error| Error::Usage(format!("cannot start {program:?}: {e}"));
        if !self.pass_through {
            let errors = output
                .try_clone()
                .map_err(Error::io("cannot open", &output_path))?;
            let child = command
                .stdout(output)
                .stderr(errors)
                .spawn()
                .map_err(cannot_start)?;
            return Ok(Started {
                child,
                output_done: None,
            });
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(cannot_start)?;
        let (done, output_done) = mpsc::channel();
        let log = Arc::new(Mutex::new(output));
        if let Some(stdout) = child.stdout.take() {
            pass_on(
                stdout,
                Box::new(std::io::stdout()),
                Arc::clone(&log),
                done.clone(),
            );
        }
        if let Some(stderr) = child.stderr.take() {
            pass_on(stderr, Box::new(std::io::stderr()), log, done);
        }
        Ok(Started {
            child,
            output_done: Some(output_done),
        })
    }

    /// Waits for the job; relaunches it after a stall while `restarts`
    /// allow and the operator has not asked it to end. Returns the exit
    /// status of its last run.
    fn until_the_end(&self, mut job: Started, restarts: u32, ender: &Arc<Ender>) -> i32 {
        let mut seen = SeenEvents::new(&self.run_dir);
        let mut restarted = 0;
        loop {
            let status = job.child.wait().map_or(1, exit_code);
            if let Some(output_done) = job.output_done.take() {
                // Every sender gone (Err(Disconnected)) or the grace over.
                let _ = output_done.recv_timeout(OUTPUT_GRACE);
            }
            seen.read();
            let stalled = status == STALL_EXIT_CODE || (status != 0 && seen.stalled);
            if !stalled || restarted >= restarts || ender.asked_to_end() {
                return status;
            }
            restarted += 1;
            // What the stalled job left (a hung worker) goes with it.
            if group_lives(ender.group()) {
                let _ = process::signal_group(ender.group(), signal_hook::consts::SIGKILL);
            }
            let checkpoint = seen.latest_checkpoint();
            let from = checkpoint.as_ref().map_or_else(
                || "from the start (no checkpoint on disk)".to_owned(),
                |path| format!("from {}", path.display()),
            );
            ender.say_aside(format!(
                "the job stalled (exit status {status}): restarting it ({restarted} of {restarts}) \
                 {from}"
            ));
            match self.start(Some((restarted, checkpoint.as_deref()))) {
                Ok(next) => {
                    ender.restarted(next.child.id());
                    job = next;
                }
                Err(err) => {
                    ender.say_aside(format!("cannot restart the job: {err}"));
                    return status;
                }
            }
        }
    }
}

/// Copies the job's `pipe` to `terminal` (every line escaped: the job's
/// output is data) and to the job's log as it is, until the job closes it.
fn pass_on(
    mut pipe: impl Read + Send + 'static,
    mut terminal: Box<dyn Write + Send>,
    log: Arc<Mutex<std::fs::File>>,
    done: mpsc::Sender<()>,
) {
    let copier = move || {
        let mut buffer = vec![0; 64 << 10];
        let mut line = Vec::new();
        loop {
            let read = match pipe.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => read,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            let chunk = &buffer[..read];
            if let Ok(mut log) = log.lock() {
                let _ = log.write_all(chunk);
            }
            line.extend_from_slice(chunk);
            // Whole lines go on; a line longer than the buffer goes in parts.
            let cut = match line.iter().rposition(|&b| b == b'\n') {
                Some(end) => end + 1,
                None if line.len() >= buffer.len() => line.len(),
                None => continue,
            };
            let _ = terminal.write_all(shown_output(&line[..cut]).as_bytes());
            let _ = terminal.flush();
            line.drain(..cut);
        }
        if !line.is_empty() {
            let _ = terminal.write_all(shown_output(&line).as_bytes());
            let _ = terminal.write_all(b"\n");
        }
        let _ = terminal.flush();
        drop(done);
    };
    if let Err(err) = thread::Builder::new()
        .name("job-output".into())
        .spawn(copier)
    {
        process::say(format!("warning: cannot pass the job's output on: {err}"));
    }
}

/// The job's output as a terminal may show it: each line with what could
/// drive the terminal escaped, a tab as spaces, and of a line a carriage
/// return rewrote (a progress bar) only what it shows last.
fn shown_output(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut shown = String::with_capacity(text.len());
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            shown.push('\n');
        }
        let line = line.strip_suffix('\r').unwrap_or(line);
        let last = line.rsplit('\r').next().unwrap_or(line);
        shown.push_str(&text::escape(&last.replace('\t', "    ")));
    }
    shown
}

/// What the job's events said so far that a relaunch needs: whether it
/// stalled (and did not recover), and its checkpoints.
struct SeenEvents {
    tail: EventTail,
    stalled: bool,
    checkpoints: VecDeque<PathBuf>,
}

impl SeenEvents {
    fn new(run_dir: &Path) -> Self {
        Self {
            tail: EventTail::new(run_dir, 0),
            stalled: false,
            checkpoints: VecDeque::new(),
        }
    }

    /// Reads the events written since the last call.
    fn read(&mut self) {
        loop {
            let batch = self.tail.read_new(4 << 20);
            if batch.is_empty() {
                return;
            }
            for event in batch {
                match event {
                    Event::Stalled { .. } => self.stalled = true,
                    Event::Recovered { .. } | Event::Started(_) => self.stalled = false,
                    Event::Checkpoint { path, .. } => {
                        if self.checkpoints.len() == CHECKPOINTS_KEPT {
                            self.checkpoints.pop_front();
                        }
                        self.checkpoints.push_back(PathBuf::from(path));
                    }
                    _ => {}
                }
            }
        }
    }

    /// The newest checkpoint still on disk (a checkpoint limit may have
    /// removed the older ones).
    fn latest_checkpoint(&self) -> Option<PathBuf> {
        self.checkpoints
            .iter()
            .rev()
            .find(|path| path.exists())
            .cloned()
    }
}

/// `alerts.command` for the job's events.
struct JobAlerts {
    command: AlertCommand,
    run_name: String,
}

impl JobAlerts {
    fn new(command: AlertCommand) -> Self {
        Self {
            command,
            run_name: String::new(),
        }
    }

    /// Runs the command for `event` when it raises an alert; says what
    /// failed since the last call.
    fn event(&mut self, event: &Event) -> Option<String> {
        if let Event::Started(info) = event {
            self.run_name.clone_from(&info.run_name);
        }
        if let Some(alert) = alerts::of(event, &self.run_name) {
            self.command
                .start(&alert, &rundir::event_line(event, SystemTime::now()));
        }
        let failures = self.command.failures();
        (!failures.is_empty()).then(|| failures.join("; "))
    }

    /// Waits for the commands still running, and says what failed.
    fn settle(&mut self) {
        self.command.settle();
        for failure in self.command.failures() {
            process::say(format!("warning: {failure}"));
        }
    }
}

/// Ends the job when the operator asked more than once: says what it does,
/// on the screen while the TUI is up and on stderr otherwise, and kills
/// the job's process group after a grace period.
struct Ender {
    /// The job's pid, which names its process group (a relaunch's, after
    /// a stall).
    group: AtomicU32,
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
            group: AtomicU32::new(group),
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

    /// Says `text` as news, not as an alarm: on the screen while the TUI
    /// has it, on stderr otherwise.
    fn say_aside(&self, text: String) {
        let screen = self.screen.lock().ok().and_then(|screen| screen.clone());
        match screen {
            Some(screen) => {
                if let Err(mpsc::SendError(Liveness::Restarting(text))) =
                    screen.send(Liveness::Restarting(text))
                {
                    process::say(text);
                }
            }
            None => process::say(text),
        }
    }

    /// The job's process group now.
    fn group(&self) -> u32 {
        self.group.load(Ordering::SeqCst)
    }

    /// The operator asked the job to end (a signal to trainui, `q` `q`):
    /// a stall then ends it too, with no relaunch.
    fn asked_to_end(&self) -> bool {
        self.asked.load(Ordering::SeqCst) > 0 || self.scheduled.load(Ordering::SeqCst)
    }

    /// The job was relaunched as `group`.
    fn restarted(&self, group: u32) {
        self.group.store(group, Ordering::SeqCst);
        self.ended.store(false, Ordering::SeqCst);
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
                self.group()
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
                self.group(),
                JOB_KILL_AFTER.as_secs()
            ));
        }
        let _ = process::signal(self.group(), signal);
    }

    /// Ends the job at once, as `q` `q` asks: SIGTERM to its process group,
    /// SIGKILL to the group after the grace period if it is still there.
    fn end_now(self: &Arc<Self>) {
        self.kill_later(&format!(
            "quitting now: SIGTERM to the job's process group (pgid {}); SIGKILL to it in \
             {} s if it has not ended",
            self.group(),
            JOB_KILL_AFTER.as_secs()
        ));
        let _ = process::signal_group(self.group(), signal_hook::consts::SIGTERM);
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
                        ender.group()
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
        let _ = process::signal_group(self.group(), signal_hook::consts::SIGKILL);
    }

    /// After the job's end: when its end was asked for more than once and
    /// it ended before the kill, what is left of its process group
    /// (children that ignored the signals) is killed, once.
    fn finish(&self) {
        if !self.scheduled.load(Ordering::SeqCst)
            || self.killed.load(Ordering::SeqCst)
            || !group_lives(self.group())
            || self.killed.swap(true, Ordering::SeqCst)
        {
            return;
        }
        self.say(format!(
            "the job ended, processes of its group remain: SIGKILL to its process group \
             (pgid {})",
            self.group()
        ));
        let _ = process::signal_group(self.group(), signal_hook::consts::SIGKILL);
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
                        let _ = process::signal(ender.group(), signal);
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
    (notices, notices_received): (mpsc::Sender<Liveness>, &mpsc::Receiver<Liveness>),
    mut alerts: Option<&mut JobAlerts>,
    restarts_on_stall: u32,
) -> Result<i32> {
    let events = follow::follow(run_dir)
        .map_err(|e| Error::Failed(format!("cannot read the job's events: {e}")))?;
    let job = Arc::clone(ender);
    let watched =
        follow::liveness::watch_job_liveness(run_dir, move || job.group.load(Ordering::SeqCst))
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
    app.restarts_on_stall = Some(restarts_on_stall);
    app.view.ascii = !lines::unicode_wanted(plain);
    let mut record = |event: &Event| alerts.as_mut().and_then(|alerts| alerts.event(event));
    let mut send = |command: Command| match control::send(run_dir, &command) {
        Ok(_) => None,
        // A job that takes no commands (it does not speak the protocol)
        // is asked to stop as a terminal would ask it.
        Err(err) if command == Command::Stop => {
            let _ = process::signal(ender.group(), signal_hook::consts::SIGTERM);
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
            ender.group(),
            run_dir.join(JOB_OUTPUT).display()
        ));
    }
    exit_status
        .recv()
        .map_err(|_| Error::Failed("lost the job's exit status".into()))
}

/// Headless: the job's events as log lines, as `trainui train --no-tui`
/// prints them, until the job ends.
fn print_lines(
    run_dir: &Path,
    plain: bool,
    exit_status: &mpsc::Receiver<i32>,
    mut alerts: Option<&mut JobAlerts>,
) -> Result<i32> {
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
                if let Some(failed) = alerts.as_mut().and_then(|alerts| alerts.event(&event)) {
                    process::say(format!("warning: {failed}"));
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
