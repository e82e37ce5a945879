//! Weights of Hugging Face model folders: read into a VarStore one tensor
//! at a time (so the weights are never held twice), and written back in the
//! same layout by `trainui export`.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use tch::{Device, Kind, Tensor, nn};

use crate::hf::{Architecture, WeightFile};
use trainui_protocol::error::{Error, Result};

/// GPT-2's Conv1D weights are stored `(in, out)`; trainui's Linear layers
/// hold `(out, in)`.
fn conv1d(architecture: &Architecture, name: &str) -> bool {
    matches!(architecture, Architecture::Gpt2(_))
        && [
            ".attn.c_attn.weight",
            ".attn.c_proj.weight",
            ".mlp.c_fc.weight",
            ".mlp.c_proj.weight",
        ]
        .iter()
        .any(|suffix| name.ends_with(suffix))
}

fn kind_of(dtype: &str) -> Kind {
    match dtype {
        "F16" => Kind::Half,
        "BF16" => Kind::BFloat16,
        "F64" => Kind::Double,
        _ => Kind::Float,
    }
}

/// Copies the tensors of `weights` (checked by [`crate::hf::read_folder`]
/// against the architecture) into the variables of `vs`.
pub fn load(vs: &nn::VarStore, architecture: &Architecture, weights: &[WeightFile]) -> Result<()> {
    let variables = vs.variables();
    let mut loaded = 0;
    let _no_grad = tch::no_grad_guard();
    for weight_file in weights {
        let path = &weight_file.path;
        let mut file = trainui_protocol::runfile::open(path).map_err(|err| {
            Error::Input(format!(
                "{}: cannot open the weights: {err}",
                path.display()
            ))
        })?;
        for stored in &weight_file.tensors {
            let Some(variable) = variables.get(&stored.parameter) else {
                return Err(Error::Failed(format!(
                    "{}: tensor {} has no {} parameter {} to load into",
                    path.display(),
                    stored.name,
                    family(architecture),
                    stored.parameter
                )));
            };
            let mut bytes = vec![0u8; stored.len as usize];
            file.seek(SeekFrom::Start(stored.offset))
                .and_then(|_| file.read_exact(&mut bytes))
                .map_err(Error::io("cannot read the weights", path))?;
            let torch = |e: tch::TchError| {
                Error::Torch(format!("{}: tensor {}: {e}", path.display(), stored.name))
            };
            let mut tensor =
                Tensor::f_from_data_size(&bytes, &stored.shape, kind_of(&stored.dtype))
                    .map_err(torch)?;
            drop(bytes);
            if conv1d(architecture, &stored.parameter) {
                tensor = tensor.tr();
            }
            variable.shallow_clone().f_copy_(&tensor).map_err(torch)?;
            loaded += 1;
        }
    }
    if loaded != variables.len() {
        return Err(Error::Failed(format!(
            "loaded {loaded} tensors into a {} model of {} parameters",
            family(architecture),
            variables.len()
        )));
    }
    Ok(())
}

fn family(architecture: &Architecture) -> &'static str {
    match architecture {
        Architecture::Gpt2(_) => "GPT-2",
        Architecture::Llama(_) => "Llama",
    }
}

/// Writes the variables of `vs` as `out/model.safetensors` in the Hugging
/// Face layout of `architecture` (float32, on the CPU).
pub fn export(vs: &nn::VarStore, architecture: &Architecture, out: &Path) -> Result<()> {
    let variables: HashMap<String, Tensor> = vs.variables();
    let mut names: Vec<&String> = variables.keys().collect();
    names.sort();
    let tensors: Vec<(String, Tensor)> = names
        .into_iter()
        .map(|name| {
            let mut tensor = variables[name]
                .to_device(Device::Cpu)
                .to_kind(Kind::Float)
                .detach();
            if conv1d(architecture, name) {
                tensor = tensor.tr();
            }
            (name.clone(), tensor.contiguous())
        })
        .collect();
    let path = out.join(crate::hf::WEIGHTS_FILE);
    Tensor::write_safetensors(&tensors, &path)
        .map_err(|e| Error::Torch(format!("{}: cannot write the weights: {e}", path.display())))
}
