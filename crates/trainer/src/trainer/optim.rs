//! AdamW on plain tensors (so its moments can be saved and restored exactly),
//! the learning-rate schedule, and global-norm gradient clipping.

use std::collections::HashMap;
use std::path::Path;

use tch::nn::OptimizerConfig;
use tch::{TchError, Tensor, nn};

use trainui_protocol::config::TrainConfig;
use trainui_protocol::error::{Error, Result};

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.95;
const EPSILON: f64 = 1e-8;

struct ParamState {
    name: String,
    param: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    /// Decoupled weight decay applies to matrices (dim >= 2), not to biases
    /// or LayerNorm gains.
    decay: bool,
}

/// AdamW with decoupled weight decay (Loshchilov & Hutter), betas (0.9, 0.95).
pub struct AdamW {
    params: Vec<ParamState>,
    /// Only used to drop gradients between steps: tch reaches libtorch's
    /// `zero_grad(set_to_none)` only through its C++ optimizers, and an SGD
    /// that never steps holds no state.
    gradient_release: nn::Optimizer,
    weight_decay: f64,
    /// Optimizer steps taken so far; bias correction depends on it.
    steps: i32,
}

impl AdamW {
    /// Takes every trainable variable of `vs`, in name order.
    #[must_use]
    pub fn new(vs: &nn::VarStore, weight_decay: f64) -> Self {
        let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let params = named
            .into_iter()
            .filter(|(_, param)| param.requires_grad())
            .map(|(name, param)| ParamState {
                exp_avg: param.zeros_like(),
                exp_avg_sq: param.zeros_like(),
                decay: param.dim() >= 2,
                name,
                param,
            })
            .collect();
        Self {
            params,
            gradient_release: nn::Sgd::default()
                .build(vs, 0.0)
                .expect("an SGD over existing variables builds"),
            weight_decay,
            steps: 0,
        }
    }

    /// Forgets the gradients (rather than filling them with zeros): the next
    /// backward pass writes fresh ones instead of adding to zeros.
    pub fn zero_grad(&mut self) {
        self.gradient_release.zero_grad();
    }

    /// Scales all gradients so that their global L2 norm is at most `max_norm`.
    /// Stays on the device: nothing is read back to the host.
    /// The global norm of the gradients (0 when there are none), on the
    /// device.
    pub fn grad_norm(&self) -> Tensor {
        let norms: Vec<Tensor> = self
            .params
            .iter()
            .map(|state| state.param.grad())
            .filter(Tensor::defined)
            .map(|grad| grad.norm())
            .collect();
        if norms.is_empty() {
            return Tensor::zeros([], (tch::Kind::Float, tch::Device::Cpu));
        }
        Tensor::stack(&norms, 0).norm()
    }

    /// Scales the gradients down to a global norm of `max_norm` when their
    /// norm `total` (from [`AdamW::grad_norm`]) is above it.
    pub fn clip_grad_norm(&self, total: &Tensor, max_norm: f64) {
        let scale = ((total + 1e-6).reciprocal() * max_norm).clamp_max(1.0);
        for state in &self.params {
            let mut grad = state.param.grad();
            if grad.defined() {
                let _ = grad.g_mul_(&scale);
            }
        }
    }

    /// Every weight is finite (none NaN or infinite).
    #[must_use]
    pub fn parameters_finite(&self) -> bool {
        let _no_grad = tch::no_grad_guard();
        self.params
            .iter()
            .all(|state| state.param.isfinite().all().int64_value(&[]) != 0)
    }

    pub fn step(&mut self, learning_rate: f64) {
        let _no_grad = tch::no_grad_guard();
        self.steps += 1;
        let bias_correction1 = 1.0 - BETA1.powi(self.steps);
        let bias_correction2 = 1.0 - BETA2.powi(self.steps);
        let step_size = learning_rate / bias_correction1;
        for state in &mut self.params {
            let grad = state.param.grad();
            if !grad.defined() {
                continue;
            }
            if state.decay && self.weight_decay > 0.0 {
                let _ = state
                    .param
                    .g_mul_scalar_(1.0 - learning_rate * self.weight_decay);
            }
            let _ = state.exp_avg.lerp_(&grad, 1.0 - BETA1);
            let _ = state.exp_avg_sq.lerp_(&grad.square(), 1.0 - BETA2);
            if step_size <= 0.0 {
                continue;
            }
            // param -= step_size * exp_avg / (sqrt(exp_avg_sq / bc2) + eps),
            // written as one division by a scaled denominator, in place.
            let mut denom = state.exp_avg_sq.sqrt();
            let _ = denom.g_mul_scalar_(-1.0 / (step_size * bias_correction2.sqrt()));
            let _ = denom.g_add_scalar_(-EPSILON / step_size);
            let _ = state.param.addcdiv_(&state.exp_avg, &denom);
        }
    }

    /// Writes the moments as safetensors: `<param>.exp_avg`, `<param>.exp_avg_sq`.
    pub fn save(&self, path: &Path) -> std::result::Result<(), TchError> {
        let mut named = Vec::with_capacity(2 * self.params.len());
        for state in &self.params {
            named.push((
                format!("{}.exp_avg", state.name),
                state.exp_avg.shallow_clone(),
            ));
            named.push((
                format!("{}.exp_avg_sq", state.name),
                state.exp_avg_sq.shallow_clone(),
            ));
        }
        Tensor::write_safetensors(&named, path)
    }

    /// Restores moments written by [`AdamW::save`] and the step count.
    pub fn load(&mut self, path: &Path, steps: u64) -> Result<()> {
        let torch = |err: String| Error::Torch(format!("{}: {err}", path.display()));
        let saved: HashMap<String, Tensor> = Tensor::read_safetensors(path)
            .map_err(|err| torch(err.to_string()))?
            .into_iter()
            .collect();
        let _no_grad = tch::no_grad_guard();
        for state in &mut self.params {
            for (suffix, moment) in [
                ("exp_avg", &mut state.exp_avg),
                ("exp_avg_sq", &mut state.exp_avg_sq),
            ] {
                let name = format!("{}.{suffix}", state.name);
                let value = saved
                    .get(&name)
                    .ok_or_else(|| Error::Input(format!("{}: no tensor {name}", path.display())))?;
                moment
                    .f_copy_(value)
                    .map_err(|err| torch(format!("{name}: {err}")))?;
            }
        }
        self.steps = i32::try_from(steps)
            .map_err(|_| Error::Input(format!("optimizer step {steps} is too large")))?;
        Ok(())
    }

    /// Updates applied so far (fewer than the steps when some were skipped).
    #[must_use]
    pub fn steps(&self) -> u64 {
        u64::try_from(self.steps).unwrap_or(0)
    }

    /// Number of trainable scalars.
    #[must_use]
    pub fn parameter_count(&self) -> u64 {
        self.params
            .iter()
            .map(|state| state.param.numel() as u64)
            .sum()
    }
}

/// Linear warmup to `learning_rate`, then cosine decay to `min_learning_rate`
/// at `max_steps`. `step` counts from 0.
#[must_use]
pub fn learning_rate(train: &TrainConfig, step: u64) -> f64 {
    if step < train.warmup_steps {
        return train.learning_rate * (step + 1) as f64 / train.warmup_steps as f64;
    }
    let decay_steps = train.max_steps.saturating_sub(train.warmup_steps).max(1);
    let progress = ((step - train.warmup_steps) as f64 / decay_steps as f64).min(1.0);
    let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
    train.min_learning_rate + cosine * (train.learning_rate - train.min_learning_rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_the_floor() {
        let train = TrainConfig {
            max_steps: 110,
            warmup_steps: 10,
            learning_rate: 1.0,
            min_learning_rate: 0.1,
            ..TrainConfig::default()
        };
        assert!((learning_rate(&train, 0) - 0.1).abs() < 1e-12);
        assert!((learning_rate(&train, 9) - 1.0).abs() < 1e-12);
        assert!((learning_rate(&train, 10) - 1.0).abs() < 1e-12);
        assert!((learning_rate(&train, 60) - 0.55).abs() < 1e-12);
        assert!((learning_rate(&train, 110) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn adamw_matches_the_reference_update() {
        // One parameter, one step, gradient g = 2 * p: with bias correction the
        // first Adam step moves each weight by lr * sign(g), after decay.
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let p = vs
            .root()
            .var_copy("w", &Tensor::from_slice(&[1.0f32, -2.0]).view([1, 2]));
        let mut optimizer = AdamW::new(&vs, 0.5);
        let loss = (&p * &p).sum(tch::Kind::Float);
        loss.backward();
        optimizer.step(0.1);
        let got: Vec<f32> = Vec::try_from(p.flatten(0, -1)).unwrap();
        let expected = [1.0 * (1.0 - 0.05) - 0.1, -2.0 * (1.0 - 0.05) + 0.1];
        for (g, e) in got.iter().zip(expected) {
            assert!((f64::from(*g) - e).abs() < 1e-5, "{got:?} vs {expected:?}");
        }
    }

    #[test]
    fn a_zero_learning_rate_leaves_the_weights_alone() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let p = vs
            .root()
            .var_copy("w", &Tensor::from_slice(&[1.0f32, 0.0]).view([1, 2]));
        let mut optimizer = AdamW::new(&vs, 0.1);
        (&p * &p).sum(tch::Kind::Float).backward(); // the second gradient is 0
        optimizer.step(0.0);
        let got: Vec<f32> = Vec::try_from(p.flatten(0, -1)).unwrap();
        assert_eq!(got, [1.0, 0.0]);
    }

    #[test]
    fn clipping_bounds_the_global_norm() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let p = vs
            .root()
            .var_copy("w", &Tensor::from_slice(&[3.0f32, 4.0]).view([1, 2]));
        let optimizer = AdamW::new(&vs, 0.0);
        (&p * &p).sum(tch::Kind::Float).backward(); // grad (6, 8), norm 10
        let total = optimizer.grad_norm();
        assert!((total.double_value(&[]) - 10.0).abs() < 1e-4);
        optimizer.clip_grad_norm(&total, 1.0);
        let norm = p.grad().norm().double_value(&[]);
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
        assert!(optimizer.parameters_finite());
        let _ = p.shallow_clone().detach_().fill_(f64::NAN);
        assert!(!optimizer.parameters_finite());
    }
}
