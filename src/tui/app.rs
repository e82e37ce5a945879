//! TUI state. It changes only in [`App::update`]: keys become
//! [`KeyAction`]s first (see `keys.rs`), trainer events, system samples and
//! the clock are folded in, and the commands to send come back as the
//! return value, so all of it is testable without a terminal.
//!
//! Time is the app's own clock ([`App::now`], moved by [`Msg::Tick`]) and
//! each event's time (its events.jsonl time when it comes from a file), so
//! a screen says how old what it shows is, and a test can set the clock.

use std::cell::Cell;
use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind};

use super::history::History;
use super::intake;
use super::keys::{self, Context, KeyAction, action_for};
use super::sampler::{GpuSample, HostSample, SystemSample};
use super::wrap::wrap;
use crate::events::{
    Command, EvalSummary, Event, GenerationOutcome, GenerationStart, Phase, RunState, RunStatus,
    SampleResult,
};
use crate::ranks::RankView;

/// Points of the loss curves kept at full resolution, and for the whole run.
const RECENT_POINTS: usize = 500;
const WHOLE_RUN_POINTS: usize = 1000;
const SAMPLES_KEPT: usize = 200;
const EVALS_KEPT: usize = 100;
const LOG_LINES_KEPT: usize = 5000;
const LOAD_HISTORY: usize = 120;
/// How long a footer answer stays.
pub const ACK_SECS: u64 = 5;
/// A user who moved in the samples this recently is reading them: a new
/// evaluation does not pull the pane away.
const READING_SECS: u64 = 30;
/// The smoothing windows `[` and `]` step through, in steps (0: none).
pub const SMOOTHING_STEPS: &[u64] = &[
    0, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 25_000, 50_000,
];

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
    /// What `watch` learned about the run's process.
    Liveness(Liveness),
    /// The clock moved on.
    Tick(SystemTime),
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
    /// What trainui does to end a job that went on after being asked to
    /// end (a second SIGINT or SIGTERM to trainui): said once.
    Ending(String),
    /// Why the run's status file cannot be read (a FIFO, too large, not a
    /// status): said once each time the reason changes.
    Unreadable(String),
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
    ConfirmRestart,
    /// A sample, whole ([`App::detail`]).
    Sample,
    /// The full-screen log ([`App::log_view`]).
    Log,
}

/// How the loss chart is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChartView {
    pub log_scale: bool,
    /// The whole run (decimated) rather than the recent window.
    pub whole_run: bool,
    /// Wall-clock time on the x axis rather than steps.
    pub time_axis: bool,
    /// The smoothing window in steps (0: none), one of [`SMOOTHING_STEPS`].
    pub smoothing: u64,
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

/// How much a log line matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Info,
    Warning,
    Error,
}

/// One line of the log.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub at: SystemTime,
    pub level: Level,
    pub text: String,
}

/// One evaluation as the samples pane heads it.
#[derive(Debug, Clone)]
pub struct EvalView {
    pub eval: u64,
    pub step: u64,
    pub samples: u32,
    pub val_loss: Option<f64>,
    /// Its summary, once it has finished.
    pub summary: Option<EvalSummary>,
    pub timeouts: u32,
    pub aborts: u32,
    pub errors: u32,
}

/// A finished sample as the panes show it.
#[derive(Debug, Clone)]
pub struct ShownSample {
    /// The sample, its texts escaped (by `tui::intake`).
    pub result: SampleResult,
    /// Where the output first differs from the golden answer, found in the
    /// texts as written; `None` when they are the same.
    pub difference: Option<Difference>,
}

/// Where a model's output first differs from the golden answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Difference {
    /// In characters of the texts as written.
    pub at: usize,
    /// The same place in the escaped texts shown (the same in both: what
    /// comes before it is alike).
    pub shown_at: usize,
    /// The characters there as written, none past a text's end.
    pub golden: Option<char>,
    pub output: Option<char>,
    /// The golden answer's length as written, in characters.
    pub golden_len: usize,
}

impl ShownSample {
    /// `sample` as written, made safe to show.
    #[must_use]
    pub fn new(sample: &SampleResult) -> Self {
        let difference =
            intake::first_difference(&sample.golden, &sample.output).map(|at| Difference {
                at,
                shown_at: intake::shown_position(&sample.golden, at),
                golden: sample.golden.chars().nth(at),
                output: sample.output.chars().nth(at),
                golden_len: sample.golden.chars().count(),
            });
        let mut result = sample.clone();
        intake::sample_result(&mut result);
        Self { result, difference }
    }
}

/// A sample opened whole.
#[derive(Debug, Clone)]
pub struct Detail {
    pub sample: ShownSample,
    /// Lines scrolled past.
    pub scroll: usize,
}

/// The full-screen log's view.
#[derive(Debug, Clone, Default)]
pub struct LogView {
    /// Lines scrolled back from the newest (0 follows new lines).
    pub scroll: usize,
    /// The lowest level shown.
    pub filter: Option<Level>,
    /// The search in force.
    pub query: String,
    /// The search being typed, while `/` is open.
    pub typing: Option<String>,
    /// The line of the match `n` and `N` move from.
    pub current: Option<usize>,
}

/// A stall in progress.
#[derive(Debug, Clone)]
pub struct Stall {
    pub step: u64,
    pub phase: Phase,
    /// When the trainer was last heard from.
    pub since: SystemTime,
}

/// The footer's answer to a key or a command.
#[derive(Debug, Clone)]
pub struct Ack {
    pub text: String,
    pub at: SystemTime,
    /// Stays until replaced (what must not be missed).
    pub sticky: bool,
}

/// Sizes the last frame gave the scrollable views, so that keys can keep
/// them in range (render fills it in; it is the only state render touches).
#[derive(Debug, Clone, Copy, Default)]
pub struct Geometry {
    pub log_width: u16,
    pub log_rows: u16,
    pub sample_rows: u16,
    pub detail_lines: usize,
    pub detail_rows: u16,
    pub log_view_width: u16,
    pub log_view_rows: u16,
    pub help_lines: usize,
    pub help_rows: u16,
}

/// What the panes show.
// The bools are independent switches of the view (colour, ASCII, the
// smoothing the user chose, a stop asked for); no state machine hides in
// them.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug)]
pub struct App {
    /// The run as the status file shows it (the same fold of the events).
    pub status: RunStatus,
    pub loss_history: History,
    pub val_history: History,
    /// Wall-clock seconds of the run at each logged step, for the time axis.
    pub clock_history: History,
    /// Exact-match rate of each evaluation, percent.
    pub exact_match_history: VecDeque<u64>,
    /// The lowest validation loss and its step.
    pub best_val: Option<(f64, u64)>,
    pub grad_norm: Option<f64>,
    pub live: Option<LiveGeneration>,
    /// Finished samples, oldest first.
    pub samples: VecDeque<ShownSample>,
    pub evals: VecDeque<EvalView>,
    pub log: VecDeque<LogLine>,
    pub gpus: Vec<GpuView>,
    pub host: HostSample,
    pub cpu_history: VecDeque<u64>,
    pub system_note: Option<String>,
    pub failure: Option<String>,
    pub stall: Option<Stall>,
    pub last_warning: Option<String>,
    // The clock.
    /// Now, as far as the screen is concerned.
    pub now: SystemTime,
    /// The run's elapsed seconds at a moment: the clock ticks on from it.
    elapsed_at: Option<(f64, SystemTime)>,
    /// The ETA the trainer gave at a moment: it counts down while training.
    eta_at: Option<(f64, SystemTime)>,
    pub paused_since: Option<SystemTime>,
    /// When the run last said anything.
    pub last_event_at: Option<SystemTime>,
    // What the user sees of the UI itself.
    pub color: bool,
    /// ASCII only: no box drawing, braille or typography.
    pub ascii: bool,
    pub chart: ChartView,
    /// The user chose the smoothing window (the run's length no longer does).
    smoothing_chosen: bool,
    pub focus: Focus,
    /// The selected sample (an index into `samples`); none follows the
    /// newest.
    pub sample_cursor: Option<usize>,
    /// When the user last moved in the samples.
    read_at: Option<SystemTime>,
    /// Samples that arrived while the user was reading older ones.
    pub unseen_samples: usize,
    /// Event lines scrolled back from the newest (0 follows new ones).
    pub log_scroll: usize,
    pub overlay: Overlay,
    pub help_scroll: usize,
    pub detail: Option<Detail>,
    pub log_view: LogView,
    pub geometry: Cell<Geometry>,
    /// The run should end once the trainer has stopped.
    quit_when_stopped: bool,
    /// The latest answer to a key or a command, shown in the footer.
    pub ack: Option<Ack>,
    pub exit: Option<Exit>,
    /// Whose run this is: what quitting and restarting do.
    pub owner: Owner,
    /// The command that continues the run from its latest checkpoint.
    pub resume: Option<String>,
    /// The watched run's process is gone without a final state.
    pub gone: Option<GoneRun>,
    /// The ranks of the watched job (none for trainui's own trainer).
    pub ranks: Vec<RankView>,
    /// The job's exit status, once it has ended.
    pub job_status: Option<i32>,
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
        Self {
            status: RunStatus::new(escaped(run_name), max_steps),
            loss_history: History::new(RECENT_POINTS, WHOLE_RUN_POINTS),
            val_history: History::new(RECENT_POINTS, WHOLE_RUN_POINTS),
            clock_history: History::new(RECENT_POINTS, WHOLE_RUN_POINTS),
            exact_match_history: VecDeque::new(),
            best_val: None,
            grad_norm: None,
            live: None,
            samples: VecDeque::new(),
            evals: VecDeque::new(),
            log: VecDeque::new(),
            gpus: Vec::new(),
            host: HostSample::default(),
            cpu_history: VecDeque::new(),
            system_note: None,
            failure: None,
            stall: None,
            last_warning: None,
            now: SystemTime::now(),
            elapsed_at: None,
            eta_at: None,
            paused_since: None,
            last_event_at: None,
            color,
            ascii: false,
            chart: ChartView {
                log_scale: false,
                whole_run: true,
                time_axis: false,
                smoothing: default_smoothing(max_steps),
            },
            smoothing_chosen: false,
            focus: Focus::Samples,
            sample_cursor: None,
            read_at: None,
            unseen_samples: 0,
            log_scroll: 0,
            overlay: Overlay::None,
            help_scroll: 0,
            detail: None,
            log_view: LogView::default(),
            geometry: Cell::new(Geometry::default()),
            quit_when_stopped: false,
            ack: None,
            exit: None,
            owner: Owner::Trainer,
            resume: None,
            gone: None,
            ranks: Vec::new(),
            job_status: None,
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
                None
            }
            Msg::System(sample) => {
                self.apply_system(sample);
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
            Liveness::Gone(mut gone) => {
                intake::gone(&mut gone.since, &mut gone.last_checkpoint, &mut gone.resume);
                self.log_line(
                    Level::Error,
                    format!(
                        "GONE: process {} ended without a final state; resume with {}",
                        gone.pid, gone.resume
                    ),
                );
                self.gone = Some(gone);
            }
            Liveness::Alive => {
                if self.gone.take().is_some() {
                    self.log_line(Level::Info, "a process trains in the run again".into());
                }
            }
            Liveness::JobEnded(status) => {
                self.job_status = Some(status);
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
            Liveness::Ending(text) => {
                let text = crate::text::escape(&text).into_owned();
                self.log_line(Level::Error, text.clone());
                self.say_sticky(text);
            }
            Liveness::Ranks(ranks) => {
                let ranks = intake::ranks(ranks);
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
                    self.log_line(Level::Error, view.describe());
                }
                if now.is_empty() && !before.is_empty() {
                    self.log_line(Level::Info, "every rank beats again".into());
                }
                self.ranks = ranks;
            }
        }
    }

    /// The screen keys act on now.
    #[must_use]
    pub fn context(&self) -> Context {
        match self.overlay {
            Overlay::None => Context::Panes,
            Overlay::Help => Context::Help,
            Overlay::ConfirmQuit | Overlay::ConfirmRestart => Context::Dialog,
            Overlay::Sample => Context::Sample,
            Overlay::Log => Context::Log,
        }
    }

    /// The run can still take commands.
    #[must_use]
    pub fn running(&self) -> bool {
        !self.status.state.is_final() && self.gone.is_none() && self.job_status.is_none()
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

    fn say_sticky(&mut self, text: impl Into<String>) {
        self.ack = Some(Ack {
            text: escaped(text.into()),
            at: self.now,
            sticky: true,
        });
    }

    fn key(&mut self, key: KeyEvent) -> Option<Command> {
        let ctrl_c = key.code == KeyCode::Char('c')
            && key
                .modifiers
                .contains(ratatui::crossterm::event::KeyModifiers::CONTROL);
        if ctrl_c && !matches!(self.context(), Context::Panes | Context::Dialog) {
            // Ctrl-C quits from every screen, as from the panes.
            self.log_view.typing = None;
            self.detail = None;
            self.overlay = Overlay::None;
            return self.act(KeyAction::Quit);
        }
        if let Some(typing) = self.log_view.typing.as_mut() {
            match key.code {
                KeyCode::Enter => {
                    self.log_view.query = self.log_view.typing.take().unwrap_or_default();
                    self.log_view.current = None;
                    self.next_match(true, true);
                }
                KeyCode::Esc => {
                    self.log_view.typing = None;
                    self.log_view.query.clear();
                    self.say("search cleared");
                }
                KeyCode::Backspace => {
                    typing.pop();
                }
                KeyCode::Char(c) => typing.push(c),
                _ => self.say("typing a search: Enter searches, Esc clears it"),
            }
            return None;
        }
        let context = self.context();
        let Some(action) = action_for(context, key) else {
            let hint = match context {
                Context::Help => "Esc or ? closes the help",
                Context::Dialog => "y or n",
                Context::Sample | Context::Log => "Esc goes back, ? there lists the keys",
                Context::Panes | Context::Runs => "? lists the keys",
            };
            self.say(format!("{}: not a key here; {hint}", keys::name(key)));
            return None;
        };
        match context {
            Context::Panes | Context::Runs => self.act(action),
            Context::Dialog => self.act_confirming(action),
            Context::Help => {
                match action {
                    KeyAction::Close => {
                        self.overlay = Overlay::None;
                        self.say("help closed");
                    }
                    other => self.help_scroll = self.scrolled(other, self.help_scroll, true),
                }
                None
            }
            Context::Sample => {
                match action {
                    KeyAction::Close => {
                        self.overlay = Overlay::None;
                        self.detail = None;
                    }
                    other => {
                        let position = self.detail.as_ref().map_or(0, |d| d.scroll);
                        let moved = self.scrolled(other, position, true);
                        if let Some(detail) = self.detail.as_mut() {
                            detail.scroll = moved;
                        }
                    }
                }
                None
            }
            Context::Log => {
                self.act_in_log(action);
                None
            }
        }
    }

    /// `position` after a scrolling key, within the view's range. Views
    /// from the top (`from_top`) count lines down; the others count lines
    /// back from the newest.
    fn scrolled(&self, action: KeyAction, position: usize, from_top: bool) -> usize {
        let geometry = self.geometry.get();
        let (rows, max) = match self.overlay {
            Overlay::Help => (
                geometry.help_rows,
                geometry
                    .help_lines
                    .saturating_sub(usize::from(geometry.help_rows)),
            ),
            Overlay::Sample => (
                geometry.detail_rows,
                geometry
                    .detail_lines
                    .saturating_sub(usize::from(geometry.detail_rows)),
            ),
            Overlay::Log => (
                geometry.log_view_rows,
                self.log_lines(geometry.log_view_width, self.log_view.filter)
                    .len()
                    .saturating_sub(usize::from(geometry.log_view_rows)),
            ),
            _ => (
                geometry.log_rows,
                self.log_lines(geometry.log_width, None)
                    .len()
                    .saturating_sub(usize::from(geometry.log_rows)),
            ),
        };
        let page = usize::from(rows.saturating_sub(1)).max(1);
        let down: isize = match action {
            KeyAction::ScrollDown => 1,
            KeyAction::ScrollUp => -1,
            KeyAction::PageDown => page.cast_signed(),
            KeyAction::PageUp => -page.cast_signed(),
            KeyAction::Top => return if from_top { 0 } else { max },
            KeyAction::Bottom => return if from_top { max } else { 0 },
            _ => return position,
        };
        let by = if from_top { down } else { -down };
        position.saturating_add_signed(by).min(max)
    }

    /// The log's lines at `width` (wrapped), at `filter` level and above:
    /// the index of each one's entry, and its text.
    #[must_use]
    pub fn log_lines(&self, width: u16, filter: Option<Level>) -> Vec<(usize, String)> {
        let width = usize::from(width.max(8));
        self.log
            .iter()
            .enumerate()
            .filter(|(_, line)| filter.is_none_or(|f| line.level >= f))
            .flat_map(|(index, line)| {
                wrap(&line.text, width)
                    .into_iter()
                    .map(move |piece| (index, piece))
            })
            .collect()
    }

    /// The log's lines the last `rows` of which, `scroll` lines back from the
    /// newest, are in view: wrapped from the newest back only as far as the
    /// view reaches (a long log costs what the screen shows). Returns the
    /// lines, starting at an entry's first, and the range in view.
    #[must_use]
    pub fn log_window(
        &self,
        width: u16,
        filter: Option<Level>,
        scroll: usize,
        rows: usize,
    ) -> (Vec<(usize, String)>, std::ops::Range<usize>) {
        let want = scroll + rows;
        let mut lines: Vec<(usize, String)> = Vec::new();
        for (index, entry) in self.log.iter().enumerate().rev() {
            if lines.len() >= want {
                break;
            }
            if filter.is_some_and(|f| entry.level < f) {
                continue;
            }
            let pieces = wrap(&entry.text, usize::from(width.max(8)));
            lines.extend(pieces.into_iter().rev().map(|piece| (index, piece)));
        }
        lines.reverse();
        let end = lines
            .len()
            .saturating_sub(scroll)
            .max(rows.min(lines.len()));
        let start = end.saturating_sub(rows);
        (lines, start..end)
    }

    fn act_in_log(&mut self, action: KeyAction) {
        match action {
            KeyAction::Close => {
                self.overlay = Overlay::None;
            }
            KeyAction::Search => {
                self.log_view.typing = Some(String::new());
            }
            KeyAction::NextMatch => self.next_match(true, false),
            KeyAction::PreviousMatch => self.next_match(false, false),
            KeyAction::Filter => {
                self.log_view.filter = match self.log_view.filter {
                    None => Some(Level::Warning),
                    Some(Level::Warning) => Some(Level::Error),
                    Some(_) => None,
                };
                self.log_view.scroll = 0;
                self.log_view.current = None;
                self.say(match self.log_view.filter {
                    None => "showing every line",
                    Some(Level::Warning) => "showing warnings and errors",
                    Some(_) => "showing errors",
                });
            }
            other => self.log_view.scroll = self.scrolled(other, self.log_view.scroll, false),
        }
    }

    /// Scrolls the log view to the next (or previous) line holding the
    /// search, from the line at the top of the view (`here`: including it).
    fn next_match(&mut self, forward: bool, here: bool) {
        let query = self.log_view.query.to_ascii_lowercase();
        if query.is_empty() {
            self.say("no search: / starts one");
            return;
        }
        let geometry = self.geometry.get();
        let lines = self.log_lines(geometry.log_view_width, self.log_view.filter);
        let rows = usize::from(geometry.log_view_rows.max(1));
        let total = lines.len();
        let max = total.saturating_sub(rows);
        // The view's top line, counted from the oldest.
        let top = max - self.log_view.scroll.min(max);
        let hits: Vec<usize> = lines
            .iter()
            .enumerate()
            .filter(|(_, (_, text))| text.to_ascii_lowercase().contains(&query))
            .map(|(index, _)| index)
            .collect();
        let from = self.log_view.current.unwrap_or(top);
        let found = if forward {
            hits.iter()
                .find(|&&i| if here { i >= from } else { i > from })
                .or(hits.first())
        } else {
            hits.iter().rev().find(|&&i| i < from).or(hits.last())
        };
        match found {
            Some(&line) => {
                // The match at the top of the view (or as high as it goes).
                self.log_view.scroll = max - line.min(max);
                self.log_view.current = Some(line);
                let nth = hits.iter().position(|&h| h == line).unwrap_or(0) + 1;
                self.say(format!("match {nth} of {}", hits.len()));
            }
            None => self.say(format!("no line holds \"{}\"", self.log_view.query)),
        }
    }

    fn act(&mut self, action: KeyAction) -> Option<Command> {
        let running = self.running();
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
                match &self.gone {
                    Some(gone) => {
                        let text =
                            format!("the run's process is gone; resume with {}", gone.resume);
                        self.say(text);
                    }
                    None => self.say(format!(
                        "the run is {}; press q to quit",
                        self.status.state.as_str()
                    )),
                }
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
            KeyAction::Restart => {
                self.ask_restart();
                None
            }
            KeyAction::ToggleHelp => {
                self.overlay = Overlay::Help;
                self.help_scroll = 0;
                None
            }
            KeyAction::OpenLog => {
                self.overlay = Overlay::Log;
                self.log_view.scroll = 0;
                None
            }
            KeyAction::Open => {
                self.open_sample();
                None
            }
            KeyAction::ToggleLogScale => {
                self.chart.log_scale = !self.chart.log_scale;
                self.say(if self.chart.log_scale {
                    "loss chart: log scale"
                } else {
                    "loss chart: linear scale"
                });
                None
            }
            KeyAction::ToggleWindow => {
                self.chart.whole_run = !self.chart.whole_run;
                self.say(if self.chart.whole_run {
                    "loss chart: the whole run".to_owned()
                } else {
                    format!("loss chart: the latest {RECENT_POINTS} points")
                });
                None
            }
            KeyAction::ToggleTimeAxis => {
                self.chart.time_axis = !self.chart.time_axis;
                self.say(if self.chart.time_axis {
                    "loss chart: against wall-clock time"
                } else {
                    "loss chart: against steps"
                });
                None
            }
            KeyAction::SmoothLess | KeyAction::SmoothMore => {
                let index = SMOOTHING_STEPS
                    .iter()
                    .position(|&s| s >= self.chart.smoothing)
                    .unwrap_or(0);
                let index = if action == KeyAction::SmoothMore {
                    (index + 1).min(SMOOTHING_STEPS.len() - 1)
                } else {
                    index.saturating_sub(1)
                };
                self.chart.smoothing = SMOOTHING_STEPS[index];
                self.smoothing_chosen = true;
                self.say(match self.chart.smoothing {
                    0 => "smoothing off".to_owned(),
                    steps => format!("smoothing over {steps} steps"),
                });
                None
            }
            KeyAction::FocusNext => {
                self.focus = match self.focus {
                    Focus::Samples => Focus::Events,
                    Focus::Events => Focus::Samples,
                };
                self.say(match self.focus {
                    Focus::Samples => "focus: samples (↑↓ select, Enter opens)",
                    Focus::Events => "focus: events (↑↓ scroll)",
                });
                None
            }
            KeyAction::ScrollUp
            | KeyAction::ScrollDown
            | KeyAction::PageUp
            | KeyAction::PageDown
            | KeyAction::Top
            | KeyAction::Bottom => {
                match self.focus {
                    Focus::Samples => self.move_in_samples(action),
                    Focus::Events => {
                        self.log_scroll = self.scrolled(action, self.log_scroll, false);
                    }
                }
                None
            }
            KeyAction::Confirm
            | KeyAction::Cancel
            | KeyAction::Close
            | KeyAction::Search
            | KeyAction::NextMatch
            | KeyAction::PreviousMatch
            | KeyAction::Filter
            | KeyAction::PreviousRun
            | KeyAction::NextRun
            | KeyAction::SelectRun(_)
            | KeyAction::ToggleShown
            | KeyAction::ShowOnly => None,
        };
        if let Some(command) = &command {
            if self.compared {
                self.say(format!(
                    "sent: {} to {}",
                    command.word(),
                    self.status.run_name
                ));
            } else {
                self.say(format!("sent: {}", command.word()));
            }
        }
        command
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
        self.status.run_name.clone_from(&label);
        self.label = Some(label);
    }

    /// Starts over as `fresh` (an app for the same run, made as at the
    /// start) because the run's events.jsonl was replaced or cut shorter
    /// (log rotation, a folder reused): what was read before belongs to
    /// another run. The view the user chose stays, and so does what is
    /// known of the run's process and of the machine, which the events do
    /// not tell.
    pub fn start_over(&mut self, fresh: App) {
        let old = std::mem::replace(self, fresh);
        self.color = old.color;
        self.ascii = old.ascii;
        self.chart = ChartView {
            smoothing: if old.smoothing_chosen {
                old.chart.smoothing
            } else {
                self.chart.smoothing
            },
            ..old.chart
        };
        self.smoothing_chosen = old.smoothing_chosen;
        self.focus = old.focus;
        self.overlay = match old.overlay {
            // The sample open is the other run's.
            Overlay::Sample => Overlay::None,
            overlay => overlay,
        };
        self.help_scroll = old.help_scroll;
        self.log_view = LogView {
            scroll: 0,
            current: None,
            ..old.log_view
        };
        self.geometry = old.geometry;
        self.quit_when_stopped = old.quit_when_stopped;
        self.exit = old.exit;
        self.owner = old.owner;
        self.resume = old.resume;
        self.gone = old.gone;
        self.ranks = old.ranks;
        self.job_status = old.job_status;
        self.compared = old.compared;
        if let Some(label) = old.label {
            self.set_label(label);
        }
        self.gpus = old.gpus;
        self.host = old.host;
        self.cpu_history = old.cpu_history;
        self.system_note = old.system_note;
        self.now = old.now;
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
        self.chart = other.chart;
        self.smoothing_chosen = other.smoothing_chosen;
    }

    /// The checkpoint a restart would continue from.
    #[must_use]
    pub fn restart_point(&self) -> Option<&str> {
        self.status
            .last_checkpoint
            .as_deref()
            .or(self.status.resumed_from.as_deref())
    }

    fn ask_restart(&mut self) {
        if self.owner != Owner::Trainer {
            self.say("a watched run restarts from its supervisor (--resume auto)");
        } else if self.status.state != RunState::Stalled {
            self.say("r restarts a stalled run; this one is not stalled");
        } else if self.restart_point().is_none() {
            self.say("no checkpoint to restart from: q stops the run");
        } else {
            self.overlay = Overlay::ConfirmRestart;
        }
    }

    fn act_confirming(&mut self, action: KeyAction) -> Option<Command> {
        let restart = self.overlay == Overlay::ConfirmRestart;
        match action {
            KeyAction::Confirm if restart => {
                self.overlay = Overlay::None;
                self.exit = Some(Exit::Restart);
                None
            }
            KeyAction::Confirm if self.owner == Owner::Job && self.quit_when_stopped => {
                // Asked twice, and the job goes on: it is ended, whether it
                // reads its commands or not.
                self.overlay = Overlay::None;
                self.exit = Some(Exit::Now);
                None
            }
            KeyAction::Confirm => {
                self.overlay = Overlay::None;
                self.quit_when_stopped = true;
                self.say_sticky(if self.owner == Owner::Job {
                    "sent: stop (the job saves a checkpoint, then trainui exits); \
                     q y again ends it now"
                } else {
                    "sent: stop (the run saves a checkpoint, then trainui exits)"
                });
                Some(Command::Stop)
            }
            KeyAction::Quit if !restart => {
                self.exit = Some(Exit::Now);
                None
            }
            _ => {
                self.overlay = Overlay::None;
                self.say(if restart {
                    "restart cancelled"
                } else {
                    "quit cancelled"
                });
                None
            }
        }
    }

    fn move_in_samples(&mut self, action: KeyAction) {
        let Some(newest) = self.samples.len().checked_sub(1) else {
            self.say("no samples yet: e evaluates now");
            return;
        };
        let at = self.sample_cursor.unwrap_or(newest);
        let page = usize::from(self.geometry.get().sample_rows / 2).max(1);
        let moved = match action {
            KeyAction::ScrollUp => at.saturating_sub(1),
            KeyAction::ScrollDown => at + 1,
            KeyAction::PageUp => at.saturating_sub(page),
            KeyAction::PageDown => at + page,
            KeyAction::Top => 0,
            _ => newest,
        };
        self.read_at = Some(self.now);
        if moved >= newest {
            self.sample_cursor = None;
            self.unseen_samples = 0;
        } else {
            self.sample_cursor = Some(moved);
        }
    }

    fn open_sample(&mut self) {
        let Some(newest) = self.samples.len().checked_sub(1) else {
            self.say("no samples yet: e evaluates now");
            return;
        };
        let index = self.sample_cursor.unwrap_or(newest);
        self.detail = Some(Detail {
            sample: self.samples[index].clone(),
            scroll: 0,
        });
        self.overlay = Overlay::Sample;
    }

    /// The run's elapsed seconds now: ticking with the clock while the run
    /// lives, fixed once it has ended.
    #[must_use]
    pub fn elapsed_secs(&self) -> f64 {
        let Some((secs, at)) = self.elapsed_at else {
            return self.status.elapsed_secs;
        };
        if self.status.state.is_final() || self.gone.is_some() {
            return self.status.elapsed_secs.max(secs);
        }
        secs + self
            .now
            .duration_since(at)
            .unwrap_or_default()
            .as_secs_f64()
    }

    /// The time left: the trainer's estimate at its latest step, counted
    /// down by the clock while the run trains (an evaluation or a pause
    /// does not bring the end nearer).
    #[must_use]
    pub fn eta_secs(&self) -> Option<f64> {
        let (eta, at) = self.eta_at?;
        if self.status.state == RunState::Training {
            Some((eta - self.secs_since(at)).max(0.0))
        } else {
            Some(eta)
        }
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

    /// Folds one trainer event in, which happened `at`: the run status
    /// first, then what only the screen keeps (curves, samples, the live
    /// generation, the log, the clock).
    #[allow(clippy::too_many_lines)]
    pub fn apply_at(&mut self, event: &Event, at: SystemTime) {
        // Every text shown comes from here, escaped; only the sample's
        // difference is found in the texts as written.
        let written = event;
        let event = &*intake::event(written);
        self.status.apply(event);
        if let Some(label) = &self.label {
            self.status.run_name.clone_from(label);
        }
        self.last_event_at = Some(at);
        match event {
            Event::Started(info) => {
                if info.resumed_from.is_some() {
                    // A resumed run repeats the steps after its checkpoint.
                    let from = info.start_step as f64 + 0.5;
                    self.loss_history.truncate_from(from);
                    self.val_history.truncate_from(from);
                    self.clock_history.truncate_from(from);
                }
                self.elapsed_at = Some((0.0, at));
                if !self.smoothing_chosen {
                    self.chart.smoothing = default_smoothing(info.max_steps);
                }
                self.log_at(
                    at,
                    Level::Info,
                    match &info.resumed_from {
                        Some(from) => format!("resumed from {from} at step {}", info.start_step),
                        None => format!(
                            "started on {}, {} params",
                            info.device,
                            crate::lines::thousands(info.parameters)
                        ),
                    },
                );
            }
            Event::Step(m) => {
                self.elapsed_at = Some((m.elapsed_secs, at));
                self.eta_at = Some((m.eta_secs, at));
                self.clock_history.push(m.step as f64, m.elapsed_secs);
                if m.grad_norm.is_some() {
                    self.grad_norm = m.grad_norm;
                }
                // A loss that is not a number is said in the header, the
                // events and the status; the curves keep the numbers.
                if m.loss.is_finite() {
                    self.loss_history.push(m.step as f64, m.loss);
                }
            }
            Event::State { state, .. } => {
                if *state == RunState::Paused {
                    self.paused_since.get_or_insert(at);
                } else {
                    self.paused_since = None;
                }
            }
            Event::CommandAck {
                command, message, ..
            } => {
                let text = format!("{}: {message}", command.word());
                self.log_at(at, Level::Info, text.clone());
                self.ack = Some(Ack {
                    text,
                    at,
                    sticky: false,
                });
            }
            Event::Warning { step, message } => {
                self.log_at(
                    at,
                    Level::Warning,
                    format!("WARNING at step {step}: {message}"),
                );
                self.last_warning = Some(message.clone());
            }
            Event::EvalStarted {
                step,
                eval,
                samples,
            } => {
                self.log_at(
                    at,
                    Level::Info,
                    format!(
                        "evaluation {eval} at step {step} ({samples} sample{})",
                        if *samples == 1 { "" } else { "s" }
                    ),
                );
                if self.evals.len() == EVALS_KEPT {
                    self.evals.pop_front();
                }
                self.evals.push_back(EvalView {
                    eval: *eval,
                    step: *step,
                    samples: *samples,
                    val_loss: None,
                    summary: None,
                    timeouts: 0,
                    aborts: 0,
                    errors: 0,
                });
                // Back to the newest, unless the user is reading.
                let reading = self.read_at.is_some_and(|read| {
                    at.duration_since(read).unwrap_or_default() < Duration::from_secs(READING_SECS)
                });
                if !reading {
                    self.sample_cursor = None;
                    self.unseen_samples = 0;
                }
            }
            Event::ValLoss { step, loss, .. } => {
                if let Some(eval) = self.evals.back_mut().filter(|e| e.step == *step) {
                    eval.val_loss = *loss;
                }
                if let Some(loss) = loss.filter(|l| l.is_finite()) {
                    self.val_history.push(*step as f64, loss);
                    if self.best_val.is_none_or(|(best, _)| loss < best) {
                        self.best_val = Some((loss, *step));
                    }
                }
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
            Event::Sample(_) => {
                if let Event::Sample(sample) = written {
                    self.add_sample(ShownSample::new(sample));
                }
            }
            Event::EvalFinished(summary) => {
                self.live = None;
                if self.exact_match_history.len() == LOAD_HISTORY {
                    self.exact_match_history.pop_front();
                }
                self.exact_match_history
                    .push_back((100.0 * summary.exact_match).round() as u64);
                if let Some(eval) = self.evals.iter_mut().rev().find(|e| e.eval == summary.eval) {
                    eval.summary = Some(summary.clone());
                }
                let val = summary
                    .val_loss
                    .map_or_else(|| "-".into(), |v| format!("{v:.4}"));
                self.log_at(
                    at,
                    Level::Info,
                    format!(
                        "eval {} at step {}: val loss {val}, exact match {}/{}",
                        summary.eval, summary.step, summary.matches, summary.samples
                    ),
                );
            }
            Event::Stalled {
                step,
                phase,
                silent_secs,
                ..
            } => {
                self.stall = Some(Stall {
                    step: *step,
                    phase: *phase,
                    since: at
                        .checked_sub(Duration::from_secs_f64(silent_secs.max(0.0)))
                        .unwrap_or(at),
                });
                self.log_at(
                    at,
                    Level::Error,
                    format!(
                        "STALLED at step {step} ({}), silent for {silent_secs:.0}s",
                        phase.as_str()
                    ),
                );
            }
            Event::Recovered { step, .. } => {
                self.stall = None;
                self.log_at(at, Level::Info, format!("recovered at step {step}"));
            }
            Event::Control {
                command,
                accepted,
                message,
                ..
            } => {
                let (verdict, level) = if *accepted {
                    ("", Level::Info)
                } else {
                    (" REJECTED", Level::Warning)
                };
                self.log_at(at, level, format!("control {command}{verdict}: {message}"));
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
                self.log_at(at, Level::Warning, format!("WARNING {message}"));
                self.last_warning = Some(message);
            }
            Event::Checkpoint { step, path } => {
                self.log_at(
                    at,
                    Level::Info,
                    format!("checkpoint at step {step}: {path}"),
                );
            }
            Event::Finished(summary) => {
                self.live = None;
                self.paused_since = None;
                self.stall = None;
                self.log_at(
                    at,
                    Level::Info,
                    format!("{} at step {}", summary.state.as_str(), summary.step),
                );
                if self.quit_when_stopped {
                    self.exit = Some(Exit::Done);
                }
            }
            Event::Failed { step, message } => {
                self.live = None;
                self.paused_since = None;
                self.failure = Some(message.clone());
                self.log_at(
                    at,
                    Level::Error,
                    format!("FAILED at step {step}: {message}"),
                );
                if self.quit_when_stopped {
                    self.exit = Some(Exit::Done);
                }
            }
            Event::Settings { .. } => {}
        }
    }

    fn add_sample(&mut self, sample: ShownSample) {
        self.live = None;
        if self.samples.len() == SAMPLES_KEPT {
            self.samples.pop_front();
            if let Some(cursor) = self.sample_cursor.as_mut() {
                *cursor = cursor.saturating_sub(1);
            }
        }
        if self.sample_cursor.is_some() {
            self.unseen_samples += 1;
        }
        if let Some(eval) = self
            .evals
            .back_mut()
            .filter(|e| e.step == sample.result.step)
        {
            match sample.result.outcome {
                GenerationOutcome::TimedOut => eval.timeouts += 1,
                GenerationOutcome::Aborted => eval.aborts += 1,
                GenerationOutcome::Error { .. } => eval.errors += 1,
                GenerationOutcome::Completed => {}
            }
        }
        self.samples.push_back(sample);
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

    fn log_line(&mut self, level: Level, text: String) {
        self.log_at(self.now, level, text);
    }

    fn log_at(&mut self, at: SystemTime, level: Level, text: String) {
        if self.log.len() == LOG_LINES_KEPT {
            self.log.pop_front();
        }
        // A view scrolled back keeps its lines in place as new ones come.
        let geometry = self.geometry.get();
        if self.log_scroll > 0 {
            self.log_scroll += wrap(&text, usize::from(geometry.log_width.max(8))).len();
        }
        if self.log_view.scroll > 0 && self.log_view.filter.is_none_or(|f| level >= f) {
            self.log_view.scroll += wrap(&text, usize::from(geometry.log_view_width.max(8))).len();
        }
        self.log.push_back(LogLine { at, level, text });
    }

    /// One line on how the run ended (or was left), its last checkpoint and
    /// how to go on: printed once the TUI has given the terminal back.
    #[must_use]
    pub fn farewell(&self) -> String {
        let s = &self.status;
        let name = &s.run_name;
        let at = format!("at step {}/{}", s.current_step, s.max_steps);
        let checkpoint = self.restart_point().map_or_else(
            || "no checkpoint".to_owned(),
            |path| format!("last checkpoint {path}"),
        );
        // A job of another framework resumes with its own command.
        let foreign = s.producer.as_ref().is_some_and(|p| p.name != "trainui");
        let resume = self
            .gone
            .as_ref()
            .map(|g| g.resume.clone())
            .or_else(|| self.resume.clone().filter(|_| !foreign));
        let go_on = resume.map_or_else(String::new, |r| format!("; resume: {r}"));
        if let Some(status) = self.job_status {
            return format!("{name}: the job exited with status {status} {at}; {checkpoint}");
        }
        if self.gone.is_some() {
            return format!(
                "{name}: its process is gone {at} without a final state; {checkpoint}{go_on}"
            );
        }
        match s.state {
            RunState::Finished => format!(
                "{name} finished {at} in {}; {checkpoint}",
                crate::lines::duration(s.elapsed_secs)
            ),
            RunState::Stopped => format!("{name} stopped {at}; {checkpoint}{go_on}"),
            RunState::Failed => format!(
                "{name} failed {at}: {}; {checkpoint}{go_on}",
                self.failure.as_deref().unwrap_or("see its log")
            ),
            state if self.owner == Owner::Watcher => format!(
                "left {name} {} {at}; the run goes on (trainui watch to see it again)",
                state.as_str()
            ),
            _ if self.exit == Some(Exit::Restart) => {
                format!("{name} restarts from {checkpoint}")
            }
            _ => format!("{name} quit at once {at} without saving; {checkpoint}{go_on}"),
        }
    }
}

/// `text` with its unsafe characters escaped, not copied when it has none.
fn escaped(text: String) -> String {
    match crate::text::escape(&text) {
        std::borrow::Cow::Owned(escaped) => escaped,
        std::borrow::Cow::Borrowed(_) => text,
    }
}

/// The smoothing window a run of `max_steps` starts with: about a
/// twentieth of the run, from [`SMOOTHING_STEPS`].
#[must_use]
pub fn default_smoothing(max_steps: u64) -> u64 {
    SMOOTHING_STEPS
        .iter()
        .copied()
        .filter(|&s| s > 0 && s <= (max_steps / 20).max(10))
        .max()
        .unwrap_or(10)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::crossterm::event::KeyModifiers;

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
        assert_eq!(app.ack_text(), Some("sent: eval"));
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
        assert!(app.ack_text().is_some_and(|a| a.contains("finished")));
        app.update(key(KeyCode::Char('q')));
        assert_eq!(app.exit, Some(Exit::Done));
    }

    fn stalled(app: &mut App) {
        app.apply(&Event::Stalled {
            step: 3,
            phase: crate::events::Phase::Training,
            silent_secs: 31.0,
            timeout_secs: 30.0,
        });
    }

    #[test]
    fn a_stall_offers_a_restart_from_a_checkpoint_and_asks_first() {
        let mut app = training_app();
        assert_eq!(app.update(key(KeyCode::Char('r'))), None);
        assert_eq!(app.exit, None, "no restart while healthy");
        stalled(&mut app);
        assert_eq!(app.status.state, RunState::Stalled);
        app.apply(&Event::Recovered {
            step: 3,
            phase: crate::events::Phase::Training,
        });
        assert_eq!(app.status.state, RunState::Training);
        // Stalled without a checkpoint: r says there is none, does nothing.
        stalled(&mut app);
        app.update(key(KeyCode::Char('r')));
        assert_eq!((app.exit, app.overlay), (None, Overlay::None));
        assert!(
            app.ack_text().unwrap().contains("no checkpoint"),
            "{:?}",
            app.ack
        );
        // With one: r asks, n cancels, r then y restarts.
        app.apply(&Event::Checkpoint {
            step: 2,
            path: "runs/x/checkpoints/checkpoint-2".into(),
        });
        app.update(key(KeyCode::Char('r')));
        assert_eq!((app.exit, app.overlay), (None, Overlay::ConfirmRestart));
        app.update(key(KeyCode::Char('n')));
        assert_eq!((app.exit, app.overlay), (None, Overlay::None));
        app.update(key(KeyCode::Char('r')));
        app.update(key(KeyCode::Char('y')));
        assert_eq!(app.exit, Some(Exit::Restart));
    }

    #[test]
    fn view_keys_change_only_the_view_and_say_so() {
        let mut app = training_app();
        app.chart.smoothing = 100;
        for (code, check, said) in [
            (
                KeyCode::Char('l'),
                (|a: &App| a.chart.log_scale) as fn(&App) -> bool,
                "log scale",
            ),
            (KeyCode::Char('z'), |a: &App| !a.chart.whole_run, "latest"),
            (
                KeyCode::Char('t'),
                |a: &App| a.chart.time_axis,
                "wall-clock",
            ),
            (
                KeyCode::Tab,
                |a: &App| a.focus == Focus::Events,
                "focus: events",
            ),
            (
                KeyCode::Char(']'),
                |a: &App| a.chart.smoothing == 250,
                "250 steps",
            ),
            (
                KeyCode::Char('['),
                |a: &App| a.chart.smoothing == 100,
                "100 steps",
            ),
        ] {
            assert_eq!(app.update(key(code)), None);
            assert!(check(&app), "{code:?}");
            let ack = app.ack_text().unwrap_or_default();
            assert!(ack.contains(said), "{code:?}: {ack}");
        }
        assert_eq!(app.update(key(KeyCode::Char('?'))), None);
        assert_eq!(app.overlay, Overlay::Help);
    }

    #[test]
    fn every_key_gets_an_answer_and_answers_expire() {
        let mut app = training_app();
        let start = app.now;
        for code in [
            KeyCode::Char(' '),
            KeyCode::Char('x'),
            KeyCode::Char('1'),
            KeyCode::Char('b'),
            KeyCode::F(5),
        ] {
            app.ack = None;
            app.update(key(code));
            let ack = app.ack_text().unwrap_or_default();
            assert!(ack.contains("not a key here"), "{code:?}: {ack}");
        }
        app.update(Msg::Tick(start + Duration::from_secs(ACK_SECS + 1)));
        assert_eq!(app.ack_text(), None, "an answer goes after a few seconds");
        // The help closes on Esc or ?, and says so to any other key.
        app.update(key(KeyCode::Char('?')));
        app.update(key(KeyCode::Char('x')));
        assert_eq!(app.overlay, Overlay::Help);
        assert!(app.ack_text().unwrap().contains("Esc or ? closes the help"));
        app.update(key(KeyCode::Esc));
        assert_eq!(app.overlay, Overlay::None);
        app.update(key(KeyCode::Char('?')));
        app.update(key(KeyCode::Char('?')));
        assert_eq!(app.overlay, Overlay::None);
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
        assert!(app.log.back().unwrap().text.contains("already evaluating"));
    }

    #[test]
    fn a_new_evaluation_brings_the_samples_back_unless_the_user_reads() {
        let mut app = training_app();
        let sample = |step: u64, n: u32| {
            Event::Sample(crate::events::SampleResult {
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
                outcome: crate::events::GenerationOutcome::Completed,
                exact_match: true,
                loss: None,
                elapsed_secs: 0.1,
                tokens_per_sec: 10.0,
                timeout_secs: 60.0,
                counters: crate::events::GenerationCounters::default(),
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
        assert_eq!(app.sample_cursor, Some(1));
        app.apply(&eval(30));
        app.apply(&sample(30, 1));
        assert_eq!(app.sample_cursor, Some(1), "the reader keeps their place");
        assert_eq!(app.unseen_samples, 1);
        // Left alone for a while: the next evaluation brings the newest.
        app.update(Msg::Tick(app.now + Duration::from_secs(READING_SECS + 1)));
        app.apply(&eval(40));
        assert_eq!((app.sample_cursor, app.unseen_samples), (None, 0));
        // End goes back to the newest too.
        app.update(key(KeyCode::Up));
        app.update(key(KeyCode::End));
        assert_eq!(app.sample_cursor, None);
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
        assert!(app.ack_text().unwrap().contains("exited with status 3"));
        assert_eq!(
            app.update(key(KeyCode::Char('e'))),
            None,
            "nothing to send to"
        );
        assert_eq!(app.update(key(KeyCode::Char('q'))), None);
        assert_eq!(app.exit, Some(Exit::Done));
    }

    #[test]
    fn a_job_asked_twice_to_stop_is_ended_and_the_question_says_how() {
        let mut app = App::new("job".into(), 100, false);
        app.owner = Owner::Job;
        app.apply(&Event::State {
            step: 3,
            state: RunState::Training,
        });
        app.update(key(KeyCode::Char('q')));
        assert_eq!(app.update(key(KeyCode::Char('y'))), Some(Command::Stop));
        assert!(app.ack_text().unwrap().contains("q y again ends it now"));
        assert!(app.stop_asked() && app.exit.is_none());
        // The job reads no commands and goes on: q y again ends it.
        app.update(key(KeyCode::Char('q')));
        assert_eq!(app.overlay, Overlay::ConfirmQuit);
        assert_eq!(app.update(key(KeyCode::Char('y'))), None);
        assert_eq!(app.exit, Some(Exit::Now));
        // trainui's own trainer is asked again instead: q q quits it at once.
        let mut trainer = training_app();
        trainer.update(key(KeyCode::Char('q')));
        trainer.update(key(KeyCode::Char('y')));
        trainer.update(key(KeyCode::Char('q')));
        assert_eq!(trainer.update(key(KeyCode::Char('y'))), Some(Command::Stop));
        assert_eq!(trainer.exit, None);
    }

    #[test]
    fn starting_over_forgets_the_other_runs_values_and_keeps_the_view() {
        let mut app = training_app();
        app.set_label("runs/a/exp".into());
        app.compared = true;
        app.apply(&Event::Step(crate::events::StepMetrics {
            grad_norm: Some(9.75),
            ..match crate::events::examples::step(10, 100, 2.0) {
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
        app.start_over(App::new("exp".into(), 0, false));
        assert_eq!(app.grad_norm, None);
        assert_eq!(app.best_val, None);
        assert!(app.val_history.is_empty() && app.loss_history.is_empty());
        assert_eq!(app.status.current_step, 0);
        assert_eq!(app.status.run_name, "runs/a/exp", "the label stays");
        assert!(app.chart.log_scale && app.focus == Focus::Events && app.compared);
        assert!(app.color, "the look stays");
        assert_eq!(app.job_status, Some(0), "the process's end stays");
        assert_eq!(app.log.len(), 1);
        assert!(app.log[0].text.contains("replaced or cut shorter"));
    }
}
