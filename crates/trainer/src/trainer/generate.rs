//! Incremental decoding with a deadline and an abort switch checked before
//! every decoding step. Nothing here can outlive its deadline by more than one
//! step, and every failure is a value, never a panic.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tch::{Device, Kind, TchError, Tensor};

use super::model::{CausalLm, KvCache};
use super::rng::SplitMix64;
use trainui_protocol::events::GenerationOutcome;
use trainui_protocol::events::Phase;
use trainui_protocol::watchdog::Heartbeat;

/// What to generate and the limits it runs under.
pub struct GenerationRequest<'a> {
    pub prompt: &'a [u32],
    pub max_new_tokens: u32,
    /// End-of-text is not picked before this many tokens.
    pub min_new_tokens: u32,
    /// 0 is greedy.
    pub temperature: f64,
    pub eot_id: u32,
    pub deadline: Instant,
    /// Set by the operator; consumed (reset) when it ends a generation.
    pub abort: &'a AtomicBool,
    /// Beaten before every decoding step.
    pub heartbeat: &'a Heartbeat,
    /// Seed of the sampling stream (unused when greedy).
    pub seed: u64,
}

/// A finished generation: its tokens (without end-of-text) and how it ended.
#[derive(Debug)]
pub struct Generation {
    pub tokens: Vec<u32>,
    pub outcome: GenerationOutcome,
    pub elapsed: Duration,
    /// Calls into the model. (This and `positions_fed` are how tests see that
    /// the cache is used; the trainer does not report them.)
    #[cfg_attr(not(test), expect(dead_code, reason = "inspected by tests only"))]
    pub decode_steps: u64,
    /// Token positions fed to the model over all steps: with the cache this
    /// is the prompt plus one per later step, not a growing context each time.
    #[cfg_attr(not(test), expect(dead_code, reason = "inspected by tests only"))]
    pub positions_fed: u64,
}

/// Generates a continuation of `request.prompt`. `on_token` sees the tokens so
/// far after each new one (the caller decides how often to report them).
pub fn generate(
    model: &dyn CausalLm,
    device: Device,
    request: &GenerationRequest<'_>,
    on_token: &mut dyn FnMut(&[u32], Duration),
) -> Generation {
    let _no_grad = tch::no_grad_guard();
    let started = Instant::now();
    let mut state = Decoder {
        model,
        device,
        request,
        rng: SplitMix64::new(request.seed),
        context: request.prompt.to_vec(),
        generated: Vec::new(),
        decode_steps: 0,
        positions_fed: 0,
    };
    let outcome = match state.run(&mut |tokens| on_token(tokens, started.elapsed())) {
        Ok(outcome) => outcome,
        Err(err) => GenerationOutcome::Error {
            message: err.to_string(),
        },
    };
    Generation {
        tokens: state.generated,
        outcome,
        elapsed: started.elapsed(),
        decode_steps: state.decode_steps,
        positions_fed: state.positions_fed,
    }
}

struct Decoder<'a> {
    model: &'a dyn CausalLm,
    device: Device,
    request: &'a GenerationRequest<'a>,
    rng: SplitMix64,
    /// Prompt and generated tokens: what the model has seen or will see next.
    context: Vec<u32>,
    generated: Vec<u32>,
    decode_steps: u64,
    positions_fed: u64,
}

impl Decoder<'_> {
    fn run(&mut self, on_token: &mut dyn FnMut(&[u32])) -> Result<GenerationOutcome, TchError> {
        let request = self.request;
        if request.max_new_tokens == 0 {
            return Ok(GenerationOutcome::Completed);
        }
        // Room for the whole generation, up to the model's positions (past
        // them the window slides).
        let wanted = self.context.len() as i64 + i64::from(request.max_new_tokens);
        let mut cache = self.model.new_cache(1, wanted, self.device)?;
        // Tokens not yet fed to the model: the whole prompt at first.
        let mut pending = self.context.len();
        loop {
            request.heartbeat.beat(Phase::Generating);
            if request.abort.swap(false, Ordering::AcqRel) {
                return Ok(GenerationOutcome::Aborted);
            }
            if Instant::now() >= request.deadline {
                return Ok(GenerationOutcome::TimedOut);
            }
            let logits = self.step(&mut cache, pending)?;
            let next = self.pick(&logits)?;
            if next == request.eot_id {
                return Ok(GenerationOutcome::Completed);
            }
            self.generated.push(next);
            self.context.push(next);
            on_token(&self.generated);
            if self.generated.len() >= request.max_new_tokens as usize {
                return Ok(GenerationOutcome::Completed);
            }
            pending = 1;
        }
    }

    /// Feeds the last `pending` context tokens and returns the next-token
    /// logits. When the cache is full, the window slides: the cache is
    /// refilled with the most recent half of the context.
    fn step(&mut self, cache: &mut KvCache, pending: usize) -> Result<Tensor, TchError> {
        let capacity = cache.capacity() as usize;
        let fits = cache.len() as usize + pending <= capacity;
        let feed: &[u32] = if fits {
            &self.context[self.context.len() - pending..]
        } else {
            cache.clear();
            let keep = (capacity / 2).max(1).min(self.context.len());
            &self.context[self.context.len() - keep..]
        };
        let ids: Vec<i64> = feed.iter().map(|&t| i64::from(t)).collect();
        let input = Tensor::f_from_slice(&ids)?
            .f_reshape([1, ids.len() as i64])?
            .f_to(self.device)?;
        self.decode_steps += 1;
        self.positions_fed += ids.len() as u64;
        self.model.forward_cached(&input, cache)
    }

    /// Chooses the next token from `(1, vocab)` logits. Reading it back to the
    /// host waits for the device, so the deadline check after it is honest.
    fn pick(&mut self, logits: &Tensor) -> Result<u32, TchError> {
        let request = self.request;
        let logits = logits.f_to_kind(Kind::Float)?.f_reshape([-1])?;
        if (self.generated.len() as u32) < request.min_new_tokens {
            let _ = logits
                .f_narrow(0, i64::from(request.eot_id), 1)?
                .f_fill_(f64::NEG_INFINITY)?;
        }
        if request.temperature <= 0.0 {
            let id = logits.f_argmax(0, false)?.f_int64_value(&[])?;
            return Ok(id as u32);
        }
        let probs = logits
            .f_div_scalar(request.temperature)?
            .f_softmax(0, Kind::Float)?;
        let probs = Vec::<f32>::try_from(probs.f_to(Device::Cpu)?)?;
        let mut target = self.rng.unit() * probs.iter().map(|&p| f64::from(p)).sum::<f64>();
        for (id, &p) in probs.iter().enumerate() {
            target -= f64::from(p);
            if target < 0.0 {
                return Ok(id as u32);
            }
        }
        Ok(probs.iter().rposition(|&p| p > 0.0).unwrap_or(0) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trainer::model::{Gpt, GptShape};
    use tch::nn;

    fn tiny(block_size: i64) -> (nn::VarStore, Gpt) {
        tch::manual_seed(5);
        let vs = nn::VarStore::new(Device::Cpu);
        let shape = GptShape {
            vocab_size: 40,
            n_layer: 1,
            n_head: 2,
            n_embd: 16,
            block_size,
            layer_norm_epsilon: 1e-5,
        };
        let model = Gpt::new(&vs.root(), shape);
        (vs, model)
    }

    static HEARTBEAT: std::sync::LazyLock<Heartbeat> = std::sync::LazyLock::new(Heartbeat::default);

    fn request(
        abort: &AtomicBool,
        max_new_tokens: u32,
        timeout: Duration,
    ) -> GenerationRequest<'_> {
        GenerationRequest {
            prompt: &[1, 2, 3],
            max_new_tokens,
            min_new_tokens: u32::MAX,
            temperature: 0.0,
            eot_id: 0,
            deadline: Instant::now() + timeout,
            abort,
            heartbeat: &HEARTBEAT,
            seed: 1,
        }
    }

    #[test]
    fn each_step_after_the_prompt_feeds_one_position() {
        let (_vs, model) = tiny(64);
        let abort = AtomicBool::new(false);
        let generation = generate(
            &model,
            Device::Cpu,
            &request(&abort, 40, Duration::from_mins(1)),
            &mut |_, _| {},
        );
        assert_eq!(generation.outcome, GenerationOutcome::Completed);
        assert_eq!(generation.tokens.len(), 40);
        assert_eq!(generation.decode_steps, 40);
        // Prompt (3) once, then one position per step: no re-reading of the context.
        assert_eq!(generation.positions_fed, 3 + 39);
    }

    #[test]
    fn the_window_slides_past_block_size() {
        let (_vs, model) = tiny(8);
        let abort = AtomicBool::new(false);
        let generation = generate(
            &model,
            Device::Cpu,
            &request(&abort, 30, Duration::from_mins(1)),
            &mut |_, _| {},
        );
        assert_eq!(generation.outcome, GenerationOutcome::Completed);
        assert_eq!(generation.tokens.len(), 30);
        // Each refill feeds 4 positions, then 4 single steps fill the cache again.
        assert!(generation.positions_fed < 3 + 2 * 30, "{generation:?}");
    }

    #[test]
    fn a_passed_deadline_ends_the_generation_as_timed_out() {
        let (_vs, model) = tiny(16);
        let abort = AtomicBool::new(false);
        let mut seen = 0;
        let generation = generate(
            &model,
            Device::Cpu,
            &request(&abort, u32::MAX, Duration::from_millis(200)),
            &mut |tokens, _| seen = tokens.len(),
        );
        assert_eq!(generation.outcome, GenerationOutcome::TimedOut);
        assert!(
            generation.elapsed < Duration::from_secs(5),
            "{:?}",
            generation.elapsed
        );
        assert_eq!(seen, generation.tokens.len(), "partial tokens are kept");
        assert!(!generation.tokens.is_empty());
    }

    #[test]
    fn the_abort_flag_ends_the_generation_and_is_consumed() {
        let (_vs, model) = tiny(16);
        let abort = AtomicBool::new(false);
        let generation = generate(
            &model,
            Device::Cpu,
            &request(&abort, u32::MAX, Duration::from_mins(1)),
            &mut |tokens, _| {
                if tokens.len() == 5 {
                    abort.store(true, Ordering::Release);
                }
            },
        );
        assert_eq!(generation.outcome, GenerationOutcome::Aborted);
        assert_eq!(generation.tokens.len(), 5);
        assert!(!abort.load(Ordering::Acquire));
    }

    #[test]
    fn a_model_error_is_an_error_outcome() {
        let (_vs, model) = tiny(16);
        let abort = AtomicBool::new(false);
        let mut bad = request(&abort, 5, Duration::from_mins(1));
        bad.prompt = &[1, 4000];
        let generation = generate(&model, Device::Cpu, &bad, &mut |_, _| {});
        let GenerationOutcome::Error { message } = generation.outcome else {
            panic!("expected an error, got {:?}", generation.outcome);
        };
        assert!(message.contains("index"), "{message}");
    }

    #[test]
    fn sampling_is_reproducible_from_its_seed() {
        let (_vs, model) = tiny(64);
        let abort = AtomicBool::new(false);
        let run = |seed| {
            let mut sampled = request(&abort, 20, Duration::from_mins(1));
            sampled.temperature = 1.0;
            sampled.seed = seed;
            generate(&model, Device::Cpu, &sampled, &mut |_, _| {}).tokens
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }
}
