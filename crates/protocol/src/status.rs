//! The status file's fold: how a [`RunStatus`] follows the events of its
//! run. The type is the contract's (events.rs); what each event changes in
//! it is decided here.

use crate::eta;
use crate::events::{Event, GenerationCounters, RunState, RunStatus, SCHEMA_VERSION};

impl RunStatus {
    #[must_use]
    pub fn new(run_name: String, max_steps: u64) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            run_name,
            state: RunState::Starting,
            current_step: 0,
            max_steps,
            loss: None,
            val_loss: None,
            learning_rate: None,
            tokens_per_sec: None,
            grad_norm: None,
            elapsed_secs: 0.0,
            eta_secs: None,
            device: String::new(),
            evals: 0,
            generations: 0,
            completed: 0,
            timeouts: 0,
            aborts: 0,
            errors: 0,
            timeout_rate: 0.0,
            exact_match: None,
            last_checkpoint: None,
            resumed_from: None,
            warnings: 0,
            last_message: None,
            settings: None,
            nonfinite_steps: 0,
            producer: None,
            state_before_stall: None,
            updated_at: String::new(),
            pid: std::process::id(),
            gpus: Vec::new(),
        }
    }

    /// The timeout rate is above the warning threshold in force.
    #[must_use]
    pub fn timeout_warning(&self) -> bool {
        self.settings
            .as_ref()
            .is_some_and(|s| self.timeouts > 0 && self.timeout_rate > s.eval.timeout_warn_rate)
    }

    fn set_counters(&mut self, counters: &GenerationCounters) {
        self.generations = counters.generations;
        self.completed = counters.completed;
        self.timeouts = counters.timed_out;
        self.aborts = counters.aborted;
        self.errors = counters.errors;
        self.timeout_rate = counters.timeout_rate();
    }

    /// Folds one event in.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::Started(info) => {
                self.run_name.clone_from(&info.run_name);
                self.pid = info.pid;
                self.device.clone_from(&info.device);
                self.current_step = info.start_step;
                self.max_steps = info.max_steps;
                self.resumed_from.clone_from(&info.resumed_from);
                self.evals = info.evals;
                self.set_counters(&info.counters);
                if info.settings.is_some() {
                    self.settings.clone_from(&info.settings);
                }
                self.nonfinite_steps = info.nonfinite_steps;
                self.producer.clone_from(&info.producer);
            }
            Event::Settings { settings, .. } => self.settings = Some(settings.clone()),
            Event::EvalStarted { step, eval, .. } => {
                self.current_step = *step;
                self.evals = *eval;
            }
            Event::ValLoss { loss, .. } => self.val_loss = *loss,
            Event::GenerationStarted(_) | Event::GenerationProgress { .. } => {}
            Event::Sample(sample) => self.set_counters(&sample.counters),
            Event::EvalFinished(summary) => {
                self.exact_match = Some(summary.exact_match);
                self.set_counters(&summary.counters);
            }
            Event::Checkpoint { path, .. } => self.last_checkpoint = Some(path.clone()),
            Event::NonFinite {
                step,
                loss,
                grad_norm,
                action,
                count,
            } => {
                self.nonfinite_steps = *count;
                self.last_message = Some(format!(
                    "non-finite at step {step}: loss {loss}, grad norm {grad_norm} \
                     (train.on_nonfinite = {})",
                    action.as_str()
                ));
            }
            Event::Stalled {
                step,
                phase,
                silent_secs,
                ..
            } => {
                if self.state != RunState::Stalled {
                    self.state_before_stall = Some(self.state);
                }
                self.state = RunState::Stalled;
                self.current_step = *step;
                self.last_message = Some(format!(
                    "stalled: no progress for {silent_secs:.0}s at step {step} ({})",
                    phase.as_str()
                ));
            }
            Event::Control {
                command,
                accepted,
                message,
                ..
            } => {
                let verdict = if *accepted { "accepted" } else { "rejected" };
                self.last_message = Some(format!("{command} {verdict}: {message}"));
            }
            Event::Recovered { .. } => {
                if let Some(state) = self.state_before_stall.take() {
                    self.state = state;
                }
            }
            Event::Step(metrics) => {
                self.current_step = metrics.step;
                self.max_steps = metrics.max_steps;
                self.loss = Some(metrics.loss);
                self.learning_rate = Some(metrics.learning_rate);
                self.tokens_per_sec = Some(metrics.tokens_per_sec);
                if metrics.grad_norm.is_some() {
                    self.grad_norm = metrics.grad_norm;
                }
                self.elapsed_secs = metrics.elapsed_secs;
                self.eta_secs = eta::shown(metrics.step, metrics.max_steps, metrics.eta_secs);
            }
            Event::State { step, state } => {
                self.current_step = *step;
                if self.state == RunState::Stalled {
                    self.state_before_stall = Some(*state);
                } else {
                    self.state = *state;
                }
            }
            Event::CommandAck { message, .. } => self.last_message = Some(message.clone()),
            Event::Warning { message, .. } => {
                self.warnings += 1;
                self.last_message = Some(message.clone());
            }
            Event::Finished(summary) => {
                self.current_step = summary.step;
                self.state = summary.state;
                self.elapsed_secs = summary.elapsed_secs;
                if summary.state == RunState::Finished {
                    self.eta_secs = Some(0.0);
                }
            }
            Event::Failed { step, message } => {
                self.current_step = *step;
                self.state = RunState::Failed;
                self.last_message = Some(message.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::events::{
        Event, LiveCheckpoint, LiveEval, LiveSettings, LiveTrain, LiveWatchdog, RunState,
        RunStatus, Summary, examples,
    };

    #[test]
    fn status_follows_steps_and_the_end_of_the_run() {
        let mut status = RunStatus::new("demo".into(), 10);
        status.apply(&examples::step(5, 10, 2.5));
        assert_eq!((status.current_step, status.loss), (5, Some(2.5)));
        status.apply(&Event::Finished(Summary {
            step: 6,
            max_steps: 10,
            state: RunState::Stopped,
            loss: Some(2.4),
            elapsed_secs: 1.2,
        }));
        assert_eq!((status.current_step, status.state), (6, RunState::Stopped));
        assert!(status.state.is_final());
    }

    #[test]
    fn the_status_follows_the_settings_in_force() {
        let settings = LiveSettings {
            train: LiveTrain { log_steps: 25 },
            eval: LiveEval {
                eval_steps: 250,
                val_batches: 8,
                samples: 8,
                max_new_tokens: 16,
                min_new_tokens: 0,
                eval_timeout_seconds: 60.0,
                temperature: 0.0,
                timeout_warn_rate: 0.1,
            },
            checkpoint: LiveCheckpoint {
                save_steps: 500,
                save_total_limit: 3,
            },
            watchdog: LiveWatchdog {
                stall_timeout_seconds: 300.0,
            },
        };
        let mut status = RunStatus::new("demo".into(), 10);
        status.timeouts = 1;
        status.timeout_rate = 0.25;
        assert!(
            !status.timeout_warning(),
            "no threshold before the run starts"
        );
        status.apply(&Event::Settings {
            step: 1,
            settings: settings.clone(),
        });
        assert!(status.timeout_warning(), "25% is above 10%");
        let mut raised = settings;
        raised.eval.timeout_warn_rate = 0.5;
        status.apply(&Event::Settings {
            step: 2,
            settings: raised,
        });
        assert!(!status.timeout_warning(), "25% is below 50%");
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["settings"]["eval"]["timeout_warn_rate"], 0.5);
    }
}
