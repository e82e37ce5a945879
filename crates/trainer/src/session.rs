//! A training session: the trainer thread wired to the run directory, the
//! control spool, the stall watchdog, the signal handlers and one front end
//! (headless lines or the TUI). `trainui train` and `trainui bench` both run
//! through [`Session`].
//!
//! ```text
//!  keys / signals / control files ──► Controller ──► trainer thread
//!                                                        │ events
//!  watchdog, spool (their own events) ──────────────────►├──► Recorder: events.jsonl,
//!                                                        │     status file, log file
//!                                                        └──► front end: headless lines or TUI
//! ```

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use ratatui::Terminal;
use ratatui::backend::Backend;

use crate::checkpoint;
use crate::setup;
use crate::trainer::{self, TrainSetup, TrainerHandle};
use trainui::alerts::AlertCommand;
use trainui::cli::TrainArgs;
use trainui::headless;
use trainui::recorder::Recorder;
use trainui::tui::app::{App, Exit};
use trainui::tui::{self, InputSource, TerminalInput};
use trainui_protocol::channel::{Controller, Wiring};
use trainui_protocol::control::Spool;
use trainui_protocol::error::{Error, Result};
use trainui_protocol::events::{Command, Event, Phase, RunState, RunStatus, Summary};
use trainui_protocol::lines::Style;
use trainui_protocol::process;
use trainui_protocol::rundir::RunDir;
use trainui_protocol::runlock::RunLock;
use trainui_protocol::watchdog::{Heartbeat, Watchdog};

/// Which front end consumes the events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Front {
    Headless,
    Tui,
}

/// What a session runs besides the trainer.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub front: Front,
    /// The session is its process's own (`trainui train`, not the bench):
    /// signals steer the run, and a stall exit gives the terminal back from
    /// the TUI first.
    pub owns_process: bool,
}

/// How often the status file's GPU readings are taken.
const READINGS_EVERY: Duration = Duration::from_secs(5);

/// A trainer with its helpers, its run directory and its record.
pub struct Session {
    handle: TrainerHandle,
    recorder: Recorder,
    /// Held until the session ends: no other trainui trains here meanwhile.
    _lock: RunLock,
}

impl Session {
    /// Opens the run directory and starts the trainer, the control spool,
    /// the watchdog and (if asked) the signal handlers.
    /// Opens the run directory (taking its lock, unless `lock` holds it
    /// already) and starts the control spool, the trainer, the watchdog
    /// and (if asked) the signal handlers.
    pub fn start(setup: TrainSetup, options: Options, lock: Option<RunLock>) -> Result<Self> {
        let config = setup.config.clone();
        let lock = match lock {
            Some(lock) => lock,
            None => RunLock::take(&config.run_dir)?,
        };
        // Holding the lock, any checkpoint being written is a dead process's.
        checkpoint::remove_unfinished(&config.run_dir);
        let wiring = Wiring::default();
        let heartbeat = Arc::clone(&wiring.heartbeat);
        // The control folder is made and checked before the run writes a
        // file.
        Spool {
            run_dir: config.run_dir.clone(),
            controller: wiring.controller.clone(),
            events: wiring.event_sender(),
            heartbeat: Arc::clone(&heartbeat),
            config: config.clone(),
        }
        .spawn()?;
        let started = Self::start_trainer(setup, options, wiring);
        if started.is_err() {
            // Nothing to serve: the spool's thread ends.
            heartbeat.beat(Phase::Done);
        }
        let (handle, recorder) = started?;
        Ok(Self {
            handle,
            recorder,
            _lock: lock,
        })
    }

    /// The run directory, the trainer, the watchdog and the signals.
    fn start_trainer(
        setup: TrainSetup,
        options: Options,
        wiring: Wiring,
    ) -> Result<(TrainerHandle, Recorder)> {
        let config = &setup.config;
        // Before the run's own files: a folder it cannot write into leaves
        // no half-made run behind.
        let tensorboard = if config.tensorboard.enabled {
            let folder = config.run_dir.join(trainui::tensorboard::FOLDER);
            Some(trainui::tensorboard::Writer::create(
                &folder,
                std::time::SystemTime::now(),
            )?)
        } else {
            None
        };
        let status = RunStatus::new(setup.run_name.clone(), config.train.max_steps);
        let run = RunDir::open(&config.run_dir, config, status)?;
        let stall_recorded = Arc::new(AtomicBool::new(false));
        let watchdog = Watchdog {
            heartbeat: Arc::clone(&wiring.heartbeat),
            on_stall: config.watchdog.on_stall,
            events: wiring.event_sender(),
            stall_recorded: Arc::clone(&stall_recorded),
            before_exit: if options.owns_process && options.front == Front::Tui {
                tui::restore
            } else {
                || {}
            },
        };
        let alert_command = config.alerts.command.clone().map(|command| {
            AlertCommand::new(
                command,
                config.alerts.timeout_seconds.duration(),
                config.run_dir.clone(),
            )
        });
        let handle = trainer::spawn(setup, wiring)?;
        watchdog.spawn()?;
        if options.owns_process {
            install_signal_handlers(
                handle.controller.clone(),
                Arc::clone(&handle.heartbeat),
                options.front,
            )?;
        }
        // The machine's readings every few seconds, for the status file.
        let (readings_out, readings) = std::sync::mpsc::channel();
        let mut recorder = match trainui::tui::sampler::spawn(readings_out, READINGS_EVERY) {
            Ok(()) => Recorder::new(run, stall_recorded).with_readings(readings),
            Err(_) => Recorder::new(run, stall_recorded),
        };
        if let Some(command) = alert_command {
            recorder = recorder.with_alert_command(command);
        }
        if let Some(writer) = tensorboard {
            recorder = recorder.with_tensorboard(writer);
        }
        Ok((handle, recorder))
    }

    /// The trainer's heartbeat (its phase says when it is done).
    #[must_use]
    pub fn heartbeat(&self) -> Arc<Heartbeat> {
        Arc::clone(&self.handle.heartbeat)
    }

    /// The run as the status file shows it.
    #[must_use]
    pub fn status(&self) -> &RunStatus {
        self.recorder.run.status()
    }

    /// Seconds spent writing the run directory so far.
    #[must_use]
    pub fn record_secs(&self) -> f64 {
        self.recorder.busy.as_secs_f64()
    }

    /// Headless: records every event and prints its line to `out` until the
    /// run's events end.
    pub fn run_headless(&mut self, style: Style, out: &mut dyn Write) {
        headless::run(&self.handle.events, &mut self.recorder, style, out);
    }

    /// The TUI on `terminal`, with keys from `input`, until it exits.
    pub fn run_tui<B: Backend>(
        &mut self,
        terminal: &mut Terminal<B>,
        input: &mut dyn InputSource,
        app: &mut App,
    ) -> Result<Exit>
    where
        B::Error: std::fmt::Display,
    {
        let recorder = &mut self.recorder;
        let mut record = |event: &Event| recorder.record(event, Style::PLAIN).1;
        let controller = self.handle.controller.clone();
        let mut send = |command: Command| {
            controller.send(command);
            None
        };
        let events = &self.handle.events;
        tui::run_sampled(terminal, app, input, events, None, &mut record, &mut send)?;
        Ok(app.exit.unwrap_or(Exit::Done))
    }

    /// The TUI in this process's terminal until the user quits.
    pub fn run_tui_in_terminal(&mut self, app: &mut App) -> Result<Exit> {
        tui::in_terminal(|terminal| self.run_tui(terminal, &mut TerminalInput::default(), app))
    }

    /// Quit at once (`q` `q`): records the events that have arrived, then
    /// a warning and a final `stopped` state, so the status file does not
    /// stay at whatever the trainer was doing. Nothing is saved.
    pub fn record_quit_now(&mut self) {
        for event in self.handle.events.try_iter() {
            self.recorder.record(&event, Style::PLAIN);
        }
        let status = self.recorder.run.status();
        let step = status.current_step;
        let since = status
            .last_checkpoint
            .clone()
            .or_else(|| status.resumed_from.clone())
            .map_or_else(
                || "there is no checkpoint".to_owned(),
                |path| format!("the last checkpoint is {path}"),
            );
        let summary = Summary {
            step,
            max_steps: status.max_steps,
            state: RunState::Stopped,
            loss: status.loss,
            elapsed_secs: status.elapsed_secs,
        };
        for event in [
            Event::Warning {
                step,
                message: format!(
                    "quit at once from the TUI at step {step} without saving; {since}"
                ),
            },
            Event::Finished(summary),
        ] {
            self.recorder.record(&event, Style::PLAIN);
        }
    }

    /// Records what is left of the event stream (all of it when `wait`,
    /// else what has arrived), waits for the trainer thread, and turns the
    /// run's final state into the result: the run finished or was stopped
    /// on request, or why not.
    pub fn finish(mut self, wait: bool) -> Result<()> {
        if wait {
            for event in &self.handle.events {
                self.recorder.record(&event, Style::PLAIN);
            }
        } else {
            for event in self.handle.events.try_iter() {
                self.recorder.record(&event, Style::PLAIN);
            }
        }
        let _ = self.handle.thread.join();
        for failure in self.recorder.settle_alerts() {
            trainui_protocol::process::say(format!("warning: {failure}"));
        }
        let status = self.recorder.run.status();
        match status.state {
            RunState::Finished | RunState::Stopped => Ok(()),
            RunState::Failed => Err(Error::Failed(
                status
                    .last_message
                    .clone()
                    .unwrap_or_else(|| "the trainer failed".into()),
            )),
            other => Err(Error::Failed(format!(
                "the trainer ended without a final state (last state: {})",
                other.as_str()
            ))),
        }
    }
}

/// `trainui train`: checks everything, then trains with the TUI in a
/// terminal or headless otherwise.
pub fn train(args: &TrainArgs) -> Result<()> {
    let (setup, lock) = setup::prepare(args)?;
    let run_dir = setup.config.run_dir.clone();
    let max_steps = setup.config.train.max_steps;
    let stdout_is_terminal = std::io::stdout().is_terminal();
    let front = if !args.no_tui && stdout_is_terminal {
        Front::Tui
    } else {
        Front::Headless
    };
    if front == Front::Headless && !args.no_tui {
        process::say("stdout is not a terminal: running headless (--no-tui says so explicitly)");
    }
    let run_name = setup.run_name.clone();
    let mut session = Session::start(
        setup,
        Options {
            front,
            owns_process: true,
        },
        lock,
    )?;
    match front {
        Front::Headless => {
            let style = Style::detect(args.plain, stdout_is_terminal);
            session.run_headless(style, &mut std::io::stdout());
            session.finish(true)
        }
        Front::Tui => {
            let mut app = App::new(
                run_name,
                max_steps,
                trainui_protocol::lines::colors_wanted(args.plain),
            );
            app.view.ascii = !trainui_protocol::lines::unicode_wanted(args.plain);
            app.resume = Some(format!(
                "trainui train --run-dir {} --resume latest",
                run_dir.display()
            ));
            let exit = session.run_tui_in_terminal(&mut app);
            if exit.is_ok() {
                process::say(app.farewell());
            }
            match exit {
                Ok(Exit::Restart) => Err(restart_from_latest_checkpoint(&run_dir)),
                Ok(Exit::Now) if !session.status().state.is_final() => {
                    // Quit at once: the trainer is left mid-step, with the
                    // last checkpoint on disk; the run's files say so.
                    session.record_quit_now();
                    process::exit_now(130);
                }
                Ok(Exit::Now | Exit::Done) => session.finish(false),
                Err(err) => {
                    // The terminal is gone (closed, or it fails): the run
                    // stops and saves as on SIGHUP, recorded to its end.
                    process::say(format!("error: {err}; stopping the run"));
                    session.handle.controller.send(Command::Stop);
                    session.finish(true)
                }
            }
        }
    }
}

/// SIGINT, SIGTERM and SIGHUP (the terminal or SSH session closed): stop
/// after the current step (a running generation is aborted) and save; a
/// second SIGINT or SIGTERM exits at once. A SIGHUP that finds the trainer
/// stuck (silent for the stall timeout) exits then: nobody is left to see
/// the run. A SIGHUP ignored when the process started (`nohup`) stays
/// ignored. SIGUSR1: evaluate now. SIGUSR2: abort the running generation.
/// Under the TUI nothing is printed and an exit restores the terminal first.
fn install_signal_handlers(
    controller: Controller,
    heartbeat: Arc<Heartbeat>,
    front: Front,
) -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
    let mut wanted = vec![SIGINT, SIGTERM, SIGUSR1, SIGUSR2];
    if !ignored_at_start(SIGHUP) {
        wanted.push(SIGHUP);
    }
    let mut signals = signal_hook::iterator::Signals::new(wanted)
        .map_err(|e| Error::Failed(format!("cannot install signal handlers: {e}")))?;
    let tui = front == Front::Tui;
    let exit_now = move |signal: i32| -> ! {
        if tui {
            trainui::tui::restore();
        }
        process::exit_now(128 + signal)
    };
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut stops = 0;
            for signal in signals.forever() {
                match signal {
                    SIGUSR1 => controller.send(Command::EvalNow),
                    SIGUSR2 => controller.send(Command::AbortGeneration),
                    SIGHUP => {
                        controller.send(Command::Stop);
                        let heartbeat = Arc::clone(&heartbeat);
                        let _ =
                            std::thread::Builder::new()
                                .name("hangup".into())
                                .spawn(move || {
                                    loop {
                                        std::thread::sleep(std::time::Duration::from_secs(1));
                                        if heartbeat.silence() > heartbeat.stall_timeout() {
                                            exit_now(SIGHUP);
                                        }
                                    }
                                });
                    }
                    _ => {
                        stops += 1;
                        if stops > 1 {
                            if !tui {
                                process::say("second signal: exiting now");
                            }
                            exit_now(signal);
                        }
                        if !tui {
                            process::say(
                                "stopping after the current step (send the signal again to exit \
                                 now)",
                            );
                        }
                        controller.send(Command::Stop);
                    }
                }
            }
        })
        .map_err(|e| Error::Failed(format!("cannot start the signal thread: {e}")))?;
    Ok(())
}

/// The process started with `signal` ignored (SigIgn of /proc/self/status),
/// as `nohup` leaves SIGHUP.
fn ignored_at_start(signal: i32) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("SigIgn:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (signal - 1)) != 0)
}

/// Replaces this process with the same command resuming from the latest
/// checkpoint of `run_dir`. Works even when the trainer thread is stuck in a
/// call that never returns. Returns only if the exec failed.
fn restart_from_latest_checkpoint(run_dir: &Path) -> Error {
    use std::os::unix::process::CommandExt;
    let args = resume_args(std::env::args_os().skip(1), run_dir);
    let program = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("trainui"));
    let err = std::process::Command::new(program).args(args).exec();
    Error::Failed(format!("cannot restart with --resume auto: {err}"))
}

/// `args` without any `--resume` or `--run-dir`, then `--run-dir RUN_DIR
/// --resume auto`.
fn resume_args(args: impl Iterator<Item = OsString>, run_dir: &Path) -> Vec<OsString> {
    let mut kept = Vec::new();
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        if text == "--resume" || text == "--run-dir" {
            args.next();
        } else if !text.starts_with("--resume=") && !text.starts_with("--run-dir=") {
            kept.push(arg);
        }
    }
    kept.extend([
        "--run-dir".into(),
        run_dir.as_os_str().to_owned(),
        "--resume".into(),
        "auto".into(),
    ]);
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_resumes_the_same_run_from_its_latest_checkpoint() {
        let args = [
            "train",
            "--resume",
            "runs/x/checkpoints/checkpoint-5",
            "--set",
            "a=1",
        ]
        .map(OsString::from)
        .into_iter()
        .chain(["--run-dir=runs/y".into(), "--no-tui".into()]);
        let got = resume_args(args, Path::new("/abs/runs/x"));
        let expected = [
            "train",
            "--set",
            "a=1",
            "--no-tui",
            "--run-dir",
            "/abs/runs/x",
            "--resume",
            "auto",
        ];
        assert_eq!(got, expected.map(OsString::from));
    }
}

/// `trainui watch` against the in-process TUI, on the same run.
#[cfg(test)]
mod watch_tests {
    use std::time::Duration;

    use trainui::follow::{attached_app, follow};
    use trainui::tui::{self, app::App};
    use trainui_protocol::events::{Command, Event};
    use trainui_protocol::rundir;

    fn screen(app: &App) -> ratatui::buffer::Buffer {
        let backend = ratatui::backend::TestBackend::new(100, 30);
        let mut terminal = ratatui::Terminal::new(backend).unwrap();
        terminal
            .draw(|frame| tui::render::render(frame, app))
            .unwrap();
        terminal.backend().buffer().clone()
    }

    #[test]
    fn watch_shows_the_same_history_as_the_in_process_tui() {
        use crate::trainer::{
            self,
            tests::{demo_val, tiny_setup},
        };
        use trainui_protocol::events::RunStatus;
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path().join("run");
        let sets = [
            "train.max_steps=60",
            "train.log_steps=5",
            "eval.eval_steps=20",
            "eval.samples=2",
        ];
        let setup = tiny_setup(&run_dir, &sets, demo_val());
        let status = RunStatus::new("run".into(), 60);
        let mut run = rundir::RunDir::open(&run_dir, &setup.config, status).unwrap();
        let handle = trainer::spawn(setup, trainui_protocol::channel::Wiring::default()).unwrap();
        // A live change (`ctl set`) reaches both through the event stream.
        handle
            .controller
            .send(Command::Set(std::collections::BTreeMap::from([(
                "eval.timeout_warn_rate".to_owned(),
                0.5.into(),
            )])));
        let mut live = App::new("run".into(), 0, false);
        // Only the trainer's own screen shows its process's memory (a
        // watcher's is not the run's): the rest is the same.
        live.owner = trainui::tui::app::Owner::Watcher;
        for event in &handle.events {
            run.record(&event).unwrap();
            live.apply(&event);
        }
        handle.thread.join().unwrap();

        let mut watched = attached_app(&run_dir, false);
        let events = follow(&run_dir).unwrap();
        loop {
            let (event, _) = events.recv_timeout(Duration::from_secs(30)).unwrap();
            watched.apply(&event);
            if matches!(event, Event::Finished(_)) {
                break;
            }
        }
        let (live_screen, watched_screen) = (screen(&live), screen(&watched));
        assert_eq!(live_screen, watched_screen);
        let text: String = watched_screen
            .content()
            .iter()
            .map(ratatui::buffer::Cell::symbol)
            .collect();
        assert!(
            text.contains("FINISHED") && text.contains("evals 3"),
            "{text}"
        );
        assert!(text.contains("(warn 50%)"), "{text}");
        let settings = watched.run.status.settings.as_ref().unwrap();
        assert!((settings.eval.timeout_warn_rate - 0.5).abs() < f64::EPSILON);
    }
}
