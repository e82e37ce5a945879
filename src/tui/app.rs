//! TUI state. It changes only in [`App::update`]: keys become
//! [`KeyAction`]s first (see `keys.rs`), trainer events and system samples
//! are folded in, and the commands to send come back as the return value,
//! so all of it is testable without a terminal.

use std::collections::VecDeque;

use ratatui::crossterm::event::KeyEvent;

use super::history::History;
use super::keys::{KeyAction, action_for};
use super::sampler::{GpuSample, HostSample, SystemSample};
use crate::events::{Command, Event, GenerationStart, RunState, RunStatus, SampleResult};
use crate::ranks::RankView;

/// Points of the loss curves kept at full resolution, and for the whole run.
const RECENT_POINTS: usize = 500;
const WHOLE_RUN_POINTS: usize = 1000;
/// Weight of the newest point in the smoothed loss.
const EMA_ALPHA: f64 = 0.1;
const SAMPLES_KEPT: usize = 200;
const LOG_LINES_KEPT: usize = 200;
const LOAD_HISTORY: usize = 120;

/// Something that happened to the TUI.
#[derive(Debug, Clone)]
pub enum Msg {
    Key(KeyEvent),
    Trainer(Event),
    System(SystemSample),
    /// What `watch` learned about the run's process.
    Liveness(Liveness),
}

/// Whether the process of a watched run is still there.
#[derive(Debug, Clone, PartialEq)]
pub enum Liveness {
    /// It ended without a final state (killed, crashed, or exited on a stall).
    Gone(GoneRun),
    /// A process trains in the run (again).
    Alive,
    /// The ranks of a multi-process job, as their heartbeat files tell it
    /// (sent when one moves on, goes silent or ends).
    Ranks(Vec<RankView>),
    /// The job `trainui run` started ended with this exit status.
    JobEnded(i32),
}

/// A run whose process is gone, as `watch` tells it.
#[derive(Debug, Clone, PartialEq)]
pub struct GoneRun {
    pub pid: u32,
    /// The run's last word (its status file's `updated_at`), RFC 3339.
    pub since: String,
    pub last_checkpoint: Option<String>,
    /// The command that continues it.
    pub resume: String,
}

/// Whose run the TUI shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The trainer thread of this process (`trainui train`): `q` asks to
    /// stop it, `r` restarts a stalled run.
    Trainer,
    /// A run of another process (`trainui watch`): quitting leaves it
    /// alone, and a restart is its supervisor's job.
    Watcher,
    /// The job this process started (`trainui run`): `q` asks to stop it,
    /// through its control spool.
    Job,
}

/// The pane that arrows scroll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Samples,
    Events,
}

/// A window drawn over the panes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlay {
    None,
    Help,
    ConfirmQuit,
}

/// How the loss chart is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChartView {
    pub log_scale: bool,
    /// The whole run (decimated) rather than the recent window.
    pub whole_run: bool,
}

/// How the TUI should end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The run is over (or was stopped on request): leave normally.
    Done,
    /// Leave now, without waiting for the trainer.
    Now,
    /// Replace this process with one that resumes from the latest checkpoint
    /// (works even when the trainer is stuck inside libtorch).
    Restart,
}

/// A generation in progress.
#[derive(Debug, Clone)]
pub struct LiveGeneration {
    pub start: GenerationStart,
    pub text: String,
    pub tokens: u64,
    pub elapsed_secs: f64,
}

/// A GPU's latest reading with its recent utilisation.
#[derive(Debug, Clone)]
pub struct GpuView {
    pub latest: GpuSample,
    pub utilization: VecDeque<u64>,
}

/// What the panes show.
#[derive(Debug)]
pub struct App {
    /// The run as the status file shows it (the same fold of the events).
    pub status: RunStatus,
    pub loss_history: History,
    pub smoothed_history: History,
    smoothed: Option<f64>,
    pub val_history: History,
    /// Exact-match rate of each evaluation, percent.
    pub exact_match_history: VecDeque<u64>,
    pub live: Option<LiveGeneration>,
    /// Finished samples, newest first.
    pub samples: VecDeque<SampleResult>,
    /// Log lines, newest last.
    pub log: VecDeque<String>,
    pub gpus: Vec<GpuView>,
    pub host: HostSample,
    pub cpu_history: VecDeque<u64>,
    pub system_note: Option<String>,
    pub failure: Option<String>,
    /// What the watchdog said about a stall in progress.
    pub stall: Option<String>,
    pub last_warning: Option<String>,
    // What the user sees of the UI itself.
    pub color: bool,
    pub chart: ChartView,
    pub focus: Focus,
    /// Samples scrolled past (0 shows the newest).
    pub sample_scroll: usize,
    /// Log lines scrolled back from the newest.
    pub log_scroll: usize,
    pub overlay: Overlay,
    /// The run should end once the trainer has stopped.
    quit_when_stopped: bool,
    /// The latest command sent or acknowledged, shown in the footer.
    pub ack: Option<String>,
    pub exit: Option<Exit>,
    /// Whose run this is: what quitting and restarting do.
    pub owner: Owner,
    /// The watched run's process is gone without a final state.
    pub gone: Option<GoneRun>,
    /// The ranks of the watched job (none for trainui's own trainer).
    pub ranks: Vec<RankView>,
    /// The job's exit status, once it has ended.
    pub job_status: Option<i32>,
}

impl App {
    #[must_use]
    pub fn new(run_name: String, max_steps: u64, color: bool) -> Self {
        Self {
            status: RunStatus::new(run_name, max_steps),
            loss_history: History::new(RECENT_POINTS, WHOLE_RUN_POINTS),
            smoothed_history: History::new(RECENT_POINTS, WHOLE_RUN_POINTS),
            smoothed: None,
            val_history: History::new(RECENT_POINTS, WHOLE_RUN_POINTS),
            exact_match_history: VecDeque::new(),
            live: None,
            samples: VecDeque::new(),
            log: VecDeque::new(),
            gpus: Vec::new(),
            host: HostSample::default(),
            cpu_history: VecDeque::new(),
            system_note: None,
            failure: None,
            stall: None,
            last_warning: None,
            color,
            chart: ChartView {
                log_scale: false,
                whole_run: true,
            },
            focus: Focus::Samples,
            sample_scroll: 0,
            log_scroll: 0,
            overlay: Overlay::None,
            quit_when_stopped: false,
            ack: None,
            exit: None,
            owner: Owner::Trainer,
            gone: None,
            ranks: Vec::new(),
            job_status: None,
        }
    }

    /// Applies `msg`; returns the command to send to the trainer, if any.
    pub fn update(&mut self, msg: Msg) -> Option<Command> {
        match msg {
            Msg::Key(key) => self.act(action_for(key)?),
            Msg::Trainer(event) => {
                self.apply(&event);
                None
            }
            Msg::System(sample) => {
                self.apply_system(sample);
                None
            }
            Msg::Liveness(Liveness::Gone(gone)) => {
                self.log_line(format!(
                    "GONE: process {} ended without a final state; resume with {}",
                    gone.pid, gone.resume
                ));
                self.gone = Some(gone);
                None
            }
            Msg::Liveness(Liveness::Alive) => {
                if self.gone.take().is_some() {
                    self.log_line("a process trains in the run again".into());
                }
                None
            }
            Msg::Liveness(Liveness::JobEnded(status)) => {
                self.job_status = Some(status);
                self.log_line(format!("the job exited with status {status}"));
                self.ack = Some(format!(
                    "the job exited with status {status}; press q to quit"
                ));
                if self.quit_when_stopped {
                    self.exit = Some(Exit::Done);
                }
                None
            }
            Msg::Liveness(Liveness::Ranks(ranks)) => {
                let stuck = |views: &[RankView]| -> Vec<u32> {
                    views
                        .iter()
                        .filter(|v| v.verdict.is_stuck())
                        .map(|v| v.beat.rank)
                        .collect()
                };
                let (before, now) = (stuck(&self.ranks), stuck(&ranks));
                for view in ranks
                    .iter()
                    .filter(|v| v.verdict.is_stuck() && !before.contains(&v.beat.rank))
                {
                    self.log_line(view.describe());
                }
                if now.is_empty() && !before.is_empty() {
                    self.log_line("every rank beats again".into());
                }
                self.ranks = ranks;
                None
            }
        }
    }

    fn act(&mut self, action: KeyAction) -> Option<Command> {
        if self.overlay == Overlay::ConfirmQuit {
            return self.act_confirming(action);
        }
        if self.overlay == Overlay::Help && action != KeyAction::Quit {
            // Any key closes the help overlay.
            self.overlay = Overlay::None;
            return None;
        }
        let running =
            !self.status.state.is_final() && self.gone.is_none() && self.job_status.is_none();
        let command = match action {
            KeyAction::EvalNow if running => Some(Command::EvalNow),
            KeyAction::AbortGeneration if running => Some(Command::AbortGeneration),
            KeyAction::TogglePause if running => Some(if self.status.state == RunState::Paused {
                Command::Resume
            } else {
                Command::Pause
            }),
            KeyAction::Save if running => Some(Command::Save),
            KeyAction::EvalNow
            | KeyAction::AbortGeneration
            | KeyAction::TogglePause
            | KeyAction::Save => {
                self.ack = Some(match &self.gone {
                    Some(gone) => {
                        format!("the run's process is gone; resume with {}", gone.resume)
                    }
                    None => format!("the run is {}; press q to quit", self.status.state.as_str()),
                });
                None
            }
            KeyAction::Quit => {
                if running && self.owner != Owner::Watcher {
                    self.overlay = Overlay::ConfirmQuit;
                } else {
                    self.exit = Some(Exit::Done);
                }
                None
            }
            KeyAction::Restart if self.owner != Owner::Trainer => {
                self.ack =
                    Some("a watched run restarts from its supervisor (--resume auto)".into());
                None
            }
            KeyAction::Restart if self.status.state == RunState::Stalled => {
                self.exit = Some(Exit::Restart);
                None
            }
            KeyAction::Restart => {
                self.ack = Some("r restarts a stalled run; this one is not stalled".into());
                None
            }
            KeyAction::Confirm | KeyAction::Cancel => None,
            KeyAction::ToggleHelp => {
                self.overlay = Overlay::Help;
                None
            }
            KeyAction::ToggleLogScale => {
                self.chart.log_scale = !self.chart.log_scale;
                None
            }
            KeyAction::ToggleWindow => {
                self.chart.whole_run = !self.chart.whole_run;
                None
            }
            KeyAction::FocusNext => {
                self.focus = match self.focus {
                    Focus::Samples => Focus::Events,
                    Focus::Events => Focus::Samples,
                };
                None
            }
            KeyAction::ScrollUp => self.scroll(-1),
            KeyAction::ScrollDown => self.scroll(1),
            KeyAction::PageUp => self.scroll(-5),
            KeyAction::PageDown => self.scroll(5),
        };
        if let Some(command) = &command {
            self.ack = Some(format!("sent: {}", command.word()));
        }
        command
    }

    fn act_confirming(&mut self, action: KeyAction) -> Option<Command> {
        match action {
            KeyAction::Confirm => {
                self.overlay = Overlay::None;
                self.quit_when_stopped = true;
                self.ack =
                    Some("sent: stop (the run saves a checkpoint, then trainui exits)".into());
                Some(Command::Stop)
            }
            KeyAction::Quit => {
                self.exit = Some(Exit::Now);
                None
            }
            _ => {
                self.overlay = Overlay::None;
                self.ack = Some("quit cancelled".into());
                None
            }
        }
    }

    fn scroll(&mut self, by: isize) -> Option<Command> {
        let (position, len) = match self.focus {
            Focus::Samples => (&mut self.sample_scroll, self.samples.len()),
            Focus::Events => (&mut self.log_scroll, self.log.len()),
        };
        // Up shows newer samples (towards the top) but older log lines.
        let by = if self.focus == Focus::Events { -by } else { by };
        *position = position
            .saturating_add_signed(by)
            .min(len.saturating_sub(1));
        None
    }

    /// Folds one trainer event in: the run status first, then what only
    /// the screen keeps (curves, samples, the live generation, the log).
    pub fn apply(&mut self, event: &Event) {
        self.status.apply(event);
        match event {
            Event::Started(info) => {
                if info.resumed_from.is_some() {
                    // A resumed run repeats the steps after its checkpoint.
                    let from = info.start_step as f64 + 0.5;
                    self.loss_history.truncate_from(from);
                    self.smoothed_history.truncate_from(from);
                    self.val_history.truncate_from(from);
                    self.smoothed = self.smoothed_history.last().map(|p| p.1);
                }
                self.log_line(match &info.resumed_from {
                    Some(from) => format!("resumed from {from} at step {}", info.start_step),
                    None => format!(
                        "started on {}, {} params",
                        info.device,
                        crate::lines::thousands(info.parameters)
                    ),
                });
            }
            // A loss that is not a number is said in the header, the events
            // and the status; the curves keep the numbers.
            Event::Step(m) if m.loss.is_finite() => {
                let smoothed = self
                    .smoothed
                    .map_or(m.loss, |s| s + EMA_ALPHA * (m.loss - s));
                self.smoothed = Some(smoothed);
                self.loss_history.push(m.step as f64, m.loss);
                self.smoothed_history.push(m.step as f64, smoothed);
            }
            Event::CommandAck {
                command, message, ..
            } => {
                let text = format!("{}: {message}", command.word());
                self.log_line(text.clone());
                self.ack = Some(text);
            }
            Event::Warning { step, message } => {
                self.log_line(format!("WARNING at step {step}: {message}"));
                self.last_warning = Some(message.clone());
            }
            Event::EvalStarted {
                step,
                eval,
                samples,
            } => {
                self.log_line(format!(
                    "evaluation {eval} at step {step} ({samples} samples)"
                ));
            }
            Event::ValLoss {
                step,
                loss: Some(loss),
                ..
            } if loss.is_finite() => {
                self.val_history.push(*step as f64, *loss);
            }
            Event::GenerationStarted(start) => {
                self.live = Some(LiveGeneration {
                    start: start.clone(),
                    text: String::new(),
                    tokens: 0,
                    elapsed_secs: 0.0,
                });
            }
            Event::GenerationProgress {
                sample,
                text,
                tokens,
                elapsed_secs,
                ..
            } => {
                if let Some(live) = self.live.as_mut().filter(|l| l.start.sample == *sample) {
                    live.text.clone_from(text);
                    live.tokens = *tokens;
                    live.elapsed_secs = *elapsed_secs;
                }
            }
            Event::Sample(sample) => {
                self.live = None;
                if self.samples.len() == SAMPLES_KEPT {
                    self.samples.pop_back();
                }
                self.samples.push_front(sample.clone());
                if self.sample_scroll > 0 {
                    // Keep the sample the user is reading in view.
                    self.sample_scroll = (self.sample_scroll + 1).min(self.samples.len() - 1);
                }
            }
            Event::EvalFinished(summary) => {
                self.live = None;
                if self.exact_match_history.len() == LOAD_HISTORY {
                    self.exact_match_history.pop_front();
                }
                self.exact_match_history
                    .push_back((100.0 * summary.exact_match).round() as u64);
                let val = summary
                    .val_loss
                    .map_or_else(|| "-".into(), |v| format!("{v:.4}"));
                self.log_line(format!(
                    "eval {} at step {}: val loss {val}, exact match {}/{}",
                    summary.eval, summary.step, summary.matches, summary.samples
                ));
            }
            Event::Stalled {
                step,
                phase,
                silent_secs,
                ..
            } => {
                self.stall = Some(format!(
                    "no progress for {silent_secs:.0}s at step {step}, while {}",
                    phase.as_str()
                ));
                self.log_line(format!("STALLED at step {step} ({})", phase.as_str()));
            }
            Event::Recovered { step, .. } => {
                self.stall = None;
                self.log_line(format!("recovered at step {step}"));
            }
            Event::Control {
                command,
                accepted,
                message,
                ..
            } => {
                let verdict = if *accepted { "" } else { " REJECTED" };
                self.log_line(format!("control {command}{verdict}: {message}"));
            }
            Event::NonFinite {
                step,
                loss,
                grad_norm,
                action,
                ..
            } => {
                let message = format!(
                    "NON-FINITE loss {loss} (grad norm {grad_norm}) at step {step}: {}",
                    action.as_str()
                );
                self.log_line(format!("WARNING {message}"));
                self.last_warning = Some(message);
            }
            Event::Checkpoint { step, path } => {
                self.log_line(format!("checkpoint at step {step}: {path}"));
            }
            Event::Finished(summary) => {
                self.live = None;
                self.log_line(format!(
                    "{} at step {}",
                    summary.state.as_str(),
                    summary.step
                ));
                if self.quit_when_stopped {
                    self.exit = Some(Exit::Done);
                }
            }
            Event::Failed { step, message } => {
                self.live = None;
                self.failure = Some(message.clone());
                self.log_line(format!("FAILED at step {step}: {message}"));
                if self.quit_when_stopped {
                    self.exit = Some(Exit::Done);
                }
            }
            Event::State { .. }
            | Event::Step(_)
            | Event::ValLoss { .. }
            | Event::Settings { .. } => {}
        }
    }

    fn apply_system(&mut self, sample: SystemSample) {
        fn push(history: &mut VecDeque<u64>, value: u64) {
            if history.len() == LOAD_HISTORY {
                history.pop_front();
            }
            history.push_back(value);
        }
        self.gpus.truncate(sample.gpus.len());
        for (index, gpu) in sample.gpus.into_iter().enumerate() {
            if index == self.gpus.len() {
                self.gpus.push(GpuView {
                    latest: gpu.clone(),
                    utilization: VecDeque::new(),
                });
            }
            let view = &mut self.gpus[index];
            push(&mut view.utilization, u64::from(gpu.utilization));
            view.latest = gpu;
        }
        if let Some(cpu) = sample.host.cpu {
            push(&mut self.cpu_history, cpu.round() as u64);
        }
        self.host = sample.host;
        self.system_note = sample.note;
    }

    fn log_line(&mut self, line: String) {
        if self.log.len() == LOG_LINES_KEPT {
            self.log.pop_front();
        }
        self.log.push_back(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::crossterm::event::{KeyCode, KeyModifiers};

    fn key(code: KeyCode) -> Msg {
        Msg::Key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    fn training_app() -> App {
        let mut app = App::new("demo".into(), 100, true);
        app.apply(&Event::State {
            step: 3,
            state: RunState::Training,
        });
        app
    }

    #[test]
    fn each_key_sends_its_command() {
        let mut app = training_app();
        assert_eq!(app.update(key(KeyCode::Char('e'))), Some(Command::EvalNow));
        assert_eq!(app.ack.as_deref(), Some("sent: eval"));
        assert_eq!(
            app.update(key(KeyCode::Char('a'))),
            Some(Command::AbortGeneration)
        );
        assert_eq!(app.update(key(KeyCode::Char('s'))), Some(Command::Save));
        assert_eq!(app.update(key(KeyCode::Char('p'))), Some(Command::Pause));
        app.apply(&Event::State {
            step: 3,
            state: RunState::Paused,
        });
        assert_eq!(app.update(key(KeyCode::Char('p'))), Some(Command::Resume));
    }

    #[test]
    fn quit_asks_first_then_stops_and_exits_when_the_run_has_stopped() {
        let mut app = training_app();
        assert_eq!(app.update(key(KeyCode::Char('q'))), None);
        assert_eq!(app.overlay, Overlay::ConfirmQuit);
        assert_eq!(app.update(key(KeyCode::Char('y'))), Some(Command::Stop));
        assert_eq!(app.exit, None, "waits for the trainer to stop");
        app.apply(&Event::Finished(crate::events::Summary {
            step: 4,
            max_steps: 100,
            state: RunState::Stopped,
            loss: None,
            elapsed_secs: 1.0,
        }));
        assert_eq!(app.exit, Some(Exit::Done));
    }

    #[test]
    fn a_second_q_or_ctrl_c_quits_at_once_and_n_cancels() {
        let mut app = training_app();
        app.update(key(KeyCode::Char('q')));
        assert_eq!(app.update(key(KeyCode::Char('n'))), None);
        assert_eq!(app.overlay, Overlay::None);
        app.update(key(KeyCode::Char('q')));
        let ctrl_c = Msg::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
        assert_eq!(app.update(ctrl_c), None);
        assert_eq!(app.exit, Some(Exit::Now));
    }

    #[test]
    fn after_the_run_q_quits_and_commands_are_refused() {
        let mut app = training_app();
        app.apply(&Event::State {
            step: 100,
            state: RunState::Finished,
        });
        assert_eq!(app.update(key(KeyCode::Char('e'))), None);
        assert!(app.ack.as_deref().is_some_and(|a| a.contains("finished")));
        app.update(key(KeyCode::Char('q')));
        assert_eq!(app.exit, Some(Exit::Done));
    }

    #[test]
    fn a_stall_offers_a_restart_and_recovery_restores_the_state() {
        let mut app = training_app();
        assert_eq!(app.update(key(KeyCode::Char('r'))), None);
        assert_eq!(app.exit, None, "no restart while healthy");
        app.apply(&Event::Stalled {
            step: 3,
            phase: crate::events::Phase::Generating,
            silent_secs: 31.0,
            timeout_secs: 30.0,
        });
        assert_eq!(app.status.state, RunState::Stalled);
        app.apply(&Event::Recovered {
            step: 3,
            phase: crate::events::Phase::Training,
        });
        assert_eq!(app.status.state, RunState::Training);
        app.apply(&Event::Stalled {
            step: 3,
            phase: crate::events::Phase::Training,
            silent_secs: 31.0,
            timeout_secs: 30.0,
        });
        app.update(key(KeyCode::Char('r')));
        assert_eq!(app.exit, Some(Exit::Restart));
    }

    #[test]
    fn view_keys_change_only_the_view() {
        let mut app = training_app();
        for (code, check) in [
            (
                KeyCode::Char('l'),
                (|a: &App| a.chart.log_scale) as fn(&App) -> bool,
            ),
            (KeyCode::Char('z'), |a: &App| !a.chart.whole_run),
            (KeyCode::Tab, |a: &App| a.focus == Focus::Events),
            (KeyCode::Char('?'), |a: &App| a.overlay == Overlay::Help),
        ] {
            assert_eq!(app.update(key(code)), None);
            assert!(check(&app), "{code:?}");
        }
    }

    #[test]
    fn a_job_that_ended_is_not_stopped_again_and_q_leaves_at_once() {
        let mut app = App::new("job".into(), 100, false);
        app.owner = Owner::Job;
        app.apply(&Event::State {
            step: 3,
            state: RunState::Training,
        });
        assert_eq!(app.update(key(KeyCode::Char('q'))), None);
        assert_eq!(
            app.overlay,
            Overlay::ConfirmQuit,
            "a running job is stopped, not left"
        );
        app.update(key(KeyCode::Char('n')));
        app.update(Msg::Liveness(Liveness::JobEnded(3)));
        assert_eq!(app.job_status, Some(3));
        assert!(app.ack.as_deref().unwrap().contains("exited with status 3"));
        assert_eq!(
            app.update(key(KeyCode::Char('e'))),
            None,
            "nothing to send to"
        );
        assert_eq!(app.update(key(KeyCode::Char('q'))), None);
        assert_eq!(app.exit, Some(Exit::Done));
    }
}
