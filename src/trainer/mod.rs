//! The trainer thread: it owns every tch object and talks to the rest of the
//! program only through [`Command`]s in and [`Event`]s out, plus the shared
//! abort flag that the decoder checks before every step.

mod batch;
pub mod bench;
pub mod checkpoint;
mod generate;
mod hf_weights;
pub mod inference;
mod llama;
mod model;
mod optim;
mod rng;

use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tch::{Device, Kind, TchError, Tensor, nn};

use crate::config::{Config, DevicePref};
use crate::data::{Example, TextTokenizer};
use crate::events::{
    Command, EvalSummary, Event, GenerationCounters, GenerationOutcome, GenerationStart, RunInfo,
    RunState, SampleResult, StepMetrics, Summary,
};
use crate::hf::{Architecture, HfFolder};
use crate::watchdog::{Heartbeat, Phase};

use batch::{Batcher, IGNORE_INDEX};
use checkpoint::TrainerState;
use generate::{GenerationRequest, generate};
use llama::Llama;
use model::{CausalLm, Gpt, GptShape};
use optim::AdamW;

/// How often a running generation reports its text.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

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

/// Sends commands to the trainer. Cloneable, so that keys, signals and
/// control files can all steer the same run.
#[derive(Clone)]
pub struct Controller {
    commands: Sender<Command>,
    abort: Arc<AtomicBool>,
}

impl Controller {
    /// Queues `command`. Abort (and stop, which must not wait for a long
    /// generation) also raise the abort flag, so the running generation ends
    /// before its next decoding step instead of when the queue is read.
    pub fn send(&self, command: Command) {
        if matches!(command, Command::AbortGeneration | Command::Stop) {
            self.abort.store(true, Ordering::Release);
        }
        let _ = self.commands.send(command);
    }
}

/// The caller's side of a running trainer.
pub struct TrainerHandle {
    pub controller: Controller,
    pub events: Receiver<Event>,
    pub thread: JoinHandle<()>,
    /// Beaten by the trainer at every step and decoding step.
    pub heartbeat: Arc<Heartbeat>,
    /// For helpers (watchdog, control spool) that add events to the stream.
    /// Take it, clone it into them and drop it, or `events` never ends.
    pub event_sender: Option<Sender<Event>>,
}

/// Checks that the requested device exists and names the one that will be
/// used, e.g. `cpu` or `cuda:0`.
pub fn resolve_device(pref: DevicePref) -> Result<String, String> {
    device_of(pref).map(device_name)
}

fn device_of(pref: DevicePref) -> Result<Device, String> {
    match pref {
        DevicePref::Auto => Ok(Device::cuda_if_available()),
        DevicePref::Cpu => Ok(Device::Cpu),
        DevicePref::Cuda(index) => {
            let count = tch::Cuda::device_count();
            if !tch::Cuda::is_available() || count == 0 {
                Err(format!(
                    "device: \"{pref}\" was asked for but CUDA is not available here; \
                     use \"auto\" or \"cpu\""
                ))
            } else if index as i64 >= count {
                Err(format!(
                    "device: \"{pref}\" does not exist; this machine has {count} GPU(s)"
                ))
            } else {
                Ok(Device::Cuda(index))
            }
        }
    }
}

fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(index) => format!("cuda:{index}"),
        _ => "cpu".to_owned(),
    }
}

/// Builds the model of `architecture` on `vs` (weights initialised at random).
fn build_model(vs: &nn::VarStore, architecture: &Architecture) -> Box<dyn CausalLm> {
    match architecture {
        Architecture::Gpt2(config) => Box::new(Gpt::new(&vs.root(), GptShape::of(config))),
        Architecture::Llama(config) => Box::new(Llama::new(&vs.root(), config)),
    }
}

/// Turns `vs` to bfloat16 when `wanted` and it lives on a GPU (on the CPU
/// bfloat16 is slower than float32, so it stays float32). Returns whether it did.
fn use_bf16(vs: &mut nn::VarStore, wanted: bool) -> bool {
    let on = wanted && vs.device().is_cuda();
    if on {
        vs.bfloat16();
    }
    on
}

/// Starts the trainer on its own thread named `trainer`.
pub fn spawn(setup: TrainSetup) -> std::io::Result<TrainerHandle> {
    let (command_tx, command_rx) = mpsc::channel();
    let (event_tx, event_rx) = mpsc::channel();
    let abort = Arc::new(AtomicBool::new(false));
    let controller = Controller {
        commands: command_tx,
        abort: Arc::clone(&abort),
    };
    let heartbeat = Arc::new(Heartbeat::default());
    heartbeat.beat(Phase::Starting);
    let event_sender = Some(event_tx.clone());
    let beats = Arc::clone(&heartbeat);
    let thread = thread::Builder::new()
        .name("trainer".into())
        .spawn(move || {
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
                Trainer::new(setup, &event_tx, abort, Arc::clone(&beats))
                    .and_then(|mut trainer| trainer.run(&command_rx))
            }));
            beats.beat(Phase::Done);
            let failure = match outcome {
                Ok(Ok(())) => None,
                Ok(Err(message)) => Some(message),
                Err(payload) => Some(panic_message(payload.as_ref())),
            };
            if let Some(message) = failure {
                let _ = event_tx.send(Event::Failed {
                    step: beats.step(),
                    message,
                });
            }
        })?;
    Ok(TrainerHandle {
        controller,
        events: event_rx,
        thread,
        heartbeat,
        event_sender,
    })
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    format!("trainer panicked: {text}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

struct Trainer<'a> {
    config: Config,
    events: &'a Sender<Event>,
    abort: Arc<AtomicBool>,
    device: Device,
    vs: nn::VarStore,
    model: Box<dyn CausalLm>,
    architecture: Architecture,
    /// The weights are bfloat16 (see [`use_bf16`]).
    bf16: bool,
    optimizer: AdamW,
    tokenizer: TextTokenizer,
    train: Vec<Example>,
    val: Vec<Example>,
    step: u64,
    evals: u64,
    counters: GenerationCounters,
    /// Training loss at the latest step event.
    last_loss: Option<f64>,
    last_saved_step: Option<u64>,
    /// The latest generation ended by the abort flag (for the command's ack).
    aborted_last: bool,
    /// Commands that arrived during an evaluation, handled after it.
    deferred: VecDeque<Command>,
    /// Progress for the watchdog (and the step, readable after a panic).
    heartbeat: Arc<Heartbeat>,
    /// Test-only fault hook: stop making progress after this step.
    stall_at_step: Option<u64>,
    started: Instant,
}

impl<'a> Trainer<'a> {
    fn new(
        setup: TrainSetup,
        events: &'a Sender<Event>,
        abort: Arc<AtomicBool>,
        heartbeat: Arc<Heartbeat>,
    ) -> Result<Self, String> {
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
            hf_weights::load(&vs, &architecture, &folder.weight_files)?;
        }
        let mut optimizer = AdamW::new(&vs, config.train.weight_decay);

        let mut trainer_state = None;
        if let (Some(path), Some(state)) = (&setup.resume_from, resumed_state) {
            if state.vocab_size != vocab_size {
                return Err(format!(
                    "{}: the checkpoint has a vocabulary of {} tokens, the tokenizer {}",
                    path.display(),
                    state.vocab_size,
                    vocab_size
                ));
            }
            let model_file = path.join(checkpoint::MODEL_FILE);
            vs.load(&model_file)
                .map_err(|err| format!("{}: {err}", model_file.display()))?;
            optimizer.load(&path.join(checkpoint::OPTIMIZER_FILE), state.step)?;
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
        };
        heartbeat.set_step(step);
        let trainer = Self {
            events,
            abort,
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
            last_saved_step: resumed.map(|s| s.step),
            aborted_last: false,
            deferred: VecDeque::new(),
            heartbeat,
            stall_at_step: stall_fault(),
            started: Instant::now()
                .checked_sub(elapsed)
                .unwrap_or_else(Instant::now),
            config,
        };
        trainer.emit(Event::Started(info));
        Ok(trainer)
    }

    /// Sends an event; a consumer that has gone away is not the trainer's
    /// problem, so a closed channel is ignored.
    fn emit(&self, event: Event) {
        let _ = self.events.send(event);
    }

    fn set_state(&self, state: RunState) {
        self.emit(Event::State {
            step: self.step,
            state,
        });
    }

    fn run(&mut self, commands: &Receiver<Command>) -> Result<(), String> {
        let train_cfg = self.config.train.clone();
        let examples = std::mem::take(&mut self.train);
        let mut batcher = Batcher::new(
            &examples,
            train_cfg.batch_size as usize,
            self.config.seed,
            self.device,
        );
        let accum = u64::from(train_cfg.grad_accum_steps);
        let mut loss_sum = Tensor::zeros([], (Kind::Float, self.device));
        let mut steps_since_log = 0u64;
        let mut tokens_since_log = 0u64;
        let mut last_log = Instant::now();
        self.set_state(RunState::Training);

        while self.step < train_cfg.max_steps {
            if self.handle_commands(commands, RunState::Training) == Flow::Stop {
                self.stop();
                return Ok(());
            }
            let learning_rate = optim::learning_rate(&train_cfg, self.step);
            self.optimizer.zero_grad();
            for micro in 0..accum {
                self.heartbeat.beat(Phase::Training);
                let batch = batcher.batch(self.step * accum + micro);
                let loss = self
                    .batch_loss(&batch.input, &batch.target)
                    .map_err(|err| format!("training step {}: {err}", self.step + 1))?
                    / accum as f64;
                loss.backward();
                loss_sum += loss.detach();
                tokens_since_log += batch.tokens;
            }
            if train_cfg.grad_clip > 0.0 {
                self.optimizer.clip_grad_norm(train_cfg.grad_clip);
            }
            self.optimizer.step(learning_rate);
            self.step += 1;
            self.heartbeat.set_step(self.step);
            self.heartbeat.beat(Phase::Training);
            if self.stall_at_step == Some(self.step) {
                hang();
            }
            steps_since_log += 1;

            if self.step.is_multiple_of(train_cfg.log_steps) || self.step == train_cfg.max_steps {
                // The only read-back from the device in the loop.
                let loss = loss_sum.double_value(&[]) / steps_since_log as f64;
                let _ = loss_sum.zero_();
                let interval = last_log.elapsed().as_secs_f64().max(1e-9);
                let secs_per_step = interval / steps_since_log as f64;
                self.emit(Event::Step(StepMetrics {
                    step: self.step,
                    max_steps: train_cfg.max_steps,
                    loss,
                    learning_rate,
                    tokens_per_sec: tokens_since_log as f64 / interval,
                    elapsed_secs: self.started.elapsed().as_secs_f64(),
                    eta_secs: secs_per_step * (train_cfg.max_steps - self.step) as f64,
                }));
                self.last_loss = Some(loss);
                steps_since_log = 0;
                tokens_since_log = 0;
                last_log = Instant::now();
            }
            let eval_steps = self.config.eval.eval_steps;
            if eval_steps > 0
                && self.step.is_multiple_of(eval_steps)
                && self.evaluate(commands, RunState::Training) == Flow::Stop
            {
                self.stop();
                return Ok(());
            }
            let save_steps = self.config.checkpoint.save_steps;
            if save_steps > 0 && self.step.is_multiple_of(save_steps) {
                self.save_checkpoint();
            }
            // Time spent evaluating and saving is not training time.
            if steps_since_log == 0 {
                last_log = Instant::now();
            }
        }
        self.save_checkpoint();
        self.finish(RunState::Finished);
        Ok(())
    }

    /// Mean cross-entropy over the target positions that are not ignored.
    fn batch_loss(&self, input: &Tensor, target: &Tensor) -> Result<Tensor, TchError> {
        let logits = self.model.forward(input)?;
        logits
            .f_reshape([-1, self.model.vocab_size()])?
            .f_cross_entropy_loss::<Tensor>(
                &target.f_reshape([-1])?,
                None,
                tch::Reduction::Mean,
                IGNORE_INDEX,
                0.0,
            )
    }

    /// Applies pending commands; while paused, waits for the next one.
    fn handle_commands(&mut self, commands: &Receiver<Command>, mut state: RunState) -> Flow {
        loop {
            let command = if let Some(command) = self.deferred.pop_front() {
                command
            } else if state == RunState::Paused {
                // Paused is not stalled: keep beating while waiting.
                self.heartbeat.beat(Phase::Paused);
                match commands.recv_timeout(Duration::from_secs(1)) {
                    Ok(command) => command,
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    Err(mpsc::RecvTimeoutError::Disconnected) => return Flow::Stop,
                }
            } else {
                match commands.try_recv() {
                    Ok(command) => command,
                    Err(TryRecvError::Empty) => return Flow::Continue,
                    Err(TryRecvError::Disconnected) => return Flow::Stop,
                }
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
                    if self.evaluate(commands, state) == Flow::Stop {
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
                Command::Reconfigure(settings) => {
                    settings.apply_to(&mut self.config);
                    self.ack(command, "new settings in force".into());
                }
            }
        }
    }

    /// Answers an abort request once the decoder has seen (or missed) it.
    fn ack_abort(&mut self) {
        let unused = self.abort.swap(false, Ordering::AcqRel);
        let message = if self.aborted_last && !unused {
            "aborted the generation".to_owned()
        } else {
            "no generation was running".to_owned()
        };
        self.aborted_last = false;
        self.ack(Command::AbortGeneration, message);
    }

    fn ack(&self, command: Command, message: String) {
        self.emit(Event::CommandAck {
            step: self.step,
            command,
            message,
        });
    }

    /// Between samples: a stop ends the evaluation, an abort is answered,
    /// everything else waits until the evaluation is over.
    fn poll_during_eval(&mut self, commands: &Receiver<Command>) -> Flow {
        loop {
            match commands.try_recv() {
                Ok(Command::Stop) => {
                    self.deferred.push_front(Command::Stop);
                    return Flow::Stop;
                }
                Ok(Command::AbortGeneration) => self.ack_abort(),
                Ok(Command::EvalNow) => self.ack(Command::EvalNow, "already evaluating".into()),
                Ok(command) => self.deferred.push_back(command),
                Err(TryRecvError::Empty) => return Flow::Continue,
                Err(TryRecvError::Disconnected) => return Flow::Stop,
            }
        }
    }

    /// A full evaluation: validation loss, then sample generations compared
    /// with their golden completions. `after` is the state to return to.
    fn evaluate(&mut self, commands: &Receiver<Command>, after: RunState) -> Flow {
        let eval = self.config.eval.clone();
        self.evals += 1;
        let samples = (eval.samples as usize).min(self.val.len()) as u32;
        self.set_state(RunState::Evaluating);
        self.emit(Event::EvalStarted {
            step: self.step,
            eval: self.evals,
            samples,
        });
        let timeout = Duration::from_secs_f64(eval.eval_timeout_seconds);

        let (val_loss, batches, timed_out) = self.validation_loss(Instant::now() + timeout);
        self.emit(Event::ValLoss {
            step: self.step,
            loss: val_loss,
            batches,
            timed_out,
        });
        if timed_out {
            self.emit(Event::Warning {
                step: self.step,
                message: format!(
                    "TIMEOUT: validation loss exceeded {}s at step {}; scored {batches} of {} \
                     batches",
                    eval.eval_timeout_seconds, self.step, eval.val_batches
                ),
            });
        }

        let mut flow = Flow::Continue;
        let mut matches = 0;
        let mut warned = false;
        let mut done = 0;
        for sample in 0..samples {
            if self.poll_during_eval(commands) == Flow::Stop {
                flow = Flow::Stop;
                break;
            }
            let index =
                ((self.evals - 1) * u64::from(samples) + u64::from(sample)) % self.val.len() as u64;
            let result = self.generate_sample(index as usize, sample + 1, samples, timeout);
            matches += u32::from(result.exact_match);
            done += 1;
            self.emit(Event::Sample(result));
            let rate = self.counters.timeout_rate();
            if !warned && self.counters.timed_out > 0 && rate > eval.timeout_warn_rate {
                warned = true;
                self.emit(Event::Warning {
                    step: self.step,
                    message: format!(
                        "timeout rate {:.1}% ({} of {} generations) is above \
                         eval.timeout_warn_rate {:.1}%: generations that do not end point to a \
                         model or data problem (no end-of-text learned yet, or prompts unlike the \
                         training data); the TIMEOUT lines name the examples",
                        100.0 * rate,
                        self.counters.timed_out,
                        self.counters.generations,
                        100.0 * eval.timeout_warn_rate
                    ),
                });
            }
        }
        let gap = val_loss.zip(self.last_loss).map(|(val, train)| val - train);
        self.emit(Event::EvalFinished(EvalSummary {
            step: self.step,
            eval: self.evals,
            val_loss,
            train_loss: self.last_loss,
            gap,
            samples: done,
            matches,
            exact_match: if done == 0 {
                0.0
            } else {
                f64::from(matches) / f64::from(done)
            },
            counters: self.counters,
        }));
        if flow == Flow::Continue {
            self.set_state(after);
        }
        flow
    }

    /// Mean loss over `eval.val_batches` fixed validation batches, stopping at
    /// the deadline. Returns the loss, the batches scored, and whether the
    /// deadline cut it short.
    fn validation_loss(&self, deadline: Instant) -> (Option<f64>, u32, bool) {
        let _no_grad = tch::no_grad_guard();
        let batch_size = self.config.train.batch_size as usize;
        let mut batcher = Batcher::new(&self.val, batch_size, self.config.seed, self.device);
        let mut total = 0.0;
        let mut scored = 0;
        for index in 0..u64::from(self.config.eval.val_batches) {
            if Instant::now() >= deadline {
                return (mean(total, scored), scored, true);
            }
            self.heartbeat.beat(Phase::Validating);
            let batch = batcher.batch(index);
            match self
                .batch_loss(&batch.input, &batch.target)
                .and_then(|l| l.f_double_value(&[]))
            {
                Ok(loss) => {
                    total += loss;
                    scored += 1;
                }
                Err(err) => {
                    self.emit(Event::Warning {
                        step: self.step,
                        message: format!("validation batch {index} failed: {err}"),
                    });
                }
            }
        }
        (mean(total, scored), scored, false)
    }

    /// Generates one validation example and scores it against its golden completion.
    fn generate_sample(
        &mut self,
        index: usize,
        sample: u32,
        of: u32,
        timeout: Duration,
    ) -> SampleResult {
        let eval = &self.config.eval;
        let example = &self.val[index];
        let prompt_tokens = &example.tokens[..example.prompt_len];
        let golden_tokens = &example.tokens[example.prompt_len..example.tokens.len() - 1];
        let decode = |tokens: &[u32]| {
            self.tokenizer
                .decode(tokens)
                .unwrap_or_else(|e| format!("<{e}>"))
        };
        let prompt = decode(prompt_tokens);
        let golden = decode(golden_tokens);
        // Scored before generating, so that nothing stands between a
        // generation's end and its outcome reaching the event stream.
        let loss = self.example_loss(example);
        self.emit(Event::GenerationStarted(GenerationStart {
            step: self.step,
            sample,
            of,
            example: index as u64,
            origin: example.origin.clone(),
            prompt: prompt.clone(),
            golden: golden.clone(),
            golden_tokens: golden_tokens.len() as u64,
            timeout_secs: eval.eval_timeout_seconds,
        }));
        let request = GenerationRequest {
            prompt: prompt_tokens,
            max_new_tokens: eval.max_new_tokens,
            min_new_tokens: eval.min_new_tokens,
            temperature: eval.temperature,
            eot_id: self.tokenizer.eot_id,
            deadline: Instant::now() + timeout,
            abort: &self.abort,
            heartbeat: &self.heartbeat,
            seed: rng::derive_seed(self.config.seed, &[self.evals, u64::from(sample)]),
        };
        let events = self.events;
        let step = self.step;
        let mut last_report = Instant::now();
        let generation = generate(
            &*self.model,
            self.device,
            &request,
            &mut |tokens, elapsed| {
                if last_report.elapsed() >= PROGRESS_INTERVAL {
                    last_report = Instant::now();
                    let _ = events.send(Event::GenerationProgress {
                        step,
                        sample,
                        text: decode(tokens),
                        tokens: tokens.len() as u64,
                        elapsed_secs: elapsed.as_secs_f64(),
                    });
                }
            },
        );
        let output = decode(&generation.tokens);
        self.counters.count(&generation.outcome);
        self.aborted_last = generation.outcome == GenerationOutcome::Aborted;
        let elapsed = generation.elapsed.as_secs_f64();
        SampleResult {
            step: self.step,
            sample,
            of,
            example: index as u64,
            origin: example.origin.clone(),
            exact_match: generation.outcome == GenerationOutcome::Completed
                && output.trim() == golden.trim(),
            prompt,
            golden,
            output,
            golden_tokens: golden_tokens.len() as u64,
            output_tokens: generation.tokens.len() as u64,
            outcome: generation.outcome,
            loss,
            elapsed_secs: elapsed,
            tokens_per_sec: generation.tokens.len() as f64 / elapsed.max(1e-9),
            timeout_secs: eval.eval_timeout_seconds,
            counters: self.counters,
        }
    }

    /// The model's loss on one example's completion, or `None` if it fails.
    fn example_loss(&self, example: &Example) -> Option<f64> {
        let _no_grad = tch::no_grad_guard();
        let batch = batch::pad(std::iter::once(example), self.device);
        self.batch_loss(&batch.input, &batch.target)
            .and_then(|l| l.f_double_value(&[]))
            .ok()
    }

    fn save_checkpoint(&mut self) {
        if self.last_saved_step == Some(self.step) {
            return;
        }
        let state = TrainerState {
            format: 1,
            step: self.step,
            evals: self.evals,
            counters: self.counters,
            last_loss: self.last_loss,
            elapsed_secs: self.started.elapsed().as_secs_f64(),
            vocab_size: self.tokenizer.vocab_size,
            config: self.config.clone(),
            architecture: Some(self.architecture.clone()),
            eot_id: Some(self.tokenizer.eot_id),
            bf16: self.bf16,
        };
        self.heartbeat.beat(Phase::Saving);
        let (vs, optimizer, tokenizer) = (&self.vs, &self.optimizer, &self.tokenizer);
        let saved = checkpoint::save(&self.config.run_dir, &state, |dir| {
            tokenizer.save(&dir.join(checkpoint::TOKENIZER_FILE))?;
            let model_file = dir.join(checkpoint::MODEL_FILE);
            vs.save(&model_file)
                .map_err(|e| format!("{}: {e}", model_file.display()))?;
            let optimizer_file = dir.join(checkpoint::OPTIMIZER_FILE);
            optimizer
                .save(&optimizer_file)
                .map_err(|e| format!("{}: {e}", optimizer_file.display()))
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
            Err(message) => self.emit(Event::Warning {
                step: self.step,
                message: format!(
                    "checkpoint at step {} failed ({message}); earlier checkpoints are intact",
                    self.step
                ),
            }),
        }
    }

    /// Saves, then reports the run as stopped on request.
    fn stop(&mut self) {
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

fn mean(total: f64, count: u32) -> Option<f64> {
    (count > 0).then(|| total / f64::from(count))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::{self, Overlong};
    use crate::data;
    use std::path::Path;

    /// The demo's validation examples.
    pub(crate) fn demo_val() -> Vec<Example> {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let tokenizer = TextTokenizer::load(&repo.join("assets/demo/tokenizer.json")).unwrap();
        let val = repo.join("assets/demo/val.jsonl");
        data::load_examples(&val, &tokenizer, 32, Overlong::Error)
            .unwrap()
            .examples
    }

    /// The tiny config on the demo data, with `sets` applied, in `run_dir`.
    pub(crate) fn tiny_setup(run_dir: &Path, sets: &[&str], val: Vec<Example>) -> TrainSetup {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut sets: Vec<String> = sets.iter().map(|s| (*s).to_owned()).collect();
        sets.push(format!("run_dir={}", run_dir.display()));
        let mut config = config::load(Some(&repo.join("config/tiny.json")), &sets).unwrap();
        config.resolve_paths(repo);
        let tokenizer = TextTokenizer::load(&config.data.tokenizer).unwrap();
        let block = config.model.block_size as usize;
        let train =
            data::load_examples(&config.data.train_file, &tokenizer, block, Overlong::Error)
                .unwrap();
        TrainSetup {
            config,
            run_name: "test".into(),
            tokenizer,
            train: train.examples,
            val,
            skipped_overlong: 0,
            resume_from: None,
            init_from: None,
        }
    }

    #[test]
    fn bfloat16_is_only_used_on_a_gpu() {
        let mut vs = nn::VarStore::new(Device::Cpu);
        let weight = vs.root().zeros("w", &[2]);
        assert!(!use_bf16(&mut vs, true), "a CPU model stays float32");
        assert_eq!(weight.kind(), Kind::Float);
        assert!(!use_bf16(&mut vs, false));
    }

    fn run_to_end(setup: TrainSetup) -> Vec<Event> {
        let mut handle = spawn(setup).unwrap();
        handle.event_sender = None;
        let events: Vec<Event> = handle.events.iter().collect();
        handle.thread.join().unwrap();
        events
    }

    #[test]
    fn a_generation_error_is_an_error_outcome_and_training_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let good = Example {
            tokens: vec![17, 18, 19, 20, 0],
            prompt_len: 3,
            origin: "good:1".into(),
        };
        // A token id far outside the vocabulary: the model's embedding lookup fails.
        let bad = Example {
            tokens: vec![17, 99_999, 19, 0],
            prompt_len: 2,
            origin: "bad:1".into(),
        };
        let sets = [
            "train.max_steps=6",
            "eval.eval_steps=3",
            "eval.samples=2",
            "eval.val_batches=1",
        ];
        let events = run_to_end(tiny_setup(dir.path(), &sets, vec![good, bad]));

        let samples: Vec<&SampleResult> = events
            .iter()
            .filter_map(|e| {
                if let Event::Sample(s) = e {
                    Some(s)
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(samples.len(), 4);
        for sample in &samples {
            match (&sample.outcome, sample.origin.as_str()) {
                (GenerationOutcome::Error { message }, "bad:1") => {
                    assert!(message.contains("index"), "{message}");
                    assert_eq!(sample.loss, None, "its loss cannot be computed either");
                }
                (GenerationOutcome::Completed, "good:1") => assert!(sample.loss.is_some()),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(samples.last().unwrap().counters.errors, 2);
        let Some(Event::Finished(summary)) = events.last() else {
            panic!("the run did not finish: {:?}", events.last());
        };
        assert_eq!((summary.state, summary.step), (RunState::Finished, 6));
        // The validation batch holds the bad example too: a warning, not a failure.
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::Warning { message, .. }
            if message.starts_with("validation batch 0 failed")))
        );
    }

    #[test]
    fn commands_pause_resume_save_and_stop_the_trainer() {
        let dir = tempfile::tempdir().unwrap();
        let setup = tiny_setup(
            dir.path(),
            &["train.max_steps=1000000", "eval.eval_steps=0"],
            demo_val(),
        );
        let mut handle = spawn(setup).unwrap();
        handle.event_sender = None;
        let controller = handle.controller.clone();
        controller.send(Command::Pause);
        controller.send(Command::Save);
        controller.send(Command::Resume);
        controller.send(Command::Stop);
        let events: Vec<Event> = handle.events.iter().collect();
        handle.thread.join().unwrap();
        let acks: Vec<(Command, &str)> = events
            .iter()
            .filter_map(|e| match e {
                Event::CommandAck {
                    command, message, ..
                } => Some((*command, message.as_str())),
                _ => None,
            })
            .collect();
        let commands: Vec<Command> = acks.iter().map(|a| a.0).collect();
        assert_eq!(
            commands,
            [
                Command::Pause,
                Command::Save,
                Command::Resume,
                Command::Stop
            ]
        );
        assert!(events.iter().any(|e| matches!(
            e,
            Event::State {
                state: RunState::Paused,
                ..
            }
        )));
        assert!(events.iter().any(|e| matches!(e, Event::Checkpoint { .. })));
        let Some(Event::Finished(summary)) = events.last() else {
            panic!("{:?}", events.last())
        };
        assert_eq!(summary.state, RunState::Stopped);
    }
}
