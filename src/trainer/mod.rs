//! The trainer thread: it owns every tch object and talks to the rest of the
//! program only through [`Command`]s in and [`Event`]s out.

mod batch;
mod model;
mod optim;

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use tch::{Device, Kind, Tensor, nn};

use crate::config::{Config, DevicePref};
use crate::data::Example;
use crate::events::{Command, Event, RunInfo, RunState, StepMetrics, Summary};

use batch::{Batcher, IGNORE_INDEX};
use model::{Gpt, GptShape};
use optim::AdamW;

/// Everything a run needs, prepared (and checked) before the thread starts.
pub struct TrainSetup {
    pub config: Config,
    pub run_name: String,
    pub train: Vec<Example>,
    pub val: Vec<Example>,
    pub skipped_overlong: u64,
    pub vocab_size: u32,
}

/// The caller's side of a running trainer.
pub struct TrainerHandle {
    pub commands: Sender<Command>,
    pub events: Receiver<Event>,
    pub thread: JoinHandle<()>,
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

/// Starts the trainer on its own thread named `trainer`.
pub fn spawn(setup: TrainSetup) -> std::io::Result<TrainerHandle> {
    let (command_tx, command_rx) = mpsc::channel();
    let (event_tx, event_rx) = mpsc::channel();
    let thread = thread::Builder::new()
        .name("trainer".into())
        .spawn(move || {
            let progress = Arc::new(AtomicU64::new(0));
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
                Trainer::new(setup, &event_tx, Arc::clone(&progress))
                    .map(|mut trainer| trainer.run(&command_rx))
            }));
            let failure = match outcome {
                Ok(Ok(())) => None,
                Ok(Err(message)) => Some(message),
                Err(payload) => Some(panic_message(payload.as_ref())),
            };
            if let Some(message) = failure {
                let step = progress.load(Ordering::Relaxed);
                let _ = event_tx.send(Event::Failed { step, message });
            }
        })?;
    Ok(TrainerHandle {
        commands: command_tx,
        events: event_rx,
        thread,
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

struct Trainer<'a> {
    config: Config,
    events: &'a Sender<Event>,
    device: Device,
    _vs: nn::VarStore,
    model: Gpt,
    optimizer: AdamW,
    train: Vec<Example>,
    step: u64,
    /// Completed steps, readable after a panic unwound the trainer.
    progress: Arc<AtomicU64>,
    started: Instant,
}

impl<'a> Trainer<'a> {
    fn new(
        setup: TrainSetup,
        events: &'a Sender<Event>,
        progress: Arc<AtomicU64>,
    ) -> Result<Self, String> {
        let config = setup.config;
        let device = device_of(config.device)?;
        tch::manual_seed(config.seed as i64);
        let vs = nn::VarStore::new(device);
        let model = Gpt::new(&vs.root(), GptShape::new(&config.model, setup.vocab_size));
        let optimizer = AdamW::new(&vs, config.train.weight_decay);
        let info = RunInfo {
            run_name: setup.run_name,
            pid: std::process::id(),
            device: device_name(device),
            start_step: 0,
            max_steps: config.train.max_steps,
            parameters: optimizer.parameter_count(),
            vocab_size: setup.vocab_size,
            train_examples: setup.train.len() as u64,
            val_examples: setup.val.len() as u64,
            skipped_overlong: setup.skipped_overlong,
        };
        let trainer = Self {
            config,
            events,
            device,
            _vs: vs,
            model,
            optimizer,
            train: setup.train,
            step: 0,
            progress,
            started: Instant::now(),
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

    fn run(&mut self, commands: &Receiver<Command>) {
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
        let mut last_loss = None;
        self.set_state(RunState::Training);

        while self.step < train_cfg.max_steps {
            if self.handle_commands(commands) == Flow::Stop {
                self.finish(RunState::Stopped, last_loss);
                return;
            }
            let learning_rate = optim::learning_rate(&train_cfg, self.step);
            self.optimizer.zero_grad();
            for micro in 0..accum {
                let batch = batcher.batch(self.step * accum + micro);
                let logits = self.model.forward(&batch.input);
                let vocab = self.model.shape.vocab_size;
                let loss = logits.view([-1, vocab]).cross_entropy_loss::<Tensor>(
                    &batch.target.view([-1]),
                    None,
                    tch::Reduction::Mean,
                    IGNORE_INDEX,
                    0.0,
                ) / accum as f64;
                loss.backward();
                loss_sum += loss.detach();
                tokens_since_log += batch.tokens;
            }
            if train_cfg.grad_clip > 0.0 {
                self.optimizer.clip_grad_norm(train_cfg.grad_clip);
            }
            self.optimizer.step(learning_rate);
            self.step += 1;
            self.progress.store(self.step, Ordering::Relaxed);
            steps_since_log += 1;

            if self.step.is_multiple_of(train_cfg.log_steps) || self.step == train_cfg.max_steps {
                // The only read-back from the device in the loop.
                let loss = loss_sum.double_value(&[]) / steps_since_log as f64;
                let _ = loss_sum.zero_();
                let interval = last_log.elapsed().as_secs_f64().max(1e-9);
                let elapsed = self.started.elapsed().as_secs_f64();
                let secs_per_step = interval / steps_since_log as f64;
                self.emit(Event::Step(StepMetrics {
                    step: self.step,
                    max_steps: train_cfg.max_steps,
                    loss,
                    learning_rate,
                    tokens_per_sec: tokens_since_log as f64 / interval,
                    elapsed_secs: elapsed,
                    eta_secs: secs_per_step * (train_cfg.max_steps - self.step) as f64,
                }));
                last_loss = Some(loss);
                steps_since_log = 0;
                tokens_since_log = 0;
                last_log = Instant::now();
            }
        }
        self.finish(RunState::Finished, last_loss);
    }

    /// Applies pending commands; while paused, waits for the next one.
    fn handle_commands(&self, commands: &Receiver<Command>) -> Flow {
        let mut paused = false;
        loop {
            let command = if paused {
                match commands.recv() {
                    Ok(command) => command,
                    Err(_) => return Flow::Stop,
                }
            } else {
                match commands.try_recv() {
                    Ok(command) => command,
                    Err(TryRecvError::Empty) => return Flow::Continue,
                    Err(TryRecvError::Disconnected) => return Flow::Stop,
                }
            };
            let message = match command {
                Command::Stop => {
                    self.ack(command, format!("stopping at step {}", self.step));
                    self.set_state(RunState::Stopping);
                    return Flow::Stop;
                }
                Command::Pause if !paused => {
                    paused = true;
                    self.set_state(RunState::Paused);
                    format!("paused at step {}", self.step)
                }
                Command::Resume if paused => {
                    paused = false;
                    self.set_state(RunState::Training);
                    format!("resumed at step {}", self.step)
                }
                Command::Pause => "already paused".to_owned(),
                Command::Resume => "not paused".to_owned(),
            };
            self.ack(command, message);
        }
    }

    fn ack(&self, command: Command, message: String) {
        self.emit(Event::CommandAck {
            step: self.step,
            command,
            message,
        });
    }

    fn finish(&self, state: RunState, loss: Option<f64>) {
        self.emit(Event::Finished(Summary {
            step: self.step,
            max_steps: self.config.train.max_steps,
            state,
            loss,
            elapsed_secs: self.started.elapsed().as_secs_f64(),
        }));
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}
