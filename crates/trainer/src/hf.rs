//! Hugging Face model folders (`config.json`, safetensors weights,
//! `tokenizer.json`): which architecture a folder holds, with every
//! unsupported setting refused by name. Plain data; the weights themselves
//! are read by the trainer.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use trainui_protocol::error::{Error, Result};

pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const WEIGHTS_INDEX_FILE: &str = "model.safetensors.index.json";
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// The model families trainui builds, with the sizes they need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "snake_case")]
pub enum Architecture {
    /// `GPT2LMHeadModel`: learned positions, LayerNorm, tanh-GELU MLP, tied head.
    Gpt2(Gpt2Config),
    /// `LlamaForCausalLM` and its relatives (`Qwen2ForCausalLM`): RMSNorm,
    /// rotary positions, SwiGLU MLP, grouped-query attention.
    Llama(LlamaConfig),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gpt2Config {
    pub vocab_size: u32,
    pub n_layer: u32,
    pub n_head: u32,
    pub n_embd: u32,
    pub n_positions: u32,
    pub layer_norm_epsilon: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "the flags of a Hugging Face config, one for one"
)]
pub struct LlamaConfig {
    /// The `architectures` name it was read from (kept for export).
    pub architecture: String,
    pub vocab_size: u32,
    pub hidden_size: u32,
    pub intermediate_size: u32,
    pub num_hidden_layers: u32,
    pub num_attention_heads: u32,
    pub num_key_value_heads: u32,
    pub head_dim: u32,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub max_position_embeddings: u32,
    pub tie_word_embeddings: bool,
    /// Biases on the q, k and v projections (Llama `attention_bias`, Qwen2).
    pub qkv_bias: bool,
    /// A bias on the output projection (Llama `attention_bias`).
    pub o_bias: bool,
    pub mlp_bias: bool,
}

impl Architecture {
    /// A GPT-2 of trainui's own sizes (a model trained from scratch).
    #[must_use]
    pub fn gpt2(model: &trainui_protocol::config::ModelConfig, vocab_size: u32) -> Self {
        Self::Gpt2(Gpt2Config {
            vocab_size,
            n_layer: model.n_layer,
            n_head: model.n_head,
            n_embd: model.n_embd,
            n_positions: model.block_size,
            layer_norm_epsilon: 1e-5,
        })
    }

    #[must_use]
    pub fn vocab_size(&self) -> u32 {
        match self {
            Self::Gpt2(c) => c.vocab_size,
            Self::Llama(c) => c.vocab_size,
        }
    }

    /// Longest sequence the model's positions allow.
    #[must_use]
    pub fn max_positions(&self) -> u32 {
        match self {
            Self::Gpt2(c) => c.n_positions,
            Self::Llama(c) => c.max_position_embeddings,
        }
    }

    /// `(n_layer, n_head, n_embd)` in trainui's terms.
    #[must_use]
    pub fn sizes(&self) -> (u32, u32, u32) {
        match self {
            Self::Gpt2(c) => (c.n_layer, c.n_head, c.n_embd),
            Self::Llama(c) => (c.num_hidden_layers, c.num_attention_heads, c.hidden_size),
        }
    }

    /// The Hugging Face `config.json` that describes this model.
    #[must_use]
    pub fn hf_config(&self, eos_token_id: u32) -> Value {
        match self {
            Self::Gpt2(c) => serde_json::json!({
                "architectures": ["GPT2LMHeadModel"],
                "model_type": "gpt2",
                "vocab_size": c.vocab_size,
                "n_layer": c.n_layer,
                "n_head": c.n_head,
                "n_embd": c.n_embd,
                "n_positions": c.n_positions,
                "n_ctx": c.n_positions,
                "layer_norm_epsilon": c.layer_norm_epsilon,
                "activation_function": "gelu_new",
                "resid_pdrop": 0.0,
                "embd_pdrop": 0.0,
                "attn_pdrop": 0.0,
                "tie_word_embeddings": true,
                "bos_token_id": eos_token_id,
                "eos_token_id": eos_token_id,
                "torch_dtype": "float32",
            }),
            Self::Llama(c) => {
                let qwen = c.architecture == "Qwen2ForCausalLM";
                let mut config = serde_json::json!({
                    "architectures": [c.architecture],
                    "model_type": if qwen { "qwen2" } else { "llama" },
                    "vocab_size": c.vocab_size,
                    "hidden_size": c.hidden_size,
                    "intermediate_size": c.intermediate_size,
                    "num_hidden_layers": c.num_hidden_layers,
                    "num_attention_heads": c.num_attention_heads,
                    "num_key_value_heads": c.num_key_value_heads,
                    "head_dim": c.head_dim,
                    "rms_norm_eps": c.rms_norm_eps,
                    "rope_theta": c.rope_theta,
                    "max_position_embeddings": c.max_position_embeddings,
                    "tie_word_embeddings": c.tie_word_embeddings,
                    "hidden_act": "silu",
                    "eos_token_id": eos_token_id,
                    "torch_dtype": "float32",
                });
                if !qwen {
                    config["attention_bias"] = c.o_bias.into();
                    config["mlp_bias"] = c.mlp_bias.into();
                }
                config
            }
        }
    }
}

/// What a model folder holds.
#[derive(Debug, Clone)]
pub struct HfFolder {
    pub path: PathBuf,
    pub architecture: Architecture,
    /// From config.json (or generation_config.json), when it says.
    pub eos_token_id: Option<u32>,
    /// `config.json`'s `torch_dtype`, e.g. `bfloat16`.
    pub torch_dtype: Option<String>,
    /// Every safetensors file of the weights with the tensors it holds,
    /// checked against config.json.
    pub weights: Vec<WeightFile>,
}

impl HfFolder {
    /// The folder's config asks for bfloat16 weights.
    #[must_use]
    pub fn wants_bf16(&self) -> bool {
        self.torch_dtype.as_deref() == Some("bfloat16")
    }

    #[must_use]
    pub fn tokenizer(&self) -> PathBuf {
        self.path.join(TOKENIZER_FILE)
    }
}

/// Reads `folder/config.json`, finds the weight files and checks their
/// tensors against it from their headers, before anything is loaded or
/// written.
pub fn read_folder(folder: &Path) -> Result<HfFolder> {
    read_folder_of(folder).map_err(Error::Input)
}

fn read_folder_of(folder: &Path) -> std::result::Result<HfFolder, String> {
    let config_path = folder.join(CONFIG_FILE);
    let text = trainui_protocol::runfile::read_text(&config_path).map_err(|e| {
        format!(
            "{}: cannot read the model's config ({e}); model.init_from must name a Hugging Face \
             model folder with config.json, model.safetensors and tokenizer.json",
            config_path.display()
        )
    })?;
    let config: Value = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not valid JSON: {e}", config_path.display()))?;
    let at = |message: String| format!("{}: {message}", config_path.display());
    let architecture = parse_architecture(&config).map_err(at)?;
    let eos_token_id = eos_of(&config).or_else(|| {
        trainui_protocol::runfile::read_text(&folder.join("generation_config.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|c| eos_of(&c))
    });
    let weights = check_weights(folder, &architecture, &weight_files(folder)?)?;
    Ok(HfFolder {
        path: folder.to_owned(),
        architecture,
        eos_token_id,
        torch_dtype: config["torch_dtype"]
            .as_str()
            .or_else(|| config["dtype"].as_str())
            .map(str::to_owned),
        weights,
    })
}

fn eos_of(config: &Value) -> Option<u32> {
    let eos = &config["eos_token_id"];
    eos.as_u64()
        .or_else(|| eos.as_array()?.first()?.as_u64())
        .and_then(|id| u32::try_from(id).ok())
}

fn weight_files(folder: &Path) -> std::result::Result<Vec<PathBuf>, String> {
    let single = folder.join(WEIGHTS_FILE);
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index_path = folder.join(WEIGHTS_INDEX_FILE);
    if !index_path.is_file() {
        return Err(format!(
            "{}: no {WEIGHTS_FILE} or {WEIGHTS_INDEX_FILE}; trainui reads safetensors weights \
             (save them with save_pretrained(..., safe_serialization=True))",
            folder.display()
        ));
    }
    let index: Value = trainui_protocol::runfile::read_text(&index_path)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
        .map_err(|e| format!("{}: {e}", index_path.display()))?;
    let map = index["weight_map"].as_object().ok_or_else(|| {
        format!(
            "{}: no \"weight_map\" object naming each tensor's file",
            index_path.display()
        )
    })?;
    let names: BTreeSet<&str> = map.values().filter_map(Value::as_str).collect();
    names
        .into_iter()
        .map(|name| {
            let path = folder.join(name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(format!(
                    "{}: names {name}, which is not in the folder",
                    index_path.display()
                ))
            }
        })
        .collect()
}

fn parse_architecture(config: &Value) -> std::result::Result<Architecture, String> {
    let name = config["architectures"]
        .as_array()
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .ok_or("no \"architectures\" entry naming the model class")?;
    let number = |key: &str| -> std::result::Result<Option<f64>, String> {
        match &config[key] {
            Value::Null => Ok(None),
            value => value
                .as_f64()
                .map(Some)
                .ok_or_else(|| format!("\"{key}\" must be a number, not {value}")),
        }
    };
    let size = |key: &str| -> std::result::Result<u32, String> {
        let value = number(key)?.ok_or_else(|| format!("\"{key}\" is missing"))?;
        if value >= 1.0 && value.fract() == 0.0 && value <= f64::from(u32::MAX) {
            Ok(value as u32)
        } else {
            Err(format!(
                "\"{key}\" must be a positive whole number, not {value}"
            ))
        }
    };
    let flag = |key: &str, default: bool| config[key].as_bool().unwrap_or(default);
    match name {
        "GPT2LMHeadModel" => {
            let activation = config["activation_function"].as_str().unwrap_or("gelu_new");
            if !matches!(activation, "gelu_new" | "gelu_pytorch_tanh") {
                return Err(format!(
                    "activation_function \"{activation}\" is not supported; trainui's GPT-2 uses \
                     the tanh GELU (\"gelu_new\")"
                ));
            }
            for key in ["scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"] {
                if flag(key, false) {
                    return Err(format!("\"{key}\": true is not supported"));
                }
            }
            let n_embd = size("n_embd")?;
            if let Some(inner) = number("n_inner")?
                && (inner - f64::from(4 * n_embd)).abs() > 0.5
            {
                return Err(format!(
                    "\"n_inner\" {inner} is not supported; trainui's GPT-2 MLP is 4 x n_embd"
                ));
            }
            let n_head = size("n_head")?;
            if n_embd % n_head != 0 {
                return Err(format!(
                    "n_embd {n_embd} is not a multiple of n_head {n_head}"
                ));
            }
            Ok(Architecture::Gpt2(Gpt2Config {
                vocab_size: size("vocab_size")?,
                n_layer: size("n_layer")?,
                n_head,
                n_embd,
                n_positions: size("n_positions")?,
                layer_norm_epsilon: number("layer_norm_epsilon")?.unwrap_or(1e-5),
            }))
        }
        "LlamaForCausalLM" | "Qwen2ForCausalLM" => {
            let activation = config["hidden_act"].as_str().unwrap_or("silu");
            if activation != "silu" {
                return Err(format!(
                    "hidden_act \"{activation}\" is not supported; trainui's Llama MLP is SwiGLU \
                     (\"silu\")"
                ));
            }
            if !config["rope_scaling"].is_null() {
                return Err(format!(
                    "rope_scaling {} is not supported; trainui uses plain rotary positions with \
                     rope_theta",
                    config["rope_scaling"]
                ));
            }
            // transformers 5 writes {"rope_parameters": {"rope_type", "rope_theta"}}.
            let rope = &config["rope_parameters"];
            let rope_type = rope["rope_type"].as_str().unwrap_or("default");
            if rope_type != "default" {
                return Err(format!(
                    "rope_parameters.rope_type \"{rope_type}\" is not supported; trainui uses \
                     plain rotary positions with rope_theta"
                ));
            }
            let rope_theta = match rope["rope_theta"].as_f64() {
                Some(theta) => theta,
                None => number("rope_theta")?.unwrap_or(10_000.0),
            };
            let qwen = name == "Qwen2ForCausalLM";
            if qwen && flag("use_sliding_window", false) {
                return Err("\"use_sliding_window\": true is not supported".into());
            }
            let hidden_size = size("hidden_size")?;
            let heads = size("num_attention_heads")?;
            let kv_heads = match number("num_key_value_heads")? {
                Some(_) => size("num_key_value_heads")?,
                None => heads,
            };
            if heads % kv_heads != 0 {
                return Err(format!(
                    "num_attention_heads {heads} is not a multiple of num_key_value_heads \
                     {kv_heads}"
                ));
            }
            let head_dim = match number("head_dim")? {
                Some(_) => size("head_dim")?,
                None if hidden_size % heads == 0 => hidden_size / heads,
                None => {
                    return Err(format!(
                        "hidden_size {hidden_size} is not a multiple of num_attention_heads {heads}"
                    ));
                }
            };
            let attention_bias = flag("attention_bias", false);
            Ok(Architecture::Llama(LlamaConfig {
                architecture: name.to_owned(),
                vocab_size: size("vocab_size")?,
                hidden_size,
                intermediate_size: size("intermediate_size")?,
                num_hidden_layers: size("num_hidden_layers")?,
                num_attention_heads: heads,
                num_key_value_heads: kv_heads,
                head_dim,
                rms_norm_eps: number("rms_norm_eps")?.unwrap_or(1e-6),
                rope_theta,
                max_position_embeddings: size("max_position_embeddings")?,
                tie_word_embeddings: flag("tie_word_embeddings", false),
                qkv_bias: qwen || attention_bias,
                o_bias: !qwen && attention_bias,
                mlp_bias: !qwen && flag("mlp_bias", false),
            }))
        }
        other => Err(format!(
            "architecture \"{other}\" is not supported; trainui loads GPT2LMHeadModel, \
             LlamaForCausalLM and Qwen2ForCausalLM"
        )),
    }
}

/// Reads `config.model.init_from` and makes the config follow the folder:
/// the model's sizes and the tokenizer come from it. A size the user gave
/// too must agree; `model.block_size` may be smaller (it bounds the data).
pub fn apply_to_config(config: &mut trainui_protocol::config::Config) -> Result<Option<HfFolder>> {
    let Some(path) = config.model.init_from.clone() else {
        return Ok(None);
    };
    let folder = read_folder(&path)?;
    let (n_layer, n_head, n_embd) = folder.architecture.sizes();
    let config_file = path.join(CONFIG_FILE);
    for (key, ours, theirs) in [
        ("model.n_layer", config.model.n_layer, n_layer),
        ("model.n_head", config.model.n_head, n_head),
        ("model.n_embd", config.model.n_embd, n_embd),
    ] {
        if config.given.contains(key) && ours != theirs {
            return Err(Error::Config(format!(
                "{key} is {ours}, but {} says {theirs}; with model.init_from the folder decides: \
                 remove {key} or make it {theirs}",
                config_file.display()
            )));
        }
    }
    let positions = folder.architecture.max_positions();
    if config.given.contains("model.block_size") {
        if config.model.block_size > positions {
            return Err(Error::Config(format!(
                "model.block_size is {}, more than the {positions} positions of {}; lower it",
                config.model.block_size,
                config_file.display()
            )));
        }
    } else {
        config.model.block_size = positions;
    }
    let tokenizer = folder.tokenizer();
    if config.given.contains("data.tokenizer") && config.data.tokenizer != tokenizer {
        return Err(Error::Config(format!(
            "data.tokenizer is {}, but model.init_from brings its own ({}); remove data.tokenizer",
            config.data.tokenizer.display(),
            tokenizer.display()
        )));
    }
    config.model.n_layer = n_layer;
    config.model.n_head = n_head;
    config.model.n_embd = n_embd;
    config.data.tokenizer = tokenizer;
    Ok(Some(folder))
}

/// Tensors a folder may hold that are not parameters of the model: GPT-2's
/// attention-mask buffers, rotary frequency buffers, a tied head.
#[must_use]
pub fn ignorable(architecture: &Architecture, name: &str) -> bool {
    let tied_head = match architecture {
        Architecture::Gpt2(_) => true,
        Architecture::Llama(c) => c.tie_word_embeddings,
    };
    name.ends_with(".attn.bias")
        || name.ends_with(".attn.masked_bias")
        || name.ends_with(".rotary_emb.inv_freq")
        || (tied_head && name == "lm_head.weight")
}

/// Every parameter of `architecture` with its shape as Hugging Face stores
/// it (GPT-2's Conv1D weights as `(in, out)`).
#[must_use]
pub fn expected_tensors(architecture: &Architecture) -> BTreeMap<String, Vec<i64>> {
    let mut tensors = BTreeMap::new();
    let mut add = |name: String, shape: &[u32]| {
        tensors.insert(name, shape.iter().map(|&d| i64::from(d)).collect());
    };
    match architecture {
        Architecture::Gpt2(c) => {
            let width = c.n_embd;
            add("transformer.wte.weight".into(), &[c.vocab_size, width]);
            add("transformer.wpe.weight".into(), &[c.n_positions, width]);
            for i in 0..c.n_layer {
                let layer = format!("transformer.h.{i}");
                for norm in ["ln_1", "ln_2"] {
                    add(format!("{layer}.{norm}.weight"), &[width]);
                    add(format!("{layer}.{norm}.bias"), &[width]);
                }
                for (name, inputs, outputs) in [
                    ("attn.c_attn", width, 3 * width),
                    ("attn.c_proj", width, width),
                    ("mlp.c_fc", width, 4 * width),
                    ("mlp.c_proj", 4 * width, width),
                ] {
                    add(format!("{layer}.{name}.weight"), &[inputs, outputs]);
                    add(format!("{layer}.{name}.bias"), &[outputs]);
                }
            }
            add("transformer.ln_f.weight".into(), &[width]);
            add("transformer.ln_f.bias".into(), &[width]);
        }
        Architecture::Llama(c) => {
            let hidden = c.hidden_size;
            let (q_width, kv_width) = (
                c.num_attention_heads * c.head_dim,
                c.num_key_value_heads * c.head_dim,
            );
            add("model.embed_tokens.weight".into(), &[c.vocab_size, hidden]);
            for i in 0..c.num_hidden_layers {
                let layer = format!("model.layers.{i}");
                add(format!("{layer}.input_layernorm.weight"), &[hidden]);
                add(
                    format!("{layer}.post_attention_layernorm.weight"),
                    &[hidden],
                );
                for (name, inputs, outputs, bias) in [
                    ("self_attn.q_proj", hidden, q_width, c.qkv_bias),
                    ("self_attn.k_proj", hidden, kv_width, c.qkv_bias),
                    ("self_attn.v_proj", hidden, kv_width, c.qkv_bias),
                    ("self_attn.o_proj", q_width, hidden, c.o_bias),
                    ("mlp.gate_proj", hidden, c.intermediate_size, c.mlp_bias),
                    ("mlp.up_proj", hidden, c.intermediate_size, c.mlp_bias),
                    ("mlp.down_proj", c.intermediate_size, hidden, c.mlp_bias),
                ] {
                    add(format!("{layer}.{name}.weight"), &[outputs, inputs]);
                    if bias {
                        add(format!("{layer}.{name}.bias"), &[outputs]);
                    }
                }
            }
            add("model.norm.weight".into(), &[hidden]);
            if !c.tie_word_embeddings {
                add("lm_head.weight".into(), &[c.vocab_size, hidden]);
            }
        }
    }
    tensors
}

/// One safetensors file of a folder's weights, with the tensors it holds.
#[derive(Debug, Clone)]
pub struct WeightFile {
    pub path: PathBuf,
    pub tensors: Vec<StoredTensor>,
}

/// A tensor as its file's header describes it.
#[derive(Debug, Clone)]
pub struct StoredTensor {
    /// Its name in the file.
    pub name: String,
    /// The model parameter it holds (see [`parameter_name`]).
    pub parameter: String,
    /// The safetensors dtype: `F32`, `F16`, `BF16` or `F64`.
    pub dtype: String,
    /// Its shape as stored (GPT-2's Conv1D weights as `(in, out)`).
    pub shape: Vec<i64>,
    /// Where its bytes start in the file, and how many there are.
    pub offset: u64,
    pub len: u64,
}

/// Bytes per element of the float dtypes a model's weights may have.
fn element_size(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "F64" => 8,
        "F32" => 4,
        "F16" | "BF16" => 2,
        _ => return None,
    })
}

/// Reads the headers of `files` and checks every tensor against the
/// parameters `architecture` has: each stored once, with its shape, a float
/// dtype and data offsets that fit it, and none missing. The one reader of
/// safetensors headers, for checking a folder and for loading it.
fn check_weights(
    folder: &Path,
    architecture: &Architecture,
    files: &[PathBuf],
) -> std::result::Result<Vec<WeightFile>, String> {
    let expected = expected_tensors(architecture);
    let mut found = BTreeSet::new();
    let mut weights = Vec::new();
    for path in files {
        let at = |message: String| format!("{}: {message}", path.display());
        let (header, data_start) = read_header(path).map_err(at)?;
        let file_len = fs::metadata(path).map_err(|e| at(e.to_string()))?.len();
        let mut tensors = Vec::new();
        for (name, info) in header {
            if name == "__metadata__" || ignorable(architecture, &name) {
                continue;
            }
            let parameter = parameter_name(architecture, &name);
            let Some(shape) = expected.get(&parameter) else {
                return Err(at(format!(
                    "tensor {name} is not a parameter of this model (from config.json); the \
                     folder's config.json and weights do not match"
                )));
            };
            let dtype = info["dtype"].as_str().unwrap_or("?").to_owned();
            let size = element_size(&dtype)
                .ok_or_else(|| at(format!("tensor {name} has dtype {dtype}, not a float type")))?;
            let stored: Vec<i64> = info["shape"]
                .as_array()
                .map(|dims| dims.iter().filter_map(Value::as_i64).collect())
                .unwrap_or_default();
            if &stored != shape {
                return Err(at(format!(
                    "tensor {name} has shape {stored:?}, but config.json makes it {shape:?}"
                )));
            }
            let offsets: Vec<u64> = info["data_offsets"]
                .as_array()
                .map(|o| o.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default();
            let elements: u64 = shape.iter().map(|&d| d as u64).product();
            let len = match offsets[..] {
                [begin, end] => end
                    .checked_sub(begin)
                    .filter(|&len| len == elements * size)
                    .map(|len| (data_start + begin, len)),
                _ => None,
            };
            let Some((offset, len)) = len else {
                return Err(at(format!(
                    "tensor {name}: data_offsets disagree with its shape and dtype"
                )));
            };
            if offset + len > file_len {
                return Err(at(format!(
                    "tensor {name} ends at byte {}, past the end of the file ({file_len} bytes): \
                     the file is truncated",
                    offset + len
                )));
            }
            if !found.insert(parameter.clone()) {
                return Err(at(format!("tensor {name} appears twice in the weights")));
            }
            tensors.push(StoredTensor {
                name,
                parameter,
                dtype,
                shape: stored,
                offset,
                len,
            });
        }
        weights.push(WeightFile {
            path: path.clone(),
            tensors,
        });
    }
    let missing: Vec<&String> = expected.keys().filter(|k| !found.contains(*k)).collect();
    if let Some(first) = missing.first() {
        return Err(format!(
            "{}: tensor {first} is missing from the weights{}; the folder's config.json and \
             weights do not match",
            folder.display(),
            if missing.len() > 1 {
                format!(" (and {} more)", missing.len() - 1)
            } else {
                String::new()
            }
        ));
    }
    Ok(weights)
}

/// A safetensors header (name -> dtype, shape, data_offsets) and where the
/// data starts.
fn read_header(path: &Path) -> std::result::Result<(BTreeMap<String, Value>, u64), String> {
    use std::io::Read;
    let mut file = trainui_protocol::runfile::open(path).map_err(|e| e.to_string())?;
    let mut length = [0u8; 8];
    file.read_exact(&mut length)
        .map_err(|e| format!("not a safetensors file: {e}"))?;
    let length = u64::from_le_bytes(length);
    if length > 100 << 20 {
        return Err(format!("not a safetensors file (header of {length} bytes)"));
    }
    let mut header = vec![0u8; length as usize];
    file.read_exact(&mut header)
        .map_err(|e| format!("not a safetensors file: {e}"))?;
    let header: BTreeMap<String, Value> = serde_json::from_slice(&header)
        .map_err(|e| format!("not a safetensors file (header: {e})"))?;
    Ok((header, 8 + length))
}

/// The parameter name a stored tensor is for: folders saved from GPT2Model
/// (not the LM head class) leave out the "transformer." prefix.
#[must_use]
pub fn parameter_name(architecture: &Architecture, stored: &str) -> String {
    if matches!(architecture, Architecture::Gpt2(_)) && !stored.starts_with("transformer.") {
        format!("transformer.{stored}")
    } else {
        stored.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Architecture, String> {
        parse_architecture(&serde_json::from_str(json).unwrap())
    }

    #[test]
    fn llama_defaults_follow_transformers() {
        let arch = parse(
            r#"{"architectures": ["LlamaForCausalLM"], "vocab_size": 100, "hidden_size": 64,
                "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                "num_key_value_heads": 2, "max_position_embeddings": 256}"#,
        )
        .unwrap();
        let Architecture::Llama(c) = arch else {
            panic!("{arch:?}")
        };
        assert_eq!((c.head_dim, c.num_key_value_heads), (16, 2));
        assert!((c.rope_theta - 10_000.0).abs() < f64::EPSILON);
        assert!(!c.tie_word_embeddings && !c.qkv_bias && !c.o_bias);
    }

    #[test]
    fn unsupported_settings_are_refused_by_name() {
        let error = parse(r#"{"architectures": ["BertModel"]}"#).unwrap_err();
        assert!(
            error.contains("architecture \"BertModel\" is not supported"),
            "{error}"
        );
        let error =
            parse(r#"{"architectures": ["LlamaForCausalLM"], "rope_scaling": {"type": "linear"}}"#)
                .unwrap_err();
        assert!(error.contains("rope_scaling"), "{error}");
        let error = parse(r#"{"architectures": ["GPT2LMHeadModel"], "n_embd": 64}"#).unwrap_err();
        assert!(error.contains("\"n_head\" is missing"), "{error}");
    }
}
