//! The keys' half of [`App::update`]: a key is read in the screen in use
//! (the panes, a dialog, the help, a sample, the log, a search being
//! typed), mapped to its [`KeyAction`] by the key map (`keys.rs`), and the
//! action applied: to the view (`view_state.rs`, the log's view in
//! `event_log.rs`), or as a command for the run, which comes back to be
//! sent.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::app::{App, Exit, Owner};
use super::keys::{self, Context, KeyAction, action_for};
use super::view_state::{Detail, Focus, Overlay};
use trainui_protocol::events::{Command, RunState};

impl App {
    /// Applies a key (pressed or repeated); returns the command it sends.
    pub(super) fn key(&mut self, key: KeyEvent) -> Option<Command> {
        let ctrl_c =
            key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl_c && !matches!(self.context(), Context::Panes | Context::Dialog) {
            // Ctrl-C quits from every screen, as from the panes.
            self.view.log_view.typing = None;
            self.view.detail = None;
            self.view.overlay = Overlay::None;
            return self.act(KeyAction::Quit);
        }
        if self.view.log_view.typing.is_some() {
            if let Some(answer) = self.view.type_in_search(key.code, &self.run.log) {
                self.say(answer);
            }
            return None;
        }
        let context = self.context();
        let Some(action) = action_for(context, key) else {
            let hint = match context {
                Context::Help => "Esc or ? closes the help",
                Context::Dialog => "y or n",
                Context::Sample | Context::Log | Context::Output => {
                    "Esc goes back, ? there lists the keys"
                }
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
                        self.view.overlay = Overlay::None;
                        self.say("help closed");
                    }
                    other => {
                        self.view.help_scroll =
                            self.view
                                .scrolled(other, self.view.help_scroll, true, &self.run.log);
                    }
                }
                None
            }
            Context::Sample => {
                match action {
                    KeyAction::Close => {
                        self.view.overlay = Overlay::None;
                        self.view.detail = None;
                    }
                    other => {
                        let position = self.view.detail.as_ref().map_or(0, |d| d.scroll);
                        let moved = self.view.scrolled(other, position, true, &self.run.log);
                        if let Some(detail) = self.view.detail.as_mut() {
                            detail.scroll = moved;
                        }
                    }
                }
                None
            }
            Context::Log => {
                if let Some(answer) = self.view.act_in_log(action, &self.run.log) {
                    self.say(answer);
                }
                None
            }
            Context::Output => {
                match action {
                    KeyAction::Close => self.view.overlay = Overlay::None,
                    other => self.view.scroll_output(other, self.output.first_number()),
                }
                None
            }
        }
    }

    /// An action of the panes: a command for the run, a chart key, a move,
    /// or an overlay opened.
    fn act(&mut self, action: KeyAction) -> Option<Command> {
        let running = self.running();
        let command = match action {
            KeyAction::EvalNow if running => Some(Command::EvalNow),
            KeyAction::AbortGeneration if running => Some(Command::AbortGeneration),
            KeyAction::TogglePause if running => {
                Some(if self.run.status.state == RunState::Paused {
                    Command::Resume
                } else {
                    Command::Pause
                })
            }
            KeyAction::Save if running => Some(Command::Save),
            KeyAction::EvalNow
            | KeyAction::AbortGeneration
            | KeyAction::TogglePause
            | KeyAction::Save => {
                match &self.process.gone {
                    Some(gone) => {
                        let text =
                            format!("the run's process is gone; resume with {}", gone.resume);
                        self.say(text);
                    }
                    None => self.say(format!(
                        "the run is {}; press q to quit",
                        self.run.status.state.as_str()
                    )),
                }
                None
            }
            KeyAction::Quit => {
                if running && self.owner != Owner::Watcher {
                    self.view.overlay = Overlay::ConfirmQuit;
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
                self.view.overlay = Overlay::Help;
                self.view.help_scroll = 0;
                None
            }
            KeyAction::OpenLog => {
                self.view.overlay = Overlay::Log;
                self.view.log_view.scroll = 0;
                None
            }
            KeyAction::OpenOutput => {
                self.open_output();
                None
            }
            KeyAction::Open => {
                self.open_sample();
                None
            }
            KeyAction::ToggleLogScale
            | KeyAction::ToggleWindow
            | KeyAction::ToggleTimeAxis
            | KeyAction::CycleXAxis
            | KeyAction::CycleSeries
            | KeyAction::SmoothLess
            | KeyAction::SmoothMore => {
                if let Some(said) = self.view.act_on_chart(action) {
                    self.say(said);
                }
                None
            }
            KeyAction::FocusNext => {
                let said = self.view.next_focus();
                self.say(said);
                None
            }
            KeyAction::ScrollUp
            | KeyAction::ScrollDown
            | KeyAction::PageUp
            | KeyAction::PageDown
            | KeyAction::Top
            | KeyAction::Bottom => {
                match self.view.focus {
                    Focus::Samples if super::eval::has_content(self) => {
                        self.move_in_samples(action);
                    }
                    Focus::Samples | Focus::Events => {
                        self.view.log_scroll =
                            self.view
                                .scrolled(action, self.view.log_scroll, false, &self.run.log);
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
            | KeyAction::ShowOnly
            | KeyAction::ShowDiff => None,
        };
        if let Some(command) = &command {
            if self.compared {
                self.say(format!(
                    "sent: {} to {}",
                    command.word(),
                    self.run.status.run_name
                ));
            } else {
                self.say(format!("sent: {}", command.word()));
            }
        }
        command
    }

    /// `r`: a restart where this process trains the run; elsewhere, who
    /// restarts the run, if anyone does (never a supervisor that may not
    /// be there).
    fn ask_restart(&mut self) {
        let foreign = self
            .run
            .status
            .producer
            .as_ref()
            .is_some_and(|p| p.name != "trainui");
        if self.owner == Owner::Job {
            match self.restarts_on_stall {
                Some(times) if times > 0 => self.say(format!(
                    "no key needed: trainui restarts this job from its latest checkpoint \
                     when it stalls (--restart-on-stall {times})"
                )),
                _ => self.say(
                    "nothing restarts this job: trainui run --restart-on-stall N restarts \
                     a job that stalls; q stops this one",
                ),
            }
        } else if self.owner == Owner::Watcher && foreign {
            self.say(
                "r restarts only a run trainui trains; a job is restarted by what started \
                 it (trainui run --restart-on-stall N), if anything",
            );
        } else if self.owner == Owner::Watcher {
            self.say(
                "r restarts only a run this trainui trains; a watched run is restarted by \
                 what started it, if anything (a supervisor with --resume auto)",
            );
        } else if self.run.status.state != RunState::Stalled {
            self.say("r restarts a stalled run; this one is not stalled");
        } else if self.restart_point().is_none() {
            self.say("no checkpoint to restart from: q stops the run");
        } else {
            self.view.overlay = Overlay::ConfirmRestart;
        }
    }

    /// An answer to the quit or restart question.
    fn act_confirming(&mut self, action: KeyAction) -> Option<Command> {
        let restart = self.view.overlay == Overlay::ConfirmRestart;
        match action {
            KeyAction::Confirm if restart => {
                self.view.overlay = Overlay::None;
                self.exit = Some(Exit::Restart);
                None
            }
            KeyAction::Confirm if self.owner == Owner::Job && self.quit_when_stopped => {
                // Asked twice, and the job goes on: it is ended, whether it
                // reads its commands or not.
                self.view.overlay = Overlay::None;
                self.exit = Some(Exit::Now);
                None
            }
            KeyAction::Confirm => {
                self.view.overlay = Overlay::None;
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
                self.view.overlay = Overlay::None;
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
        let count = self.run.samples.len();
        if count == 0 {
            self.say("no samples yet: e evaluates now");
            return;
        }
        let page = usize::from(self.view.geometry.get().sample_rows / 2).max(1);
        self.view.samples.step(action, count, page, self.now);
    }

    fn open_sample(&mut self) {
        let Some(newest) = self.run.samples.len().checked_sub(1) else {
            self.say("no samples yet: e evaluates now");
            return;
        };
        let index = self.view.samples.cursor.unwrap_or(newest);
        self.view.detail = Some(Detail {
            sample: self.run.samples[index].clone(),
            scroll: 0,
        });
        self.view.overlay = Overlay::Sample;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::app::{ACK_SECS, Msg};
    use crate::tui::process::Liveness;
    use std::time::Duration;
    use trainui_protocol::events::Event;

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
        assert_eq!(app.view.overlay, Overlay::ConfirmQuit);
        assert_eq!(app.update(key(KeyCode::Char('y'))), Some(Command::Stop));
        assert_eq!(app.exit, None, "waits for the trainer to stop");
        app.apply(&Event::Finished(trainui_protocol::events::Summary {
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
        assert_eq!(app.view.overlay, Overlay::None);
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
            phase: trainui_protocol::events::Phase::Training,
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
        assert_eq!(app.run.status.state, RunState::Stalled);
        app.apply(&Event::Recovered {
            step: 3,
            phase: trainui_protocol::events::Phase::Training,
        });
        assert_eq!(app.run.status.state, RunState::Training);
        // Stalled without a checkpoint: r says there is none, does nothing.
        stalled(&mut app);
        app.update(key(KeyCode::Char('r')));
        assert_eq!((app.exit, app.view.overlay), (None, Overlay::None));
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
        assert_eq!(
            (app.exit, app.view.overlay),
            (None, Overlay::ConfirmRestart)
        );
        app.update(key(KeyCode::Char('n')));
        assert_eq!((app.exit, app.view.overlay), (None, Overlay::None));
        app.update(key(KeyCode::Char('r')));
        app.update(key(KeyCode::Char('y')));
        assert_eq!(app.exit, Some(Exit::Restart));
    }

    #[test]
    fn view_keys_change_only_the_view_and_say_so() {
        let mut app = training_app();
        app.view.chart.smoothing = 100;
        for (code, check, said) in [
            (
                KeyCode::Char('l'),
                (|a: &App| a.view.chart.log_scale) as fn(&App) -> bool,
                "log scale",
            ),
            (
                KeyCode::Char('z'),
                |a: &App| !a.view.chart.whole_run,
                "latest",
            ),
            (
                KeyCode::Char('t'),
                |a: &App| a.view.chart.time_axis(),
                "wall-clock",
            ),
            (
                KeyCode::Tab,
                |a: &App| a.view.focus == Focus::Events,
                "focus: events",
            ),
            (
                KeyCode::Char(']'),
                |a: &App| a.view.chart.smoothing == 250,
                "250 steps",
            ),
            (
                KeyCode::Char('['),
                |a: &App| a.view.chart.smoothing == 100,
                "100 steps",
            ),
        ] {
            assert_eq!(app.update(key(code)), None);
            assert!(check(&app), "{code:?}");
            let ack = app.ack_text().unwrap_or_default();
            assert!(ack.contains(said), "{code:?}: {ack}");
        }
        assert_eq!(app.update(key(KeyCode::Char('?'))), None);
        assert_eq!(app.view.overlay, Overlay::Help);
    }

    #[test]
    fn every_key_gets_an_answer_and_answers_expire() {
        let mut app = training_app();
        let start = app.now;
        for code in [
            KeyCode::Char(' '),
            KeyCode::Char('X'),
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
        assert_eq!(app.view.overlay, Overlay::Help);
        assert!(app.ack_text().unwrap().contains("Esc or ? closes the help"));
        app.update(key(KeyCode::Esc));
        assert_eq!(app.view.overlay, Overlay::None);
        app.update(key(KeyCode::Char('?')));
        app.update(key(KeyCode::Char('?')));
        assert_eq!(app.view.overlay, Overlay::None);
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
            app.view.overlay,
            Overlay::ConfirmQuit,
            "a running job is stopped, not left"
        );
        app.update(key(KeyCode::Char('n')));
        app.update(Msg::Liveness(Liveness::JobEnded(3)));
        assert_eq!(app.process.job_status, Some(3));
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
        assert_eq!(app.view.overlay, Overlay::ConfirmQuit);
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
}
