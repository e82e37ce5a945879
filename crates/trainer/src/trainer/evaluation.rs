//! A full evaluation on the trainer thread: validation loss, then sample
//! generations compared with their golden completions, each under the
//! deadline `eval.eval_timeout_seconds` and the abort flag.

use std::sync::mpsc::TryRecvError;
use std::time::{Duration, Instant};

use super::batch::{self, Batcher};
use super::generate::{GenerationRequest, generate};
use super::rng;
use super::training_loop::{Flow, Trainer};
use crate::data::Example;
use trainui_protocol::events::{
    Command, EvalSummary, Event, GenerationOutcome, GenerationStart, Phase, RunState, SampleResult,
};

/// How often a running generation reports its text.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

impl Trainer {
    /// Between samples: a stop ends the evaluation, an abort and a settings
    /// change are answered, everything else waits until the evaluation is over.
    fn poll_during_eval(&mut self) -> Flow {
        loop {
            match self.try_command() {
                Ok(Command::Stop) => {
                    self.deferred.push_front(Command::Stop);
                    return Flow::Stop;
                }
                Ok(Command::AbortGeneration) => self.ack_abort(),
                Ok(Command::EvalNow) => self.ack(Command::EvalNow, "already evaluating".into()),
                Ok(Command::Set(changes)) => self.change_settings(changes),
                Ok(command) => self.deferred.push_back(command),
                Err(TryRecvError::Empty) => return Flow::Continue,
                Err(TryRecvError::Disconnected) => return Flow::Stop,
            }
        }
    }

    /// A full evaluation: validation loss, then sample generations compared
    /// with their golden completions. `after` is the state to return to.
    pub(super) fn evaluate(&mut self, after: RunState) -> Flow {
        let eval = self.config.eval.clone();
        self.evals += 1;
        let samples = (eval.samples as usize).min(self.val.len()) as u32;
        self.set_state(RunState::Evaluating);
        self.emit(Event::EvalStarted {
            step: self.step,
            eval: self.evals,
            samples,
        });
        let timeout = eval.eval_timeout_seconds.duration();

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
            if self.poll_during_eval() == Flow::Stop {
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
                .batch_loss(&batch.input, &batch.target, tch::Reduction::Mean)
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
            timeout_secs: eval.eval_timeout_seconds.get(),
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
        let step = self.step;
        let mut last_report = Instant::now();
        let generation = generate(
            &*self.model,
            self.device,
            &request,
            &mut |tokens, elapsed| {
                if last_report.elapsed() >= PROGRESS_INTERVAL {
                    last_report = Instant::now();
                    self.emit(Event::GenerationProgress {
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
            timeout_secs: eval.eval_timeout_seconds.get(),
            counters: self.counters,
        }
    }

    /// The model's loss on one example's completion, or `None` if it fails.
    fn example_loss(&self, example: &Example) -> Option<f64> {
        let _no_grad = tch::no_grad_guard();
        let batch = batch::pad(std::iter::once(example), self.device);
        self.batch_loss(&batch.input, &batch.target, tch::Reduction::Mean)
            .and_then(|l| l.f_double_value(&[]))
            .ok()
    }
}

fn mean(total: f64, count: u32) -> Option<f64> {
    (count > 0).then(|| total / f64::from(count))
}
