//! Several runs on one screen (`trainui watch RUN_A RUN_B ...`): an app per
//! run, the run the panes follow, the runs the chart shows and the
//! settings that differ among them. One run alone is a board of one, drawn
//! and steered as it always was.
//!
//! The chart shows at most [`MAX_CURVES`] curves. Until a key chooses, it
//! shows the followed run and the runs of the lowest latest loss (runs
//! without a loss yet last, in table order): every run when there are no
//! more than [`MAX_CURVES`].

use ratatui::crossterm::event::{KeyCode, KeyEvent};

use super::app::{App, Msg};
use super::keys::{self, Context, KeyAction};
use crate::diff::{self, KeyDiff, Settings};
use trainui_protocol::events::Command;

/// The most curves the chart draws: more could not be told apart.
pub const MAX_CURVES: usize = 16;

/// The runs on the screen, each with its own state.
pub struct Board<'a> {
    pub runs: &'a mut [App],
    /// Per run, once a key chose: its curve is in the chart. `None`: the
    /// chart shows the best runs (see the module's text).
    chosen: Option<Vec<bool>>,
    /// The run the panes below the chart and the steering keys follow.
    selected: usize,
    /// The settings whose values differ among the runs, each run's value
    /// in the board's order.
    differences: Vec<KeyDiff>,
    /// The full-screen view of [`Self::differences`] is open.
    diff_open: bool,
}

impl<'a> Board<'a> {
    /// A board of `runs`, following the first, the best runs shown.
    ///
    /// # Panics
    ///
    /// With no run: a board has at least one.
    pub fn new(runs: &'a mut [App]) -> Self {
        assert!(!runs.is_empty(), "a board has at least one run");
        let compared = runs.len() > 1;
        for app in runs.iter_mut() {
            app.compared = compared;
        }
        Self {
            chosen: None,
            runs,
            selected: 0,
            differences: Vec::new(),
            diff_open: false,
        }
    }

    /// Takes each run's settings (config keys, producer details), in the
    /// board's order, and keeps the ones that differ among the runs.
    pub fn set_settings(&mut self, settings: &[Settings]) {
        self.differences = if settings.len() == self.runs.len() {
            diff::differing(settings)
        } else {
            Vec::new()
        };
    }

    /// The settings whose values differ among the runs.
    #[must_use]
    pub fn differences(&self) -> &[KeyDiff] {
        &self.differences
    }

    /// The full-screen view of the differing settings is open.
    #[must_use]
    pub fn diff_open(&self) -> bool {
        self.diff_open
    }

    /// Several runs share the screen.
    #[must_use]
    pub fn compares(&self) -> bool {
        self.runs.len() > 1
    }

    /// The index of the run the panes follow.
    #[must_use]
    pub fn selected(&self) -> usize {
        self.selected
    }

    /// Per run: whether its curve is in the chart (at most [`MAX_CURVES`]).
    #[must_use]
    pub fn shown_flags(&self) -> Vec<bool> {
        if let Some(chosen) = &self.chosen {
            return chosen.clone();
        }
        let count = self.runs.len();
        if count <= MAX_CURVES {
            return vec![true; count];
        }
        // The followed run first, then the lowest latest losses.
        let mut order: Vec<usize> = (0..count).filter(|&i| i != self.selected).collect();
        let loss = |index: usize| {
            self.runs[index]
                .run
                .status
                .loss
                .filter(|loss| loss.is_finite())
        };
        order.sort_by(|&a, &b| match (loss(a), loss(b)) {
            (Some(x), Some(y)) => x.total_cmp(&y).then(a.cmp(&b)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.cmp(&b),
        });
        let mut flags = vec![false; count];
        for index in std::iter::once(self.selected).chain(order).take(MAX_CURVES) {
            flags[index] = true;
        }
        flags
    }

    /// Whether the `index`-th run's curve is in the chart.
    #[must_use]
    pub fn shown(&self, index: usize) -> bool {
        self.shown_flags()[index]
    }

    /// How many runs the chart shows.
    #[must_use]
    pub fn shown_count(&self) -> usize {
        self.shown_flags().iter().filter(|&&shown| shown).count()
    }

    /// The run the panes follow.
    #[must_use]
    pub fn followed(&self) -> &App {
        &self.runs[self.selected]
    }

    pub fn followed_mut(&mut self) -> &mut App {
        &mut self.runs[self.selected]
    }

    /// A run asked to end the screen (quitting ends it for all).
    #[must_use]
    pub fn exits(&self) -> bool {
        self.runs.iter().any(|app| app.exit.is_some())
    }

    /// Applies `msg` to every run (the clock, the machine's load).
    pub fn update_all(&mut self, msg: &Msg) {
        for app in self.runs.iter_mut() {
            app.update(msg.clone());
        }
    }

    /// The smoothing window of the chart, in steps: one for every run, so
    /// that their curves lag alike; until a key sets it, the shortest run's
    /// own (among the runs whose length is known yet).
    #[must_use]
    pub fn smoothing(&self) -> u64 {
        let known = self.runs.iter().filter(|app| app.run.status.max_steps > 0);
        known
            .map(|app| app.view.chart.smoothing)
            .min()
            .unwrap_or(self.runs[0].view.chart.smoothing)
    }

    /// A key: with several runs on the panes, the board's own keys first;
    /// every other key goes to the followed run. Returns that run's
    /// command, if the key made one.
    pub fn key(&mut self, key: KeyEvent) -> Option<Command> {
        // The view of the differing settings takes every key: the run keys
        // move through the runs, Esc (or d, q) closes it.
        if self.diff_open {
            match key.code {
                KeyCode::Esc | KeyCode::Char('d' | 'q') => self.diff_open = false,
                KeyCode::Left => self.act(KeyAction::PreviousRun),
                KeyCode::Right => self.act(KeyAction::NextRun),
                _ => {}
            }
            return None;
        }
        let app = self.followed();
        if self.compares()
            && app.context() == Context::Panes
            && app.view.log_view.typing.is_none()
            && let Some(action) = keys::action_for(Context::Runs, key)
        {
            self.act(action);
            return None;
        }
        // The keys move the one smoothing the chart shows, not the
        // followed run's own.
        let shared = self.smoothing();
        self.followed_mut().view.chart.smoothing = shared;
        let before = self.followed().view.chart;
        let command = self.followed_mut().update(Msg::Key(key));
        // One chart, one view: a chart key acts on every run's curve.
        if self.followed().view.chart != before {
            let (left, rest) = self.runs.split_at_mut(self.selected);
            if let Some((followed, right)) = rest.split_first_mut() {
                for other in left.iter_mut().chain(right) {
                    other.chart_like(followed);
                }
            }
        }
        command
    }

    fn act(&mut self, action: KeyAction) {
        let count = self.runs.len();
        match action {
            KeyAction::PreviousRun => self.select((self.selected + count - 1) % count),
            KeyAction::NextRun => self.select((self.selected + 1) % count),
            KeyAction::SelectRun(index) if usize::from(index) < count => {
                self.select(usize::from(index));
            }
            KeyAction::SelectRun(index) => {
                let text = format!("no run {}: the table has {count}", index + 1);
                self.followed_mut().say(text);
            }
            KeyAction::ToggleShown => {
                let mut flags = self.shown_flags();
                let shown = !flags[self.selected];
                let full = flags.iter().filter(|&&shown| shown).count() >= MAX_CURVES;
                if shown && full {
                    self.followed_mut().say(format!(
                        "chart: {MAX_CURVES} curves at most; v on a shown run hides it"
                    ));
                    return;
                }
                flags[self.selected] = shown;
                self.chosen = Some(flags);
                let app = self.followed_mut();
                let text = format!(
                    "chart: {} {}",
                    app.run.status.run_name,
                    if shown { "shown" } else { "hidden" }
                );
                app.say(text);
            }
            KeyAction::ShowOnly => {
                let selected = self.selected;
                let others_shown = self
                    .shown_flags()
                    .iter()
                    .enumerate()
                    .any(|(index, &shown)| shown && index != selected);
                let text = if others_shown {
                    let mut alone = vec![false; count];
                    alone[selected] = true;
                    self.chosen = Some(alone);
                    format!("chart: {} alone", self.followed().run.status.run_name)
                } else {
                    self.chosen = None;
                    if count <= MAX_CURVES {
                        format!("chart: all {count} runs")
                    } else {
                        format!("chart: the best {MAX_CURVES} of {count} runs")
                    }
                };
                self.followed_mut().say(text);
            }
            KeyAction::ShowDiff => {
                self.diff_open = true;
                if self.differences.is_empty() {
                    let text = format!("no setting differs among the {count} runs");
                    self.followed_mut().say(text);
                }
            }
            _ => {}
        }
    }

    fn select(&mut self, index: usize) {
        self.selected = index;
        let count = self.runs.len();
        let app = self.followed_mut();
        let text = format!(
            "following {} ({}/{count})",
            app.run.status.run_name,
            index + 1
        );
        app.say(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::crossterm::event::KeyCode;
    use trainui_protocol::events::{Event, RunState};

    fn runs() -> Vec<App> {
        ["alpha", "beta", "gamma"]
            .iter()
            .map(|name| {
                let mut app = App::new((*name).to_owned(), 100, false);
                app.apply(&Event::State {
                    step: 1,
                    state: RunState::Training,
                });
                app
            })
            .collect()
    }

    fn press(board: &mut Board, code: KeyCode) -> Option<Command> {
        board.key(KeyEvent::from(code))
    }

    #[test]
    fn arrows_and_numbers_pick_the_followed_run_and_steering_keys_act_on_it_alone() {
        let mut apps = runs();
        let mut board = Board::new(&mut apps);
        assert!(board.runs.iter().all(|app| app.compared));
        assert_eq!(press(&mut board, KeyCode::Right), None);
        assert_eq!(board.selected, 1);
        assert_eq!(board.followed().ack_text(), Some("following beta (2/3)"));
        press(&mut board, KeyCode::Left);
        press(&mut board, KeyCode::Left);
        assert_eq!(board.selected, 2, "left from the first is the last");
        press(&mut board, KeyCode::Char('2'));
        assert_eq!(board.selected, 1);
        press(&mut board, KeyCode::Char('9'));
        assert_eq!(board.selected, 1);
        assert_eq!(
            board.followed().ack_text(),
            Some("no run 9: the table has 3")
        );
        assert_eq!(
            press(&mut board, KeyCode::Char('e')),
            Some(Command::EvalNow)
        );
        assert_eq!(board.followed().ack_text(), Some("sent: eval to beta"));
    }

    #[test]
    fn v_hides_the_followed_curve_and_o_shows_it_alone_then_all_again() {
        let mut apps = runs();
        let mut board = Board::new(&mut apps);
        press(&mut board, KeyCode::Char('v'));
        assert_eq!(board.shown_flags(), [false, true, true]);
        assert_eq!(board.followed().ack_text(), Some("chart: alpha hidden"));
        press(&mut board, KeyCode::Right);
        press(&mut board, KeyCode::Char('o'));
        assert_eq!(board.shown_flags(), [false, true, false]);
        assert_eq!(board.followed().ack_text(), Some("chart: beta alone"));
        press(&mut board, KeyCode::Char('o'));
        assert_eq!(board.shown_flags(), [true, true, true]);
        assert_eq!(board.followed().ack_text(), Some("chart: all 3 runs"));
    }

    #[test]
    fn a_chart_key_changes_every_runs_view_and_other_screens_keep_their_keys() {
        let mut apps = runs();
        let mut board = Board::new(&mut apps);
        press(&mut board, KeyCode::Char('l'));
        press(&mut board, KeyCode::Char(']'));
        let view = board.runs[0].view.chart;
        assert!(view.log_scale);
        assert!(board.runs.iter().all(|app| app.view.chart == view));
        // In the log, `1` is no run key (nor anything else), and typing a
        // search takes every key.
        press(&mut board, KeyCode::Char('L'));
        press(&mut board, KeyCode::Char('2'));
        assert_eq!(board.selected, 0);
        press(&mut board, KeyCode::Char('/'));
        press(&mut board, KeyCode::Right);
        assert_eq!(board.selected, 0);
    }

    #[test]
    fn the_chart_smooths_every_run_alike_from_the_shortest_runs_window() {
        let mut apps = vec![
            App::new("long".into(), 100_000, false),
            App::new("short".into(), 2_000, false),
        ];
        assert_eq!(
            (apps[0].view.chart.smoothing, apps[1].view.chart.smoothing),
            (5000, 100)
        );
        let mut board = Board::new(&mut apps);
        assert_eq!(board.smoothing(), 100);
        // Following the long run, `]` goes one window up from the shared one.
        press(&mut board, KeyCode::Char(']'));
        assert_eq!(board.smoothing(), 250);
        assert!(board.runs.iter().all(|app| app.view.chart.smoothing == 250));
    }

    #[test]
    fn one_run_alone_has_no_run_keys() {
        let mut apps = runs();
        let mut board = Board::new(&mut apps[..1]);
        assert!(!board.compares());
        press(&mut board, KeyCode::Char('v'));
        assert_eq!(board.shown_flags(), [true]);
        assert_eq!(
            board.followed().ack_text(),
            Some("v: not a key here; ? lists the keys")
        );
        assert_eq!(
            press(&mut board, KeyCode::Char('e')),
            Some(Command::EvalNow)
        );
        assert_eq!(board.followed().ack_text(), Some("sent: eval"));
    }
}
