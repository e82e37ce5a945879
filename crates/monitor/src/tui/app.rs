//! One run's screen: its parts, and the routing of what happens to them.
//! State changes only in [`App::update`]: trainer events go to the fold
//! ([`RunData`], `run_data.rs`), the machine's readings to its [`Load`],
//! notices about the run's process to its [`Process`], and keys to
//! `input.rs` (keys become [`KeyAction`](super::keys::KeyAction)s first, see
//! `keys.rs`), which changes the [`ViewState`] or sends a command. What a
//! folded event asks of the view comes back from the fold as a [`Cue`], and
//! the commands to send come back as the return value, so all of it is
//! testable without a terminal.
//!
//! Time is the app's own clock ([`App::now`], moved by [`Msg::Tick`]) and
//! each event's time (its events.jsonl time when it comes from a file), so
//! a screen says how old what it shows is, and a test can set the clock.

use std::time::{Duration, SystemTime};

use ratatui::crossterm::event::{KeyEvent, KeyEventKind};

use super::event_log::Level;
use super::intake::{self, escaped};
use super::job_output::JobOutput;
use super::keys::{Audience, Context};
use super::load::Load;
use super::process::{Liveness, Process};
use super::run_data::{Cue, RunData};
use super::sampler::SystemSample;
use super::view_state::{Overlay, ViewState};
use trainui_protocol::events::{Command, Event, RunState};

/// How long a footer answer stays.
pub const ACK_SECS: u64 = 5;

/// How long a job asked to end at once (`q` `q`, or a second `q` `y`)
/// has between SIGTERM and SIGKILL to its process group; the screen says it.
pub const JOB_KILL_AFTER: Duration = Duration::from_secs(10);

/// Something that happened to the TUI.
#[derive(Debug, Clone)]
pub enum Msg {
    Key(KeyEvent),
    /// An event, happening now.
    Trainer(Event),
    /// An event with the time it was recorded (read from events.jsonl).
    Recorded(Event, SystemTime),
    System(SystemSample),
    /// What the follower of the run's directory (`follow/liveness.rs`) or
    /// `trainui run` learned about the run's process.
    Liveness(Liveness),
    /// The clock moved on.
    Tick(SystemTime),
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

/// The footer's answer to a key or a command.
#[derive(Debug, Clone)]
pub struct Ack {
    pub text: String,
    pub at: SystemTime,
    /// Stays until replaced (what must not be missed).
    pub sticky: bool,
}

/// One run's screen: what it shows and how, whose run it is, and how the
/// screen ends.
#[derive(Debug)]
pub struct App {
    /// The run's events, folded into what the panes show.
    pub run: RunData,
    /// What is known of the run's process apart from its events.
    pub process: Process,
    /// The machine's load.
    pub load: Load,
    /// The job's own output, for a run that has an output file.
    pub output: JobOutput,
    /// How the user has set the screen up.
    pub view: ViewState,
    /// Now, as far as the screen is concerned.
    pub now: SystemTime,
    /// When the screen began showing the run: until its first event comes,
    /// the header counts from here the time it has waited.
    pub since: SystemTime,
    /// The latest answer to a key or a command, shown in the footer.
    pub ack: Option<Ack>,
    pub exit: Option<Exit>,
    /// Whose run this is: what quitting and restarting do.
    pub owner: Owner,
    /// The command that continues the run from its latest checkpoint.
    pub resume: Option<String>,
    /// How many times `trainui run --restart-on-stall N` relaunches the job
    /// when it stalls (set by the launcher; `None` everywhere else): only
    /// then does the screen say that a stalled job is restarted.
    pub restarts_on_stall: Option<u32>,
    /// A stop was sent: the screen ends once the run has stopped.
    pub(super) quit_when_stopped: bool,
    /// The run shares the screen with others (`watch RUN_A RUN_B`): its
    /// answers name it, and the keys of several runs are offered.
    pub compared: bool,
    /// The name the screen gives the run over the one its events give (two
    /// compared runs of one name go by their paths).
    pub label: Option<String>,
}

impl App {
    /// An app for the run `run_name` (escaped: a folder's name may be
    /// anything).
    #[must_use]
    pub fn new(run_name: String, max_steps: u64, color: bool) -> Self {
        Self::for_run(RunData::new(run_name, max_steps), color)
    }

    /// An app showing `run`, its chart smoothed to suit the run's length.
    #[must_use]
    pub fn for_run(run: RunData, color: bool) -> Self {
        let smoothing = default_smoothing(run.status.max_steps);
        let now = SystemTime::now();
        Self {
            run,
            process: Process::default(),
            load: Load::default(),
            output: JobOutput::default(),
            view: ViewState::new(color, smoothing),
            now,
            since: now,
            ack: None,
            exit: None,
            owner: Owner::Trainer,
            resume: None,
            restarts_on_stall: None,
            quit_when_stopped: false,
            compared: false,
            label: None,
        }
    }

    /// Applies `msg`; returns the command to send to the trainer, if any.
    pub fn update(&mut self, msg: Msg) -> Option<Command> {
        match msg {
            Msg::Key(key) => {
                if key.kind == KeyEventKind::Release {
                    return None;
                }
                self.key(key)
            }
            Msg::Trainer(event) => {
                self.apply_at(&event, self.now);
                None
            }
            Msg::Recorded(event, at) => {
                self.apply_at(&event, at);
                None
            }
            Msg::Tick(now) => {
                self.now = now;
                self.output.poll(now);
                None
            }
            Msg::System(sample) => {
                self.load.apply(sample);
                None
            }
            Msg::Liveness(liveness) => {
                self.apply_liveness(liveness);
                None
            }
        }
    }

    fn apply_liveness(&mut self, liveness: Liveness) {
        match liveness {
            // A stalled job that trainui relaunches is not gone: the
            // relaunch (Restarting) tells what comes of it.
            Liveness::Gone(_)
                if self.owner == Owner::Job
                    && self.restarts_on_stall.is_some_and(|n| n > 0)
                    && self.run.stall.is_some() => {}
            Liveness::Gone(mut gone) => {
                intake::gone(&mut gone.since, &mut gone.last_checkpoint, &mut gone.resume);
                self.log_line(
                    Level::Error,
                    format!(
                        "GONE: process {} ended without a final state; resume with {}",
                        gone.pid, gone.resume
                    ),
                );
                self.process.gone = Some(gone);
            }
            Liveness::Alive => {
                if self.process.gone.take().is_some() {
                    self.log_line(Level::Info, "a process trains in the run again".into());
                }
            }
            Liveness::JobEnded(status) => {
                self.process.job_status = Some(status);
                let level = if status == 0 {
                    Level::Info
                } else {
                    Level::Error
                };
                self.log_line(level, format!("the job exited with status {status}"));
                self.say_sticky(format!(
                    "the job exited with status {status}; press q to quit"
                ));
                if self.quit_when_stopped {
                    self.exit = Some(Exit::Done);
                }
            }
            Liveness::Unreadable(text) => self.warn(text),
            Liveness::Connection(Some(text)) => {
                let text = escaped(text);
                self.log_line(Level::Warning, text.clone());
                self.say_sticky(text);
            }
            Liveness::Connection(None) => {
                self.log_line(Level::Info, "connected again; in step with the run".into());
                self.say("connected again; in step with the run");
            }
            Liveness::Restarting(text) => {
                let text = escaped(text);
                self.process.gone = None;
                self.log_line(Level::Warning, text.clone());
                self.say(text);
            }
            Liveness::Ending(text) => {
                let text = escaped(text);
                self.log_line(Level::Error, text.clone());
                self.say_sticky(text);
            }
            Liveness::Ranks(ranks) => {
                for (level, text) in self.process.take_ranks(ranks) {
                    self.log_line(level, text);
                }
            }
            Liveness::Processes(processes) => self.process.take_processes(processes),
        }
    }

    /// Whose screen this is, as the keys' help speaks to them.
    #[must_use]
    pub fn audience(&self) -> Audience {
        match self.owner {
            Owner::Trainer => Audience::Trainer,
            Owner::Watcher => Audience::Watcher,
            Owner::Job => Audience::Job {
                restarts: self.restarts_on_stall.is_some_and(|n| n > 0),
            },
        }
    }

    /// The screen keys act on now.
    #[must_use]
    pub fn context(&self) -> Context {
        match self.view.overlay {
            Overlay::None => Context::Panes,
            Overlay::Help => Context::Help,
            Overlay::ConfirmQuit | Overlay::ConfirmRestart => Context::Dialog,
            Overlay::Sample => Context::Sample,
            Overlay::Log => Context::Log,
            Overlay::Output => Context::Output,
        }
    }

    /// The run can still take commands.
    #[must_use]
    pub fn running(&self) -> bool {
        !self.run.status.state.is_final()
            && self.process.gone.is_none()
            && self.process.job_status.is_none()
    }

    /// The footer's answer, while it is fresh.
    #[must_use]
    pub fn ack_text(&self) -> Option<&str> {
        let ack = self.ack.as_ref()?;
        let age = self.now.duration_since(ack.at).unwrap_or_default();
        (ack.sticky || age < Duration::from_secs(ACK_SECS)).then_some(ack.text.as_str())
    }

    /// Answers in the footer, for a few seconds (escaped: an answer may
    /// quote a path or a message from elsewhere).
    pub fn say(&mut self, text: impl Into<String>) {
        self.ack = Some(Ack {
            text: escaped(text.into()),
            at: self.now,
            sticky: false,
        });
    }

    /// Answers in the footer until the next answer.
    pub(super) fn say_sticky(&mut self, text: impl Into<String>) {
        self.ack = Some(Ack {
            text: escaped(text.into()),
            at: self.now,
            sticky: true,
        });
    }

    /// Says `text` in the log as a warning and in the footer: a warning of
    /// this program about the run (not one of the run's own, which come as
    /// events).
    pub fn warn(&mut self, text: String) {
        let text = escaped(text);
        self.log_line(Level::Warning, format!("WARNING: {text}"));
        self.say(text);
    }

    /// A stop was sent, and trainui exits once the run has stopped.
    #[must_use]
    pub fn stop_asked(&self) -> bool {
        self.quit_when_stopped
    }

    /// Names the run `label` on the screen, over the name its events give
    /// (escaped: a label is made from a folder's name).
    pub fn set_label(&mut self, label: String) {
        let label = escaped(label);
        self.run.status.run_name.clone_from(&label);
        self.label = Some(label);
    }

    /// Starts over with `fresh` (what is known of the same run before any
    /// event, as at the start) because the run's events.jsonl was replaced
    /// or cut shorter (log rotation, a folder reused): what was read before
    /// belongs to another run. The view the user chose stays, and so does
    /// what is known of the run's process and of the machine, which the
    /// events do not tell.
    pub fn start_over(&mut self, fresh: RunData) {
        if !self.view.smoothing_chosen {
            self.view.chart.smoothing = default_smoothing(fresh.status.max_steps);
        }
        self.run = fresh;
        if let Some(label) = &self.label {
            self.run.status.run_name.clone_from(label);
        }
        self.view.start_over();
        self.ack = None;
        self.log_line(
            Level::Warning,
            "events.jsonl was replaced or cut shorter: what was shown belongs to \
             another run; reading the new file from its start"
                .into(),
        );
        self.say("events.jsonl was replaced: showing the new run from its start");
    }

    /// Draws its chart as `other` does (a key changed the view of one of
    /// several runs shown together).
    pub fn chart_like(&mut self, other: &App) {
        self.view.chart = other.view.chart;
        self.view.smoothing_chosen = other.view.smoothing_chosen;
    }

    /// The checkpoint a restart would continue from.
    #[must_use]
    pub fn restart_point(&self) -> Option<&str> {
        let status = &self.run.status;
        status
            .last_checkpoint
            .as_deref()
            .or(status.resumed_from.as_deref())
    }

    /// The run's elapsed seconds now: ticking with the clock while the run
    /// lives, fixed once it has ended.
    #[must_use]
    pub fn elapsed_secs(&self) -> f64 {
        // A job that exited without a final state has ended all the same.
        let ended = self.process.gone.is_some() || self.process.job_status.is_some();
        self.run.elapsed_secs(self.now, ended)
    }

    /// The time left: the trainer's estimate at its latest step, counted
    /// down by the clock while the run trains (an evaluation or a pause
    /// does not bring the end nearer).
    #[must_use]
    pub fn eta_secs(&self) -> Option<f64> {
        self.run.eta_secs(self.now)
    }

    /// Seconds since `at`, by the app's clock.
    #[must_use]
    pub fn secs_since(&self, at: SystemTime) -> f64 {
        self.now
            .duration_since(at)
            .unwrap_or_default()
            .as_secs_f64()
    }

    /// Folds one trainer event in, happening now.
    pub fn apply(&mut self, event: &Event) {
        self.apply_at(event, self.now);
    }

    /// Folds one trainer event in, which happened `at`, then follows what
    /// it asks of the view.
    pub fn apply_at(&mut self, event: &Event, at: SystemTime) {
        let written = self.run.log.written();
        let cue = self.run.apply_at(event, at);
        if let Some(label) = &self.label {
            self.run.status.run_name.clone_from(label);
        }
        // A view scrolled back keeps its lines in place as new ones come.
        for line in self.run.log.since(written) {
            self.view.keep_in_place(line);
        }
        match cue {
            Cue::None => {}
            Cue::Started { max_steps } => {
                if !self.view.smoothing_chosen {
                    self.view.chart.smoothing = default_smoothing(max_steps);
                }
            }
            Cue::Acknowledged(text) => {
                self.ack = Some(Ack {
                    text,
                    at,
                    sticky: false,
                });
            }
            Cue::EvalStarted => self.view.samples.evaluation_started(at),
            Cue::SampleAdded { dropped_oldest } => self.view.samples.sample_added(dropped_oldest),
            Cue::Ended => {
                if self.quit_when_stopped {
                    self.exit = Some(Exit::Done);
                }
            }
        }
    }

    /// Writes a line of this program's own in the log, now.
    fn log_line(&mut self, level: Level, text: String) {
        let written = self.run.log.written();
        self.run.log_at(self.now, level, text);
        for line in self.run.log.since(written) {
            self.view.keep_in_place(line);
        }
    }

    /// One line on how the run ended (or was left), its last checkpoint and
    /// how to go on, and where the job's output is when it ended badly:
    /// printed once the TUI has given the terminal back.
    #[must_use]
    pub fn farewell(&self) -> String {
        let ending = self.ending();
        match self.output_note() {
            Some(note) => format!("{ending}{note}"),
            None => ending,
        }
    }

    fn ending(&self) -> String {
        let s = &self.run.status;
        let name = &s.run_name;
        let at = format!("at step {}/{}", s.current_step, s.max_steps);
        let checkpoint = self.restart_point().map_or_else(
            || "no checkpoint".to_owned(),
            |path| format!("last checkpoint {path}"),
        );
        // A job of another framework resumes with its own command.
        let foreign = s.producer.as_ref().is_some_and(|p| p.name != "trainui");
        let gone = self.process.gone.as_ref();
        let resume = gone
            .map(|g| g.resume.clone())
            .or_else(|| self.resume.clone().filter(|_| !foreign));
        let go_on = resume.map_or_else(String::new, |r| format!("; resume: {r}"));
        if let Some(status) = self.process.job_status {
            return format!("{name}: the job exited with status {status} {at}; {checkpoint}");
        }
        if gone.is_some() {
            return format!(
                "{name}: its process is gone {at} without a final state; {checkpoint}{go_on}"
            );
        }
        match s.state {
            RunState::Finished => format!(
                "{name} finished {at} in {}; {checkpoint}",
                trainui_protocol::lines::duration(s.elapsed_secs)
            ),
            RunState::Stopped => format!("{name} stopped {at}; {checkpoint}{go_on}"),
            RunState::Failed => format!(
                "{name} failed {at}: {}; {checkpoint}{go_on}",
                self.run.failure.as_deref().unwrap_or("see its log")
            ),
            state if self.owner == Owner::Watcher => format!(
                "left {name} {} {at}; the run goes on (trainui watch to see it again)",
                state.as_str()
            ),
            _ if self.exit == Some(Exit::Restart) => {
                format!("{name} restarts from {checkpoint}")
            }
            // trainui run ends the job as the launcher says after this line:
            // SIGTERM first, which a job may answer with a checkpoint.
            _ if self.owner == Owner::Job => format!(
                "{name}: the job is asked to end at once {at} (SIGTERM, then SIGKILL if it \
                 goes on); {checkpoint} so far"
            ),
            _ => format!("{name} quit at once {at} without saving; {checkpoint}{go_on}"),
        }
    }
}

/// The smoothing window a run of `max_steps` starts with: the one rule
/// of [`crate::smooth::default_window`], which `plot` follows too.
#[must_use]
pub fn default_smoothing(max_steps: u64) -> u64 {
    crate::smooth::default_window(max_steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::view_state::{Focus, READING_SECS};
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
    fn a_replayed_acknowledgement_is_not_shown_as_new() {
        let mut app = training_app();
        let long_ago = app.now - Duration::from_hours(1);
        app.update(Msg::Recorded(
            Event::CommandAck {
                step: 3,
                command: Command::EvalNow,
                message: "already evaluating".into(),
            },
            long_ago,
        ));
        assert_eq!(app.ack_text(), None);
        assert!(
            app.run
                .log
                .back()
                .unwrap()
                .text
                .contains("already evaluating")
        );
    }

    #[test]
    fn a_new_evaluation_brings_the_samples_back_unless_the_user_reads() {
        let mut app = training_app();
        let sample = |step: u64, n: u32| {
            Event::Sample(trainui_protocol::events::SampleResult {
                step,
                sample: n,
                of: 2,
                example: 1,
                origin: "val.jsonl:2".into(),
                prompt: "1+1=".into(),
                golden: "2".into(),
                output: "2".into(),
                golden_tokens: 1,
                output_tokens: 1,
                outcome: trainui_protocol::events::GenerationOutcome::Completed,
                exact_match: true,
                loss: None,
                elapsed_secs: 0.1,
                tokens_per_sec: 10.0,
                timeout_secs: 60.0,
                counters: trainui_protocol::events::GenerationCounters::default(),
            })
        };
        let eval = |step: u64| Event::EvalStarted {
            step,
            eval: step / 10,
            samples: 2,
        };
        for step in [10, 20] {
            app.apply(&eval(step));
            app.apply(&sample(step, 1));
            app.apply(&sample(step, 2));
        }
        // Reading: up twice selects an older sample.
        app.update(key(KeyCode::Up));
        app.update(key(KeyCode::Up));
        assert_eq!(app.view.samples.cursor, Some(1));
        app.apply(&eval(30));
        app.apply(&sample(30, 1));
        assert_eq!(
            app.view.samples.cursor,
            Some(1),
            "the reader keeps their place"
        );
        assert_eq!(app.view.samples.unseen, 1);
        // Left alone for a while: the next evaluation brings the newest.
        app.update(Msg::Tick(app.now + Duration::from_secs(READING_SECS + 1)));
        app.apply(&eval(40));
        assert_eq!(
            (app.view.samples.cursor, app.view.samples.unseen),
            (None, 0)
        );
        // End goes back to the newest too.
        app.update(key(KeyCode::Up));
        app.update(key(KeyCode::End));
        assert_eq!(app.view.samples.cursor, None);
    }

    #[test]
    fn starting_over_forgets_the_other_runs_values_and_keeps_the_view() {
        let mut app = training_app();
        app.set_label("runs/a/exp".into());
        app.compared = true;
        app.apply(&Event::Step(trainui_protocol::events::StepMetrics {
            grad_norm: Some(9.75),
            tokens_seen: None,
            ..match trainui_protocol::events::examples::step(10, 100, 2.0) {
                Event::Step(m) => m,
                _ => unreachable!(),
            }
        }));
        app.apply(&Event::ValLoss {
            step: 10,
            loss: Some(7.25),
            batches: 1,
            timed_out: false,
        });
        app.update(key(KeyCode::Char('l')));
        app.update(key(KeyCode::Char(']')));
        app.update(key(KeyCode::Tab));
        app.update(Msg::Liveness(Liveness::JobEnded(0)));
        app.start_over(RunData::new("exp".into(), 0));
        assert_eq!(app.run.grad_norm, None);
        assert_eq!(app.run.best_val, None);
        assert!(app.run.curves.val.is_empty() && app.run.curves.loss.is_empty());
        assert_eq!(app.run.status.current_step, 0);
        assert_eq!(app.run.status.run_name, "runs/a/exp", "the label stays");
        assert!(app.view.chart.log_scale && app.view.focus == Focus::Events && app.compared);
        assert!(app.view.color, "the look stays");
        assert_eq!(app.process.job_status, Some(0), "the process's end stays");
        assert_eq!(app.run.log.len(), 1);
        assert!(app.run.log[0].text.contains("replaced or cut shorter"));
    }
}
