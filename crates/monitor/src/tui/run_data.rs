//! The fold of a run's events into what the panes show: the run status
//! (the same fold as the status file's), the curves, the evaluations and
//! their samples, the generation in progress, the log, and the clocks the
//! header counts from. Every screen of a run goes through it: the
//! in-process trainer's (`trainui train`), a run directory followed
//! (`trainui watch`, one run or a board of several) and a job started by
//! `trainui run`. It holds no view state: what folding an event asks of the
//! view comes back as a [`Cue`].

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use super::event_log::{EventLog, Level, LogLine};
use super::history::History;
use super::intake;
use trainui_protocol::events::{
    EvalSummary, Event, GenerationOutcome, GenerationStart, Phase, RunState, RunStatus,
    SampleResult,
};

/// Points of the loss curves kept at full resolution, and for the whole run.
pub const RECENT_POINTS: usize = 500;
const WHOLE_RUN_POINTS: usize = 1000;
const SAMPLES_KEPT: usize = 200;
const EVALS_KEPT: usize = 100;
/// Points of the short histories drawn as sparklines (exact match, load).
pub const SPARKLINE_POINTS: usize = 120;

/// A generation in progress.
#[derive(Debug, Clone)]
pub struct LiveGeneration {
    pub start: GenerationStart,
    pub text: String,
    pub tokens: u64,
    pub elapsed_secs: f64,
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

/// A stall in progress.
#[derive(Debug, Clone)]
pub struct Stall {
    pub step: u64,
    pub phase: Phase,
    /// When the trainer was last heard from.
    pub since: SystemTime,
}

/// The run's curves, bounded (see [`History`]).
#[derive(Debug, Clone)]
pub struct Curves {
    pub loss: History,
    pub val: History,
    /// Wall-clock seconds of the run at each logged step, for the time axis.
    pub clock: History,
    /// Exact-match rate of each evaluation, percent.
    pub exact_match: VecDeque<u64>,
    /// The other numbers of step events the chart can draw.
    pub learning_rate: History,
    pub grad_norm: History,
    pub tokens_per_sec: History,
    /// Tokens seen at each logged step, for the tokens axis.
    pub tokens: History,
    pub token_count: super::history::TokenCount,
}

impl Curves {
    fn new() -> Self {
        Self {
            loss: History::new(RECENT_POINTS, WHOLE_RUN_POINTS),
            val: History::new(RECENT_POINTS, WHOLE_RUN_POINTS),
            clock: History::new(RECENT_POINTS, WHOLE_RUN_POINTS),
            exact_match: VecDeque::new(),
            learning_rate: History::new(RECENT_POINTS, WHOLE_RUN_POINTS),
            grad_norm: History::new(RECENT_POINTS, WHOLE_RUN_POINTS),
            tokens_per_sec: History::new(RECENT_POINTS, WHOLE_RUN_POINTS),
            tokens: History::new(RECENT_POINTS, WHOLE_RUN_POINTS),
            token_count: super::history::TokenCount::default(),
        }
    }
}

/// What folding an event asks of the view, besides keeping the log's views
/// in place (which follows from the lines written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cue {
    None,
    /// The run started, `max_steps` long: the chart's smoothing suits its
    /// length, unless the user chose one.
    Started {
        max_steps: u64,
    },
    /// A command was acknowledged: the footer says `text`.
    Acknowledged(String),
    /// An evaluation started: the samples pane goes back to the newest,
    /// unless the user is reading.
    EvalStarted,
    /// A sample arrived; the oldest went to make room when `dropped_oldest`.
    SampleAdded {
        dropped_oldest: bool,
    },
    /// The run ended (finished, stopped or failed).
    Ended,
}

/// What the panes show of one run, folded from its events.
#[derive(Debug)]
pub struct RunData {
    /// The run as the status file shows it (the same fold of the events).
    pub status: RunStatus,
    pub curves: Curves,
    /// The lowest validation loss and its step.
    pub best_val: Option<(f64, u64)>,
    pub grad_norm: Option<f64>,
    pub live: Option<LiveGeneration>,
    /// Finished samples, oldest first.
    pub samples: VecDeque<ShownSample>,
    pub evals: VecDeque<EvalView>,
    pub log: EventLog,
    pub failure: Option<String>,
    pub stall: Option<Stall>,
    pub last_warning: Option<String>,
    /// The run's elapsed seconds at a moment: the clock ticks on from it.
    elapsed_at: Option<(f64, SystemTime)>,
    /// The ETA the trainer gave at a moment: it counts down while training.
    eta_at: Option<(f64, SystemTime)>,
    pub paused_since: Option<SystemTime>,
    /// When the run last said anything.
    pub last_event_at: Option<SystemTime>,
}

impl RunData {
    /// Nothing yet of the run `run_name` (escaped: a folder's name may be
    /// anything), `max_steps` long as far as is known.
    #[must_use]
    pub fn new(run_name: String, max_steps: u64) -> Self {
        Self {
            status: RunStatus::new(intake::escaped(run_name), max_steps),
            curves: Curves::new(),
            best_val: None,
            grad_norm: None,
            live: None,
            samples: VecDeque::new(),
            evals: VecDeque::new(),
            log: EventLog::default(),
            failure: None,
            stall: None,
            last_warning: None,
            elapsed_at: None,
            eta_at: None,
            paused_since: None,
            last_event_at: None,
        }
    }

    /// The run's elapsed seconds at `now`: ticking while the run lives,
    /// fixed once it has ended (or its process is `gone`).
    #[must_use]
    pub fn elapsed_secs(&self, now: SystemTime, gone: bool) -> f64 {
        let Some((secs, at)) = self.elapsed_at else {
            return self.status.elapsed_secs;
        };
        if self.status.state.is_final() || gone {
            return self.status.elapsed_secs.max(secs);
        }
        secs + now.duration_since(at).unwrap_or_default().as_secs_f64()
    }

    /// The time left at `now`: the trainer's estimate at its latest step,
    /// counted down by the clock while the run trains (an evaluation or a
    /// pause does not bring the end nearer).
    #[must_use]
    pub fn eta_secs(&self, now: SystemTime) -> Option<f64> {
        let (eta, at) = self.eta_at?;
        if self.status.state == RunState::Training {
            let since = now.duration_since(at).unwrap_or_default().as_secs_f64();
            Some((eta - since).max(0.0))
        } else {
            Some(eta)
        }
    }

    /// Writes a line in the log.
    pub fn log_at(&mut self, at: SystemTime, level: Level, text: String) {
        self.log.push(LogLine { at, level, text });
    }

    /// Folds one event in, which happened `at`: the run status first, then
    /// what only the screen keeps (curves, samples, the live generation,
    /// the log, the clock). Returns what it asks of the view.
    #[allow(clippy::too_many_lines)]
    pub fn apply_at(&mut self, event: &Event, at: SystemTime) -> Cue {
        // Every text shown comes from here, escaped; only the sample's
        // difference is found in the texts as written.
        let written = event;
        let event = &*intake::event(written);
        self.status.apply(event);
        self.last_event_at = Some(at);
        match event {
            Event::Started(info) => {
                if info.resumed_from.is_some() {
                    // A resumed run repeats the steps after its checkpoint.
                    let from = info.start_step as f64 + 0.5;
                    self.curves.loss.truncate_from(from);
                    self.curves.val.truncate_from(from);
                    self.curves.clock.truncate_from(from);
                    self.curves.learning_rate.truncate_from(from);
                    self.curves.grad_norm.truncate_from(from);
                    self.curves.tokens_per_sec.truncate_from(from);
                    self.curves.tokens.truncate_from(from);
                    let kept = self.curves.tokens.recent().last().map_or(0.0, |p| p.1);
                    self.curves.token_count.resume(kept);
                }
                self.elapsed_at = Some((0.0, at));
                // A process that starts (again, after a stall) is not stalled.
                self.stall = None;
                self.log_at(
                    at,
                    Level::Info,
                    match &info.resumed_from {
                        Some(from) => format!("resumed from {from} at step {}", info.start_step),
                        None => format!(
                            "started on {}, {} params",
                            info.device,
                            trainui_protocol::lines::thousands(info.parameters)
                        ),
                    },
                );
                return Cue::Started {
                    max_steps: info.max_steps,
                };
            }
            Event::Step(m) => {
                self.elapsed_at = Some((m.elapsed_secs, at));
                // None while the producer has no estimate yet (the fold's rule).
                self.eta_at = self.status.eta_secs.map(|eta| (eta, at));
                self.curves.clock.push(m.step as f64, m.elapsed_secs);
                let step = m.step as f64;
                let tokens = self.curves.token_count.step(m);
                self.curves.tokens.push(step, tokens);
                if m.learning_rate.is_finite() {
                    self.curves.learning_rate.push(step, m.learning_rate);
                }
                if let Some(norm) = m.grad_norm.filter(|n| n.is_finite()) {
                    self.curves.grad_norm.push(step, norm);
                }
                if m.tokens_per_sec.is_finite() {
                    self.curves.tokens_per_sec.push(step, m.tokens_per_sec);
                }
                if m.grad_norm.is_some() {
                    self.grad_norm = m.grad_norm;
                }
                // A loss that is not a number is said in the header, the
                // events and the status; the curves keep the numbers.
                if m.loss.is_finite() {
                    self.curves.loss.push(m.step as f64, m.loss);
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
                return Cue::Acknowledged(text);
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
                // One that generates nothing computes a validation loss.
                let what = match samples {
                    0 => String::new(),
                    1 => " (1 sample)".to_owned(),
                    n => format!(" ({n} samples)"),
                };
                self.log_at(
                    at,
                    Level::Info,
                    format!("evaluation {eval} at step {step}{what}"),
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
                return Cue::EvalStarted;
            }
            Event::ValLoss { step, loss, .. } => {
                if let Some(eval) = self.evals.back_mut().filter(|e| e.step == *step) {
                    eval.val_loss = *loss;
                }
                if let Some(loss) = loss.filter(|l| l.is_finite()) {
                    self.curves.val.push(*step as f64, loss);
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
                    return self.add_sample(ShownSample::new(sample));
                }
            }
            Event::EvalFinished(summary) => {
                self.live = None;
                // An evaluation that generated nothing has no match rate.
                if summary.samples > 0 {
                    if self.curves.exact_match.len() == SPARKLINE_POINTS {
                        self.curves.exact_match.pop_front();
                    }
                    self.curves
                        .exact_match
                        .push_back((100.0 * summary.exact_match).round() as u64);
                }
                if let Some(eval) = self.evals.iter_mut().rev().find(|e| e.eval == summary.eval) {
                    eval.summary = Some(summary.clone());
                }
                let val = summary
                    .val_loss
                    .map_or_else(|| "-".into(), |v| format!("{v:.4}"));
                let matched = if summary.samples > 0 {
                    format!(", exact match {}/{}", summary.matches, summary.samples)
                } else {
                    String::new()
                };
                self.log_at(
                    at,
                    Level::Info,
                    format!(
                        "eval {} at step {}: val loss {val}{matched}",
                        summary.eval, summary.step
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
                return Cue::Ended;
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
                return Cue::Ended;
            }
            Event::Settings { .. } => {}
        }
        Cue::None
    }

    fn add_sample(&mut self, sample: ShownSample) -> Cue {
        self.live = None;
        let dropped_oldest = self.samples.len() == SAMPLES_KEPT;
        if dropped_oldest {
            self.samples.pop_front();
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
        Cue::SampleAdded { dropped_oldest }
    }
}
