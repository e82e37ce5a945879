//! Weights of Hugging Face model folders: read into a VarStore one tensor
//! at a time (so the weights are never held twice), and written back in the
//! same layout by `trainui export`.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde_json::Value;
use tch::{Device, Kind, Tensor, nn};

use crate::hf::{Architecture, ignorable, parameter_name, read_safetensors_header};

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

fn kind_of(dtype: &str) -> Option<Kind> {
    Some(match dtype {
        "F32" => Kind::Float,
        "F16" => Kind::Half,
        "BF16" => Kind::BFloat16,
        "F64" => Kind::Double,
        _ => return None,
    })
}

/// Copies every tensor of `files` into the variables of `vs`, checking names
/// and shapes; every parameter must be found exactly once.
pub fn load(
    vs: &nn::VarStore,
    architecture: &Architecture,
    files: &[std::path::PathBuf],
) -> Result<(), String> {
    let variables = vs.variables();
    let mut loaded = BTreeSet::new();
    let _no_grad = tch::no_grad_guard();
    for path in files {
        let at = |message: String| format!("{}: {message}", path.display());
        let mut file = File::open(path).map_err(|e| at(e.to_string()))?;
        let (header, data_start) = read_safetensors_header(&mut file).map_err(at)?;
        for (name, info) in header {
            if name == "__metadata__" || ignorable(architecture, &name) {
                continue;
            }
            let key = parameter_name(architecture, &name);
            let Some(variable) = variables.get(&key) else {
                return Err(at(format!(
                    "tensor {name} is not a parameter of this {} model (from config.json); the \
                     folder's config.json and weights do not match",
                    family(architecture)
                )));
            };
            let dtype = info["dtype"].as_str().unwrap_or("?");
            let kind = kind_of(dtype)
                .ok_or_else(|| at(format!("tensor {name} has dtype {dtype}, not a float type")))?;
            let shape: Vec<i64> = info["shape"]
                .as_array()
                .map(|dims| dims.iter().filter_map(Value::as_i64).collect())
                .unwrap_or_default();
            let transposed = conv1d(architecture, &key);
            let mut expected = variable.size();
            if transposed {
                expected.reverse();
            }
            if shape != expected {
                return Err(at(format!(
                    "tensor {name} has shape {shape:?}, but config.json makes it {expected:?}"
                )));
            }
            let offsets: Vec<u64> = info["data_offsets"]
                .as_array()
                .map(|o| o.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default();
            let [begin, end] = offsets[..] else {
                return Err(at(format!("tensor {name} has no data_offsets")));
            };
            let length = end.checked_sub(begin).filter(|&n| {
                n == shape.iter().product::<i64>() as u64 * kind.elt_size_in_bytes() as u64
            });
            let Some(length) = length else {
                return Err(at(format!(
                    "tensor {name}: data_offsets disagree with its shape"
                )));
            };
            let mut bytes = vec![0u8; length as usize];
            file.seek(SeekFrom::Start(data_start + begin))
                .and_then(|_| file.read_exact(&mut bytes))
                .map_err(|e| at(format!("tensor {name}: {e}")))?;
            let mut tensor =
                Tensor::f_from_data_size(&bytes, &shape, kind).map_err(|e| at(e.to_string()))?;
            drop(bytes);
            if transposed {
                tensor = tensor.tr();
            }
            let mut variable = variable.shallow_clone();
            variable
                .f_copy_(&tensor)
                .map_err(|e| at(format!("tensor {name}: {e}")))?;
            if !loaded.insert(key) {
                return Err(at(format!("tensor {name} appears twice in the weights")));
            }
        }
    }
    let missing: Vec<&String> = variables.keys().filter(|k| !loaded.contains(*k)).collect();
    if let Some(first) = missing.iter().min() {
        let folder = files
            .first()
            .and_then(|f| f.parent())
            .map_or_else(String::new, |p| p.display().to_string());
        return Err(format!(
            "{folder}: tensor {first} is missing from the weights{}; the folder's config.json \
             and weights do not match",
            if missing.len() > 1 {
                format!(" (and {} more)", missing.len() - 1)
            } else {
                String::new()
            }
        ));
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
pub fn export(vs: &nn::VarStore, architecture: &Architecture, out: &Path) -> Result<(), String> {
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
    Tensor::write_safetensors(&tensors, &path).map_err(|e| format!("{}: {e}", path.display()))
}
