//! The measurements of `trainui bench` that need tch: the device's matmul
//! rate, step times of the real decoder, and a weights/logits pair that the
//! PyTorch peer must reproduce. Everything returns plain numbers.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use tch::{Device, Kind, Tensor, nn};

use super::device::{device_name, device_of};
use super::generate::{GenerationRequest, generate};
use super::model::{CausalLm, Gpt, GptShape};
use super::rng::SplitMix64;
use trainui_protocol::config::{DevicePref, ModelConfig};
use trainui_protocol::error::{Error, Result};
use trainui_protocol::events::GenerationOutcome;
use trainui_protocol::watchdog::Heartbeat;

/// The benchmarked model: sizes, vocabulary, seed and device.
#[derive(Debug, Clone)]
pub struct BenchModel {
    pub model: ModelConfig,
    pub vocab_size: u32,
    pub seed: u64,
    pub device: DevicePref,
}

impl BenchModel {
    fn build(&self, block_size: u32) -> Result<(nn::VarStore, Gpt, Device)> {
        let device = device_of(self.device)?;
        tch::manual_seed(self.seed as i64);
        let vs = nn::VarStore::new(device);
        let model = ModelConfig {
            block_size,
            ..self.model.clone()
        };
        let gpt = Gpt::new(&vs.root(), GptShape::new(&model, self.vocab_size));
        Ok((vs, gpt, device))
    }
}

/// Sets libtorch's intra-op thread count for this process.
pub fn set_threads(threads: u32) {
    tch::set_num_threads(threads as i32);
}

/// The name of the device `pref` resolves to, e.g. `cpu` or `cuda:0`.
pub fn device_label(pref: DevicePref) -> Result<String> {
    device_of(pref).map(device_name)
}

/// Runs `measure` on a thread of its own. libgomp stops spin-waiting (and
/// each parallel region then pays for waking its workers) once it manages
/// more threads than there are CPUs, so an OpenMP pool left behind on the
/// calling thread would slow every trainer thread after it: a scoped
/// thread takes its pool with it when it ends.
fn on_own_thread<T: Send>(measure: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| match scope.spawn(measure).join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// Waits until the device has finished the work queued so far.
fn synchronize(device: Device) {
    if let Device::Cuda(index) = device {
        tch::Cuda::synchronize(index as i64);
    }
}

/// fp32 matmul rate in GFLOP/s on `pref`: the median over `repeats` timings
/// of multiplying two `size` x `size` matrices.
pub fn matmul_gflops(pref: DevicePref, size: i64, repeats: usize) -> Result<f64> {
    on_own_thread(|| {
        let device = device_of(pref)?;
        let _no_grad = tch::no_grad_guard();
        let a = Tensor::randn([size, size], (Kind::Float, device));
        let b = Tensor::randn([size, size], (Kind::Float, device));
        let flops = 2.0 * (size as f64).powi(3);
        let mut rates = Vec::with_capacity(repeats);
        for round in 0..=repeats {
            synchronize(device);
            let started = Instant::now();
            let product = a.matmul(&b);
            synchronize(device);
            let secs = started.elapsed().as_secs_f64();
            drop(product);
            // The first product warms up the kernels and the allocator.
            if round > 0 {
                rates.push(flops / secs / 1e9);
            }
        }
        rates.sort_by(f64::total_cmp);
        Ok(rates[rates.len() / 2])
    })
}

/// fp32 matmul rate in GFLOP/s of the bench model's own matrix products:
/// for every Linear layer and the tied output head, at `batch x block`
/// rows, the forward product and the two of its backward pass (input and
/// weight gradients). The median of `repeats` timings of the whole set.
pub fn model_matmul_gflops(bench: &BenchModel, batch: u32, repeats: usize) -> Result<f64> {
    on_own_thread(|| {
        let device = device_of(bench.device)?;
        let _no_grad = tch::no_grad_guard();
        let rows = i64::from(batch) * i64::from(bench.model.block_size);
        let c = i64::from(bench.model.n_embd);
        let mut shapes = Vec::new();
        for _ in 0..bench.model.n_layer {
            shapes.extend([(c, 3 * c), (c, c), (c, 4 * c), (4 * c, c)]);
        }
        shapes.push((c, i64::from(bench.vocab_size)));
        let operands: Vec<(Tensor, Tensor, Tensor)> = shapes
            .iter()
            .map(|&(inputs, outputs)| {
                (
                    Tensor::randn([rows, inputs], (Kind::Float, device)),
                    Tensor::randn([outputs, inputs], (Kind::Float, device)),
                    Tensor::randn([rows, outputs], (Kind::Float, device)),
                )
            })
            .collect();
        let flops: f64 = shapes
            .iter()
            .map(|&(inputs, outputs)| 3.0 * 2.0 * (rows * inputs * outputs) as f64)
            .sum();
        let mut rates = Vec::with_capacity(repeats);
        for round in 0..=repeats {
            synchronize(device);
            let started = Instant::now();
            for (x, w, dy) in &operands {
                let forward = x.linear(w, None::<Tensor>);
                let input_grad = dy.mm(w);
                let weight_grad = dy.tr().mm(x);
                drop((forward, input_grad, weight_grad));
            }
            synchronize(device);
            let secs = started.elapsed().as_secs_f64();
            if round > 0 {
                rates.push(flops / secs / 1e9);
            }
        }
        rates.sort_by(f64::total_cmp);
        Ok(rates[rates.len() / 2])
    })
}

/// Times the real decoder (greedy, KV cache, deadline and abort checks) on
/// `repeats` random prompts of `prompt_len` tokens, `new_tokens` each. Returns,
/// per repeat, the seconds of each decoding step: the first is the prompt's
/// prefill, step `i > 0` feeds position `prompt_len + i - 1`.
pub fn decode_step_secs(
    bench: &BenchModel,
    prompt_len: u32,
    new_tokens: u32,
    repeats: u32,
) -> Result<Vec<Vec<f64>>> {
    on_own_thread(|| {
        let (_vs, model, device) = bench.build(prompt_len + new_tokens)?;
        let mut rng = SplitMix64::new(bench.seed.wrapping_add(1));
        let abort = AtomicBool::new(false);
        let heartbeat = Heartbeat::default();
        let mut runs = Vec::new();
        for _ in 0..repeats {
            // End-of-text is out of the vocabulary's range here: every
            // generation runs its full length.
            let prompt: Vec<u32> = (0..prompt_len)
                .map(|_| rng.below(u64::from(bench.vocab_size)) as u32)
                .collect();
            let request = GenerationRequest {
                prompt: &prompt,
                max_new_tokens: new_tokens,
                min_new_tokens: 0,
                temperature: 0.0,
                eot_id: bench.vocab_size,
                deadline: Instant::now() + Duration::from_hours(1),
                abort: &abort,
                heartbeat: &heartbeat,
                seed: bench.seed,
            };
            let mut ends = Vec::with_capacity(new_tokens as usize);
            let generation = generate(&model, device, &request, &mut |_, elapsed| {
                ends.push(elapsed.as_secs_f64());
            });
            if generation.outcome != GenerationOutcome::Completed {
                return Err(Error::Failed(format!(
                    "bench generation ended {:?}",
                    generation.outcome
                )));
            }
            let mut previous = 0.0;
            runs.push(
                ends.into_iter()
                    .map(|end| {
                        let step = end - previous;
                        previous = end;
                        step
                    })
                    .collect(),
            );
        }
        Ok(runs)
    })
}

/// Writes the bench model's initial weights (safetensors, Hugging Face GPT-2
/// names) to `weights`, and to `check` a batch of token ids with the logits
/// trainui computes for them. Returns the number of parameters.
pub fn write_logits_check(bench: &BenchModel, weights: &Path, check: &Path) -> Result<u64> {
    on_own_thread(|| {
        let (vs, model, device) = bench.build(bench.model.block_size)?;
        let _no_grad = tch::no_grad_guard();
        let tokens = Tensor::randint(
            i64::from(bench.vocab_size),
            [2, i64::from(bench.model.block_size)],
            (Kind::Int64, device),
        );
        let logits = model
            .forward(&tokens)
            .map_err(|e| Error::Torch(e.to_string()))?;
        let torch = |path: &Path, e: tch::TchError| {
            Error::Torch(format!("{}: cannot write: {e}", path.display()))
        };
        vs.save(weights).map_err(|e| torch(weights, e))?;
        let cpu = |t: &Tensor| t.to_device(Device::Cpu).contiguous();
        Tensor::write_safetensors(&[("tokens", cpu(&tokens)), ("logits", cpu(&logits))], check)
            .map_err(|e| torch(check, e))?;
        Ok(vs
            .trainable_variables()
            .iter()
            .map(|t| t.numel() as u64)
            .sum())
    })
}
