//! How the user has set the screen up, apart from the run it shows: the
//! look, the chart's view, the pane in focus, the sample selected, how far
//! each view is scrolled, and the overlay open. Keys change it (through
//! `App::update`); render only reads it, and writes the sizes of the last
//! frame into [`Geometry`].

use std::cell::Cell;
use std::time::{Duration, SystemTime};

use ratatui::crossterm::event::KeyCode;

use super::event_log::{EventLog, LogLine, LogView};
use super::keys::KeyAction;
use super::run_data::{RECENT_POINTS, ShownSample};
use super::wrap::wrap;

/// A user who moved in the samples this recently is reading them: a new
/// evaluation does not pull the pane away.
pub const READING_SECS: u64 = 30;
pub use crate::smooth::SMOOTHING_STEPS;

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
    /// A sample, whole ([`ViewState::detail`]).
    Sample,
    /// The full-screen log ([`ViewState::log_view`]).
    Log,
    /// The job's own output, full screen ([`ViewState::output_top`]).
    Output,
}

/// What the chart draws: a step event's number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Series {
    #[default]
    Loss,
    LearningRate,
    GradNorm,
    TokensPerSec,
}

impl Series {
    pub const ALL: [Self; 4] = [
        Self::Loss,
        Self::LearningRate,
        Self::GradNorm,
        Self::TokensPerSec,
    ];

    /// Its name in titles, legends and `plot --series`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Loss => "loss",
            Self::LearningRate => "learning rate",
            Self::GradNorm => "grad norm",
            Self::TokensPerSec => "tokens/s",
        }
    }

    #[must_use]
    pub fn next(self) -> Self {
        let at = Self::ALL.iter().position(|&s| s == self).unwrap_or(0);
        Self::ALL[(at + 1) % Self::ALL.len()]
    }
}

/// What the chart's x axis counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XAxis {
    #[default]
    Steps,
    /// Tokens trained on so far (`tokens_seen`, or estimated from
    /// tokens/s and the elapsed time where a producer does not record it).
    Tokens,
    /// Wall-clock time of the run.
    Time,
}

impl XAxis {
    /// Its name in titles and on `plot`'s axis.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Steps => "steps",
            Self::Tokens => "tokens",
            Self::Time => "time",
        }
    }

    #[must_use]
    pub fn next(self) -> Self {
        match self {
            Self::Steps => Self::Tokens,
            Self::Tokens => Self::Time,
            Self::Time => Self::Steps,
        }
    }
}

/// How the chart is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChartView {
    pub log_scale: bool,
    /// The whole run (decimated) rather than the recent window.
    pub whole_run: bool,
    /// The series drawn (`c` cycles them).
    pub series: Series,
    /// What the x axis counts (`x` cycles it, `t` toggles steps / time).
    pub x_axis: XAxis,
    /// The smoothing window in steps (0: none), one of [`SMOOTHING_STEPS`].
    pub smoothing: u64,
}

impl ChartView {
    /// Wall-clock time on the x axis.
    #[must_use]
    pub fn time_axis(&self) -> bool {
        self.x_axis == XAxis::Time
    }

    /// Applies a chart key (`l`, `z`, `t`, `x`, `c`, `[`, `]`); returns what
    /// it did, or `None` for any other action.
    pub fn act(&mut self, action: KeyAction) -> Option<String> {
        let said = match action {
            KeyAction::ToggleLogScale => {
                self.log_scale = !self.log_scale;
                if self.log_scale {
                    "loss chart: log scale"
                } else {
                    "loss chart: linear scale"
                }
                .to_owned()
            }
            KeyAction::ToggleWindow => {
                self.whole_run = !self.whole_run;
                if self.whole_run {
                    "loss chart: the whole run".to_owned()
                } else {
                    format!("loss chart: the latest {RECENT_POINTS} points")
                }
            }
            KeyAction::ToggleTimeAxis => {
                self.x_axis = if self.time_axis() {
                    XAxis::Steps
                } else {
                    XAxis::Time
                };
                if self.time_axis() {
                    "loss chart: against wall-clock time"
                } else {
                    "loss chart: against steps"
                }
                .to_owned()
            }
            KeyAction::CycleXAxis => {
                self.x_axis = self.x_axis.next();
                match self.x_axis {
                    XAxis::Steps => "chart: against steps",
                    XAxis::Tokens => "chart: against tokens seen",
                    XAxis::Time => "chart: against wall-clock time",
                }
                .to_owned()
            }
            KeyAction::CycleSeries => {
                self.series = self.series.next();
                format!("chart: {}", self.series.name())
            }
            KeyAction::SmoothLess | KeyAction::SmoothMore => {
                let index = SMOOTHING_STEPS
                    .iter()
                    .position(|&s| s >= self.smoothing)
                    .unwrap_or(0);
                let index = if action == KeyAction::SmoothMore {
                    (index + 1).min(SMOOTHING_STEPS.len() - 1)
                } else {
                    index.saturating_sub(1)
                };
                self.smoothing = SMOOTHING_STEPS[index];
                match self.smoothing {
                    0 => "smoothing off".to_owned(),
                    steps => format!("smoothing over {steps} steps"),
                }
            }
            _ => return None,
        };
        Some(said)
    }
}

/// The sample selected in the samples pane, and whether the user is
/// reading older ones.
#[derive(Debug, Clone, Default)]
pub struct SampleSelection {
    /// The selected sample (an index into the run's samples); none follows
    /// the newest.
    pub cursor: Option<usize>,
    /// When the user last moved in the samples.
    read_at: Option<SystemTime>,
    /// Samples that arrived while the user was reading older ones.
    pub unseen: usize,
}

impl SampleSelection {
    /// Moves by a scrolling `action` among `count` samples (`count` > 0),
    /// a page being `page` samples, at `now`.
    pub fn step(&mut self, action: KeyAction, count: usize, page: usize, now: SystemTime) {
        let newest = count - 1;
        let at = self.cursor.unwrap_or(newest);
        let moved = match action {
            KeyAction::ScrollUp => at.saturating_sub(1),
            KeyAction::ScrollDown => at + 1,
            KeyAction::PageUp => at.saturating_sub(page),
            KeyAction::PageDown => at + page,
            KeyAction::Top => 0,
            _ => newest,
        };
        self.read_at = Some(now);
        if moved >= newest {
            self.cursor = None;
            self.unseen = 0;
        } else {
            self.cursor = Some(moved);
        }
    }

    /// An evaluation started at `at`: back to the newest, unless the user
    /// is reading.
    pub fn evaluation_started(&mut self, at: SystemTime) {
        let reading = self.read_at.is_some_and(|read| {
            at.duration_since(read).unwrap_or_default() < Duration::from_secs(READING_SECS)
        });
        if !reading {
            self.cursor = None;
            self.unseen = 0;
        }
    }

    /// A sample arrived; the oldest went to make room when `dropped_oldest`.
    pub fn sample_added(&mut self, dropped_oldest: bool) {
        if dropped_oldest && let Some(cursor) = self.cursor.as_mut() {
            *cursor = cursor.saturating_sub(1);
        }
        if self.cursor.is_some() {
            self.unseen += 1;
        }
    }
}

/// A sample opened whole.
#[derive(Debug, Clone)]
pub struct Detail {
    pub sample: ShownSample,
    /// Lines scrolled past.
    pub scroll: usize,
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
    /// The job's output full screen: its rows, the number of the line at
    /// its top, and the top line that shows the newest at the bottom.
    pub output_rows: u16,
    pub output_top: u64,
    pub output_newest_top: u64,
}

/// How the user has set the screen up.
#[derive(Debug)]
pub struct ViewState {
    pub color: bool,
    /// ASCII only: no box drawing, braille or typography.
    pub ascii: bool,
    pub chart: ChartView,
    /// The user chose the smoothing window (the run's length no longer does).
    pub smoothing_chosen: bool,
    pub focus: Focus,
    /// The sample selected, and whether the user is reading older ones.
    pub samples: SampleSelection,
    /// Event lines scrolled back from the newest (0 follows new ones).
    pub log_scroll: usize,
    pub overlay: Overlay,
    pub help_scroll: usize,
    pub detail: Option<Detail>,
    pub log_view: LogView,
    /// The job's output full screen: the number of the line at its top
    /// (counted from the first line read); none follows the newest.
    pub output_top: Option<u64>,
    pub geometry: Cell<Geometry>,
}

impl ViewState {
    /// The view a screen starts with: the whole run, smoothed over
    /// `smoothing` steps, the samples in focus.
    #[must_use]
    pub fn new(color: bool, smoothing: u64) -> Self {
        Self {
            color,
            ascii: false,
            chart: ChartView {
                log_scale: false,
                whole_run: true,
                series: Series::Loss,
                x_axis: XAxis::Steps,
                smoothing,
            },
            smoothing_chosen: false,
            focus: Focus::Samples,
            samples: SampleSelection::default(),
            log_scroll: 0,
            overlay: Overlay::None,
            help_scroll: 0,
            detail: None,
            log_view: LogView::default(),
            output_top: None,
            geometry: Cell::new(Geometry::default()),
        }
    }

    /// The view of another run in the same place (the run's events started
    /// over): what it chose stays; what pointed into the run shown (the
    /// sample selected or open, the scrolled positions) goes.
    pub fn start_over(&mut self) {
        self.samples = SampleSelection::default();
        self.log_scroll = 0;
        self.detail = None;
        if self.overlay == Overlay::Sample {
            self.overlay = Overlay::None;
        }
        self.log_view.scroll = 0;
        self.log_view.current = None;
    }

    /// Keeps the log's views that are scrolled back where they are as
    /// `line` arrives.
    pub fn keep_in_place(&mut self, line: &LogLine) {
        let geometry = self.geometry.get();
        if self.log_scroll > 0 {
            self.log_scroll += wrap(&line.text, usize::from(geometry.log_width.max(8))).len();
        }
        let view = &mut self.log_view;
        if view.scroll > 0 && view.filter.is_none_or(|f| line.level >= f) {
            view.scroll += wrap(&line.text, usize::from(geometry.log_view_width.max(8))).len();
        }
    }

    /// A chart key (`l`, `z`, `t`, `[`, `]`): the chart's view changes, and
    /// a smoothing chosen stays chosen. Returns what it did, or `None` for
    /// any other action.
    pub fn act_on_chart(&mut self, action: KeyAction) -> Option<String> {
        let said = self.chart.act(action)?;
        if matches!(action, KeyAction::SmoothLess | KeyAction::SmoothMore) {
            self.smoothing_chosen = true;
        }
        Some(said)
    }

    /// Switches the focus to the other pane; returns what it says.
    pub fn next_focus(&mut self) -> &'static str {
        self.focus = match self.focus {
            Focus::Samples => Focus::Events,
            Focus::Events => Focus::Samples,
        };
        match self.focus {
            Focus::Samples => "focus: samples (↑↓ select, Enter opens)",
            Focus::Events => "focus: events (↑↓ scroll)",
        }
    }

    /// A scrolling key in the job's output, full screen: by a line, a page
    /// or to an end, in whole lines of the output; reaching the newest
    /// follows it again. `first` is the number of the first line kept.
    pub fn scroll_output(&mut self, action: KeyAction, first: u64) {
        let geometry = self.geometry.get();
        let newest = geometry.output_newest_top.max(first);
        let top = self.output_top.unwrap_or(newest).clamp(first, newest);
        let page = u64::from(geometry.output_rows.saturating_sub(1)).max(1);
        let moved = match action {
            KeyAction::ScrollUp => top.saturating_sub(1),
            KeyAction::ScrollDown => top + 1,
            KeyAction::PageUp => top.saturating_sub(page),
            KeyAction::PageDown => top + page,
            KeyAction::Top => first,
            KeyAction::Bottom => newest,
            _ => return,
        };
        let moved = moved.max(first);
        self.output_top = (moved < newest).then_some(moved);
    }

    /// `position` after a scrolling key in the view the overlay (or the
    /// focus) scrolls, within its range. Views from the top (`from_top`)
    /// count lines down; the others count lines back from the newest.
    #[must_use]
    pub fn scrolled(
        &self,
        action: KeyAction,
        position: usize,
        from_top: bool,
        log: &EventLog,
    ) -> usize {
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
                log.lines(geometry.log_view_width, self.log_view.filter)
                    .len()
                    .saturating_sub(usize::from(geometry.log_view_rows)),
            ),
            _ => (
                geometry.log_rows,
                log.lines(geometry.log_width, None)
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

    /// A key of the full-screen log other than its search: closes it,
    /// starts a search, moves between matches, filters or scrolls.
    /// Returns the answer to say, if any.
    pub fn act_in_log(&mut self, action: KeyAction, log: &EventLog) -> Option<String> {
        let geometry = self.geometry.get();
        let (width, rows) = (geometry.log_view_width, geometry.log_view_rows);
        match action {
            KeyAction::Close => {
                self.overlay = Overlay::None;
                None
            }
            KeyAction::Search => {
                self.log_view.typing = Some(String::new());
                None
            }
            KeyAction::NextMatch => Some(self.log_view.next_match(log, width, rows, true, false)),
            KeyAction::PreviousMatch => {
                Some(self.log_view.next_match(log, width, rows, false, false))
            }
            KeyAction::Filter => Some(self.log_view.cycle_filter().to_owned()),
            other => {
                self.log_view.scroll = self.scrolled(other, self.log_view.scroll, false, log);
                None
            }
        }
    }

    /// A key of the search being typed in the full-screen log; returns
    /// the answer to say, if any.
    pub fn type_in_search(&mut self, code: KeyCode, log: &EventLog) -> Option<String> {
        let geometry = self.geometry.get();
        self.log_view
            .type_key(code, log, geometry.log_view_width, geometry.log_view_rows)
    }
}
