//! The trainer thread: it owns every tch object and talks to the rest of the
//! program only through commands in and [`Event`]s out (see
//! [`trainui_protocol::channel`]), plus the shared abort flag that the decoder checks
//! before every step.
//!
//! ```text
//! mod.rs            the handle: what a run needs, and the thread that runs it
//! training_loop.rs  building or resuming the model, the training loop,
//!                   commands, checkpoints
//! evaluation.rs     validation loss and sample generations under their deadline
//! device.rs         devices and model construction (also for generate, export,
//!                   bench)
//! generate.rs       KV-cache decoding with deadline and abort checks
//! model.rs, llama.rs, optim.rs, batch.rs, rng.rs, hf_weights.rs: the pieces
//! inference.rs      `trainui generate` and `trainui export`
//! measurements.rs   what `trainui bench` measures with tch: the matmul rate,
//!                   decoding step times, the logits its PyTorch peer must match
//! ```

mod batch;
mod device;
mod evaluation;
mod generate;
mod hf_weights;
pub mod inference;
mod llama;
pub mod measurements;
mod model;
mod optim;
mod rng;
mod training_loop;

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::thread::{self, JoinHandle};

use trainui_protocol::channel::{Controller, Wiring};
use trainui_protocol::error::{Error, Result};
use trainui_protocol::events::{Event, Phase};
use trainui_protocol::watchdog::Heartbeat;

pub use device::resolve_device;
pub use training_loop::TrainSetup;
use training_loop::Trainer;

/// The caller's side of a running trainer.
pub struct TrainerHandle {
    pub controller: Controller,
    /// Every event of the run; it ends once the trainer and the helpers that
    /// took a sender from the [`Wiring`] are done.
    pub events: Receiver<Event>,
    pub thread: JoinHandle<()>,
    /// Beaten by the trainer at every step and decoding step.
    pub heartbeat: Arc<Heartbeat>,
}

/// Starts the trainer on its own thread named `trainer`, on the channels of
/// `wiring` (whose event senders for helpers are taken before this).
pub fn spawn(setup: TrainSetup, wiring: Wiring) -> Result<TrainerHandle> {
    let controller = wiring.controller.clone();
    let heartbeat = Arc::clone(&wiring.heartbeat);
    heartbeat.set_stall_timeout(setup.config.watchdog.stall_timeout_seconds.duration());
    heartbeat.beat(Phase::Starting);
    let (ends, events) = wiring.split();
    let failures = ends.events.clone();
    let beats = Arc::clone(&heartbeat);
    let thread = thread::Builder::new()
        .name("trainer".into())
        .spawn(move || {
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
                Trainer::new(setup, ends).and_then(|mut trainer| trainer.run())
            }));
            beats.beat(Phase::Done);
            let failure = match outcome {
                Ok(Ok(())) => None,
                Ok(Err(err)) => Some(err.to_string()),
                Err(payload) => Some(panic_message(payload.as_ref())),
            };
            if let Some(message) = failure {
                let _ = failures.send(Event::Failed {
                    step: beats.step(),
                    message,
                });
            }
        })
        .map_err(|e| Error::Failed(format!("cannot start the trainer thread: {e}")))?;
    Ok(TrainerHandle {
        controller,
        events,
        thread,
        heartbeat,
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::data::{self, Example, TextTokenizer};
    use std::path::Path;
    use trainui_protocol::config::{self, Overlong};
    use trainui_protocol::events::{Command, GenerationOutcome, RunState, SampleResult};

    /// The demo's validation examples.
    pub(crate) fn demo_val() -> Vec<Example> {
        let repo = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
        let tokenizer = TextTokenizer::load(&repo.join("assets/demo/tokenizer.json")).unwrap();
        let val = repo.join("assets/demo/val.jsonl");
        data::load_examples(&val, &tokenizer, 32, Overlong::Error)
            .unwrap()
            .examples
    }

    /// The tiny config on the demo data, with `sets` applied, in `run_dir`.
    pub(crate) fn tiny_setup(run_dir: &Path, sets: &[&str], val: Vec<Example>) -> TrainSetup {
        let repo = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
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

    /// Every event of a run with nothing but the trainer on its channels.
    pub(crate) fn run_to_end(setup: TrainSetup) -> Vec<Event> {
        let handle = spawn(setup, Wiring::default()).unwrap();
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
        let handle = spawn(setup, Wiring::default()).unwrap();
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
                } => Some((command.clone(), message.as_str())),
                _ => None,
            })
            .collect();
        let commands: Vec<Command> = acks.iter().map(|a| a.0.clone()).collect();
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
