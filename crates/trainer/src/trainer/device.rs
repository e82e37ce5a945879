//! Devices and model construction, shared by training, `generate`, `export`
//! and the bench.

use tch::{Device, nn};

use super::llama::Llama;
use super::model::{CausalLm, Gpt, GptShape};
use crate::hf::Architecture;
use trainui_protocol::config::DevicePref;
use trainui_protocol::error::{Error, Result};

/// Checks that the requested device exists and names the one that will be
/// used, e.g. `cpu` or `cuda:0`.
pub fn resolve_device(pref: DevicePref) -> Result<String> {
    device_of(pref).map(device_name)
}

/// The device `pref` names; one that does not exist here is the user's
/// mistake.
pub fn device_of(pref: DevicePref) -> Result<Device> {
    match pref {
        DevicePref::Auto => Ok(Device::cuda_if_available()),
        DevicePref::Cpu => Ok(Device::Cpu),
        DevicePref::Cuda(index) => {
            let count = tch::Cuda::device_count();
            if !tch::Cuda::is_available() || count == 0 {
                Err(Error::Config(format!(
                    "device: \"{pref}\" was asked for but CUDA is not available here; \
                     use \"auto\" or \"cpu\""
                )))
            } else if index as i64 >= count {
                Err(Error::Config(format!(
                    "device: \"{pref}\" does not exist; this machine has {count} GPU(s)"
                )))
            } else {
                Ok(Device::Cuda(index))
            }
        }
    }
}

#[must_use]
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(index) => format!("cuda:{index}"),
        _ => "cpu".to_owned(),
    }
}

/// Builds the model of `architecture` on `vs` (weights initialised at random).
pub fn build_model(vs: &nn::VarStore, architecture: &Architecture) -> Box<dyn CausalLm> {
    match architecture {
        Architecture::Gpt2(config) => Box::new(Gpt::new(&vs.root(), GptShape::of(config))),
        Architecture::Llama(config) => Box::new(Llama::new(&vs.root(), config)),
    }
}

/// Turns `vs` to bfloat16 when `wanted` and it lives on a GPU (on the CPU
/// bfloat16 is slower than float32, so it stays float32). Returns whether it did.
pub fn use_bf16(vs: &mut nn::VarStore, wanted: bool) -> bool {
    let on = wanted && vs.device().is_cuda();
    if on {
        vs.bfloat16();
    }
    on
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn bfloat16_is_only_used_on_a_gpu() {
        let mut vs = nn::VarStore::new(Device::Cpu);
        let weight = vs.root().zeros("w", &[2]);
        assert!(!use_bf16(&mut vs, true), "a CPU model stays float32");
        assert_eq!(weight.kind(), Kind::Float);
        assert!(!use_bf16(&mut vs, false));
    }
}
