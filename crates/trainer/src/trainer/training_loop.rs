//! The training run on the trainer thread: the model and optimizer built or
//! resumed, the training loop, commands at step boundaries, checkpoints.
//! The evaluation lives in `evaluation.rs`.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use tch::{Device, Kind, TchError, Tensor, nn};

use super::batch::{Batcher, IGNORE_INDEX};
use super::device::{build_model, device_name, device_of, use_bf16};
use super::hf_weights;
use super::model::CausalLm;
use super::optim::{self, AdamW};
use crate::checkpoint::{self, TrainerState};
use crate::data::{Example, TextTokenizer};
use crate::hf::{Architecture, HfFolder};
use trainui_protocol::channel::TrainerEnds;
use trainui_protocol::config::{self, Config};
use trainui_protocol::error::{Error, Result};
use trainui_protocol::eta::EtaEstimate;
use trainui_protocol::events::{
    Command, Event, GenerationCounters, OnNonFinite, Phase, Producer, RunInfo, RunState,
    StepMetrics, Summary,
};
use trainui_protocol::watchdog::Heartbeat;

/// Everything a run needs, prepared (and checked) before the thread starts.
pub struct TrainSetup {
    pub config: Config,
    pub run_name: String,
    pub tokenizer: TextTokenizer,
    pub train: Vec<Example>,
    pub val: Vec<Example>,
    pub skipped_overlong: u64,
    /// A verified checkpoint folder to continue from.
    pub resume_from: Option<PathBuf>,
    /// A Hugging Face model folder whose weights start the run (not read
    /// when resuming: the checkpoint has them).
    pub init_from: Option<HfFolder>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
    Continue,
    Stop,
}

/// What the command queue holds.
enum Next {
    Command(Command),
    None,
    /// Every sender is gone.
    NoSenders,
}

pub(super) struct Trainer {
    pub(super) config: Config,
    commands: Receiver<Command>,
    events: Sender<Event>,
    pub(super) abort: Arc<AtomicBool>,
    pub(super) device: Device,
    vs: nn::VarStore,
    pub(super) model: Box<dyn CausalLm>,
    architecture: Architecture,
    /// The weights are bfloat16 (see [`use_bf16`]).
    bf16: bool,
    optimizer: AdamW,
    pub(super) tokenizer: TextTokenizer,
    train: Vec<Example>,
    pub(super) val: Vec<Example>,
    pub(super) step: u64,
    pub(super) evals: u64,
    pub(super) counters: GenerationCounters,
    /// Training loss at the latest step event.
    pub(super) last_loss: Option<f64>,
    /// Steps whose loss or gradient norm was not finite.
    nonfinite_steps: u64,
    last_saved_step: Option<u64>,
    /// The latest generation ended by the abort flag (for the command's ack).
    pub(super) aborted_last: bool,
    /// Commands that arrived during an evaluation, handled after it.
    pub(super) deferred: VecDeque<Command>,
    /// Progress for the watchdog (and the step, readable after a panic).
    pub(super) heartbeat: Arc<Heartbeat>,
    /// Test-only fault hook: stop making progress after this step.
    stall_at_step: Option<u64>,
    started: Instant,
}

impl Trainer {
    /// Builds the model (from scratch, a model folder or a checkpoint) and
    /// announces the run with a `started` event.
    pub(super) fn new(setup: TrainSetup, ends: TrainerEnds) -> Result<Self> {
        let config = setup.config;
        let device = device_of(config.device)?;
        tch::manual_seed(config.seed as i64);
        let mut vs = nn::VarStore::new(device);
        let vocab_size = setup.tokenizer.vocab_size;
        let resumed_state = match &setup.resume_from {
            Some(path) => Some(checkpoint::verify(path)?),
            None => None,
        };
        let architecture = match (&resumed_state, &setup.init_from) {
            (Some(state), _) => state.architecture.clone(),
            (None, Some(folder)) => Some(folder.architecture.clone()),
            (None, None) => None,
        }
        .unwrap_or_else(|| Architecture::gpt2(&config.model, vocab_size));
        let model = build_model(&vs, &architecture);
        let bf16 = use_bf16(
            &mut vs,
            match (&resumed_state, &setup.init_from) {
                (Some(state), _) => state.bf16,
                (None, Some(folder)) => folder.wants_bf16(),
                (None, None) => false,
            },
        );
        if let (None, Some(folder)) = (&resumed_state, &setup.init_from) {
            hf_weights::load(&vs, &architecture, &folder.weights)?;
        }
        let mut optimizer = AdamW::new(&vs, config.train.weight_decay);

        let mut trainer_state = None;
        if let (Some(path), Some(state)) = (&setup.resume_from, resumed_state) {
            if state.vocab_size != vocab_size {
                return Err(Error::Input(format!(
                    "{}: the checkpoint has a vocabulary of {} tokens, the tokenizer {}",
                    path.display(),
                    state.vocab_size,
                    vocab_size
                )));
            }
            let model_file = path.join(checkpoint::MODEL_FILE);
            vs.load(&model_file)
                .map_err(|err| Error::Torch(format!("{}: {err}", model_file.display())))?;
            let updates = state.optimizer_steps.unwrap_or(state.step);
            optimizer.load(&path.join(checkpoint::OPTIMIZER_FILE), updates)?;
            trainer_state = Some(state);
        }
        let resumed = trainer_state.as_ref();
        let step = resumed.map_or(0, |s| s.step);
        let elapsed = Duration::from_secs_f64(resumed.map_or(0.0, |s| s.elapsed_secs));
        let info = RunInfo {
            run_name: setup.run_name,
            pid: std::process::id(),
            device: device_name(device),
            start_step: step,
            max_steps: config.train.max_steps,
            parameters: optimizer.parameter_count(),
            vocab_size,
            train_examples: setup.train.len() as u64,
            val_examples: setup.val.len() as u64,
            skipped_overlong: setup.skipped_overlong,
            resumed_from: setup.resume_from.as_ref().map(|p| p.display().to_string()),
            evals: resumed.map_or(0, |s| s.evals),
            counters: resumed.map_or_else(GenerationCounters::default, |s| s.counters),
            settings: Some(config::live_settings(&config)),
            nonfinite_steps: resumed.map_or(0, |s| s.nonfinite_steps),
            producer: Some(Producer::trainui()),
        };
        ends.heartbeat.set_step(step);
        let trainer = Self {
            commands: ends.commands,
            events: ends.events,
            abort: ends.abort,
            device,
            vs,
            model,
            architecture,
            bf16,
            optimizer,
            tokenizer: setup.tokenizer,
            train: setup.train,
            val: setup.val,
            step,
            evals: info.evals,
            counters: info.counters,
            last_loss: resumed.and_then(|s| s.last_loss),
            nonfinite_steps: info.nonfinite_steps,
            last_saved_step: resumed.map(|s| s.step),
            aborted_last: false,
            deferred: VecDeque::new(),
            heartbeat: ends.heartbeat,
            stall_at_step: stall_fault(),
            started: Instant::now()
                .checked_sub(elapsed)
                .unwrap_or_else(Instant::now),
            config,
        };
        trainer.emit(Event::Started(Box::new(info)));
        Ok(trainer)
    }

    /// Sends an event; a consumer that has gone away is not the trainer's
    /// problem, so a closed channel is ignored.
    pub(super) fn emit(&self, event: Event) {
        let _ = self.events.send(event);
    }

    pub(super) fn set_state(&self, state: RunState) {
        self.emit(Event::State {
            step: self.step,
            state,
        });
    }

    /// Trains to `train.max_steps`, or until stopped.
    pub(super) fn run(&mut self) -> Result<()> {
        let examples = std::mem::take(&mut self.train);
        let train = self.config.train.clone();
        let mut batcher = Batcher::new(
            &examples,
            train.batch_size as usize,
            self.config.seed,
            self.device,
        );
        let accum = u64::from(train.grad_accum_steps);
        // Losses of the steps since the last step event (skipped ones left
        // out), and whether a non-finite step was reported in that window.
        let (mut loss_sum, mut losses) = (0.0, 0u64);
        let mut nonfinite_reported = false;
        let mut steps_since_log = 0u64;
        let mut tokens_since_log = 0u64;
        // Since this process began training: readers add a resumed run's
        // count at its start step.
        let mut tokens_seen = 0u64;
        // Time spent in training steps since the last step event: commands,
        // pauses, evaluations and saves between steps are left out, so the
        // rate and the ETA are those of training.
        let mut train_time = Duration::ZERO;
        let mut eta = EtaEstimate::new();
        let mut grad_norm_sum = 0.0;
        self.set_state(RunState::Training);

        while self.step < train.max_steps {
            if self.handle_commands(RunState::Training) == Flow::Stop {
                self.stop();
                return Ok(());
            }
            let step_began = Instant::now();
            let learning_rate = optim::learning_rate(&train, self.step);
            self.optimizer.zero_grad();
            // The step's loss is the mean over the target tokens of all its
            // micro-batches, so accumulating k micro-batches of B examples
            // trains exactly as one batch of k*B.
            let micro_batches: Vec<_> = (0..accum)
                .map(|micro| batcher.batch(self.step * accum + micro))
                .collect();
            let targets = micro_batches.iter().map(|b| b.targets).sum::<u64>().max(1);
            let mut step_loss = Tensor::zeros([], (Kind::Float, self.device));
            for batch in &micro_batches {
                self.heartbeat.beat(Phase::Training);
                let loss = self
                    .batch_loss(&batch.input, &batch.target, tch::Reduction::Sum)
                    .map_err(|err| {
                        Error::Torch(format!("training step {}: {err}", self.step + 1))
                    })?
                    / targets as f64;
                loss.backward();
                step_loss += loss.detach();
                tokens_since_log += batch.tokens;
                tokens_seen += batch.tokens;
            }
            drop(micro_batches);
            let grad_norm = self.optimizer.grad_norm().to_device(self.device);
            // The one read-back from the device a step: are loss and
            // gradient norm finite?
            let (loss, norm) = read_pair(&step_loss, &grad_norm);
            let finite = loss.is_finite() && norm.is_finite();
            if !finite {
                self.nonfinite_steps += 1;
                let action = train.on_nonfinite;
                if !nonfinite_reported || action == OnNonFinite::Stop {
                    nonfinite_reported = true;
                    self.emit(Event::NonFinite {
                        step: self.step + 1,
                        loss,
                        grad_norm: norm,
                        action,
                        count: self.nonfinite_steps,
                    });
                }
                if action == OnNonFinite::Stop {
                    return Err(Error::Failed(format!(
                        "step {}: the loss is {loss} and the gradient norm {norm}; the run \
                         stops without saving (train.on_nonfinite = stop){}",
                        self.step + 1,
                        self.last_saved_step
                            .map_or_else(String::new, |step| format!(
                                ": checkpoint-{step} is the last good one"
                            ))
                    )));
                }
            }
            if finite || train.on_nonfinite == OnNonFinite::Warn {
                if train.grad_clip > 0.0 {
                    self.optimizer.clip_grad_norm(&grad_norm, train.grad_clip);
                }
                self.optimizer.step(learning_rate);
                loss_sum += loss;
                grad_norm_sum += norm;
                losses += 1;
            }
            train_time += step_began.elapsed();
            self.step += 1;
            self.heartbeat.set_step(self.step);
            self.heartbeat.beat(Phase::Training);
            if self.stall_at_step == Some(self.step) {
                hang();
            }
            steps_since_log += 1;

            if self.step.is_multiple_of(self.config.train.log_steps) || self.step == train.max_steps
            {
                // No step of the window had a finite loss: NaN says so.
                let loss = if losses == 0 {
                    f64::NAN
                } else {
                    loss_sum / losses as f64
                };
                let interval = train_time.as_secs_f64().max(1e-9);
                eta.window(steps_since_log, train_time.as_secs_f64());
                self.emit(Event::Step(StepMetrics {
                    step: self.step,
                    max_steps: train.max_steps,
                    loss,
                    learning_rate,
                    tokens_per_sec: tokens_since_log as f64 / interval,
                    elapsed_secs: self.started.elapsed().as_secs_f64(),
                    eta_secs: eta.eta_secs(train.max_steps - self.step),
                    grad_norm: (losses > 0).then(|| grad_norm_sum / losses as f64),
                    tokens_seen: Some(tokens_seen),
                }));
                self.last_loss = Some(loss);
                (loss_sum, grad_norm_sum, losses) = (0.0, 0.0, 0);
                nonfinite_reported = false;
                steps_since_log = 0;
                tokens_since_log = 0;
                train_time = Duration::ZERO;
            }
            let eval_steps = self.config.eval.eval_steps;
            if eval_steps > 0
                && self.step.is_multiple_of(eval_steps)
                && self.evaluate(RunState::Training) == Flow::Stop
            {
                self.stop();
                return Ok(());
            }
            let save_steps = self.config.checkpoint.save_steps;
            if save_steps > 0 && self.step.is_multiple_of(save_steps) {
                self.save_checkpoint();
            }
        }
        self.save_checkpoint();
        self.finish(RunState::Finished);
        Ok(())
    }

    /// Cross-entropy over the target positions that are not ignored, their
    /// mean or their sum.
    pub(super) fn batch_loss(
        &self,
        input: &Tensor,
        target: &Tensor,
        reduction: tch::Reduction,
    ) -> std::result::Result<Tensor, TchError> {
        let logits = self.model.forward(input)?;
        logits
            .f_reshape([-1, self.model.vocab_size()])?
            .f_cross_entropy_loss::<Tensor>(
                &target.f_reshape([-1])?,
                None,
                reduction,
                IGNORE_INDEX,
                0.0,
            )
    }

    /// The next command: one put off during an evaluation first, then the
    /// queue; while paused, waits for one (beating, since paused is not
    /// stalled).
    fn next_command(&mut self, paused: bool) -> Next {
        if let Some(command) = self.deferred.pop_front() {
            return Next::Command(command);
        }
        if paused {
            loop {
                self.heartbeat.beat(Phase::Paused);
                match self.commands.recv_timeout(Duration::from_secs(1)) {
                    Ok(command) => return Next::Command(command),
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => return Next::NoSenders,
                }
            }
        }
        match self.commands.try_recv() {
            Ok(command) => Next::Command(command),
            Err(TryRecvError::Empty) => Next::None,
            Err(TryRecvError::Disconnected) => Next::NoSenders,
        }
    }

    /// Applies pending commands; while paused, waits for the next one.
    fn handle_commands(&mut self, mut state: RunState) -> Flow {
        loop {
            let command = match self.next_command(state == RunState::Paused) {
                Next::None => return Flow::Continue,
                // Nobody can steer the run any more.
                Next::NoSenders => return Flow::Stop,
                Next::Command(command) => command,
            };
            match command {
                Command::Stop => {
                    self.abort.store(false, Ordering::Release);
                    self.ack(command, format!("stopping at step {}", self.step));
                    return Flow::Stop;
                }
                Command::Pause if state != RunState::Paused => {
                    state = RunState::Paused;
                    self.set_state(state);
                    self.ack(command, format!("paused at step {}", self.step));
                }
                Command::Resume if state == RunState::Paused => {
                    state = RunState::Training;
                    self.set_state(state);
                    self.ack(command, format!("resumed at step {}", self.step));
                }
                Command::Pause => self.ack(command, "already paused".into()),
                Command::Resume => self.ack(command, "not paused".into()),
                Command::EvalNow => {
                    self.ack(command, format!("evaluating at step {}", self.step));
                    if self.evaluate(state) == Flow::Stop {
                        return Flow::Stop;
                    }
                }
                Command::Save => {
                    self.ack(
                        command,
                        format!("saving a checkpoint at step {}", self.step),
                    );
                    self.last_saved_step = None;
                    self.save_checkpoint();
                }
                Command::AbortGeneration => self.ack_abort(),
                Command::Set(changes) => self.change_settings(changes),
            }
        }
    }

    /// Makes a `set` change to the config in force and reports the settings
    /// that result; an evaluation already running keeps the settings it
    /// started with.
    pub(super) fn change_settings(&mut self, changes: BTreeMap<String, Value>) {
        let message = match config::change_live(&self.config, &changes, "set") {
            Ok((_, applied)) if applied.is_empty() => "no change".to_owned(),
            Ok((result, applied)) => {
                self.config = result;
                self.heartbeat
                    .set_stall_timeout(self.config.watchdog.stall_timeout_seconds.duration());
                self.emit(Event::Settings {
                    step: self.step,
                    settings: config::live_settings(&self.config),
                });
                format!("applied {}", applied.join(", "))
            }
            Err(err) => format!("rejected: {err}"),
        };
        self.ack(Command::Set(changes), message);
    }

    /// Answers an abort request once the decoder has seen (or missed) it.
    pub(super) fn ack_abort(&mut self) {
        let unused = self.abort.swap(false, Ordering::AcqRel);
        let message = if self.aborted_last && !unused {
            "aborted the generation".to_owned()
        } else {
            "no generation was running".to_owned()
        };
        self.aborted_last = false;
        self.ack(Command::AbortGeneration, message);
    }

    pub(super) fn ack(&self, command: Command, message: String) {
        self.emit(Event::CommandAck {
            step: self.step,
            command,
            message,
        });
    }

    /// Reads the next queued command without waiting (for the evaluation,
    /// between samples).
    pub(super) fn try_command(&self) -> std::result::Result<Command, TryRecvError> {
        self.commands.try_recv()
    }

    fn save_checkpoint(&mut self) {
        if self.last_saved_step == Some(self.step) {
            return;
        }
        if !self.optimizer.parameters_finite() {
            // Nothing is saved, and so nothing pruned: the newest checkpoint
            // stays the last good one.
            self.emit(Event::Warning {
                step: self.step,
                message: format!(
                    "no checkpoint at step {}: the weights are not finite (NaN or infinite){}",
                    self.step,
                    self.last_saved_step
                        .map_or_else(String::new, |step| format!(
                            "; checkpoint-{step} is the last good one"
                        ))
                ),
            });
            return;
        }
        let state = TrainerState {
            format: 1,
            step: self.step,
            optimizer_steps: Some(self.optimizer.steps()),
            evals: self.evals,
            counters: self.counters,
            last_loss: self.last_loss,
            elapsed_secs: self.started.elapsed().as_secs_f64(),
            vocab_size: self.tokenizer.vocab_size,
            config: self.config.clone(),
            architecture: Some(self.architecture.clone()),
            eot_id: Some(self.tokenizer.eot_id),
            bf16: self.bf16,
            nonfinite_steps: self.nonfinite_steps,
        };
        self.heartbeat.beat(Phase::Saving);
        let (vs, optimizer, tokenizer) = (&self.vs, &self.optimizer, &self.tokenizer);
        let saved = checkpoint::save(&self.config.run_dir, &state, |dir| {
            tokenizer.save(&dir.join(checkpoint::TOKENIZER_FILE))?;
            let torch = |path: &std::path::Path, e: TchError| {
                Error::Torch(format!("{}: cannot write: {e}", path.display()))
            };
            let model_file = dir.join(checkpoint::MODEL_FILE);
            vs.save(&model_file).map_err(|e| torch(&model_file, e))?;
            let optimizer_file = dir.join(checkpoint::OPTIMIZER_FILE);
            optimizer
                .save(&optimizer_file)
                .map_err(|e| torch(&optimizer_file, e))
        });
        match saved {
            Ok(path) => {
                self.last_saved_step = Some(self.step);
                self.emit(Event::Checkpoint {
                    step: self.step,
                    path: path.display().to_string(),
                });
                checkpoint::prune(
                    &self.config.run_dir,
                    self.config.checkpoint.save_total_limit,
                );
            }
            Err(err) => self.emit(Event::Warning {
                step: self.step,
                message: format!(
                    "checkpoint at step {} failed ({err}); earlier checkpoints are intact",
                    self.step
                ),
            }),
        }
    }

    /// Saves, then reports the run as stopped on request.
    pub(super) fn stop(&mut self) {
        self.set_state(RunState::Stopping);
        self.save_checkpoint();
        self.finish(RunState::Stopped);
    }

    fn finish(&self, state: RunState) {
        self.emit(Event::Finished(Summary {
            step: self.step,
            max_steps: self.config.train.max_steps,
            state,
            loss: self.last_loss,
            elapsed_secs: self.started.elapsed().as_secs_f64(),
        }));
    }
}

/// Two scalars of the device, read back in one transfer.
fn read_pair(a: &Tensor, b: &Tensor) -> (f64, f64) {
    let pair = Tensor::stack(&[a.to_kind(Kind::Double), b.to_kind(Kind::Double)], 0)
        .to_device(Device::Cpu);
    (pair.double_value(&[0]), pair.double_value(&[1]))
}

/// `TRAINUI_FAULT=stall_at_step:N` makes the trainer stop making progress
/// after step N, as if an operation never returned. For testing the stall
/// watchdog only; without the variable nothing changes.
fn stall_fault() -> Option<u64> {
    std::env::var("TRAINUI_FAULT")
        .ok()?
        .strip_prefix("stall_at_step:")?
        .parse()
        .ok()
}

/// Never returns and never beats: what a hung libtorch call looks like.
fn hang() -> ! {
    loop {
        thread::park();
    }
}
