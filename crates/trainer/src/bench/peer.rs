//! The PyTorch peer (`bench/peer_torch.py`): the spec it is given and the
//! figures it returns.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

use trainui_protocol::config::Config;
use trainui_protocol::error::{Error, Result};

/// Where the peer's weights and logits check comes from.
pub struct LogitsCheck {
    pub weights: PathBuf,
    pub logits: PathBuf,
}

/// What the peer measures, and on what.
pub struct PeerSpec<'a> {
    pub config: &'a Config,
    pub device: &'a str,
    pub vocab_size: u32,
    pub threads: u32,
    pub train_steps: u64,
    pub prompt_len: u32,
    pub new_tokens: u32,
    pub gen_repeats: u32,
    pub check: Option<LogitsCheck>,
}

#[derive(Debug, Deserialize)]
pub struct PeerCheck {
    pub max_abs_diff: f64,
}

/// One run of the peer.
#[derive(Debug, Deserialize)]
pub struct PeerResult {
    pub parameters: u64,
    pub torch: String,
    pub check: Option<PeerCheck>,
    pub step_secs: Vec<f64>,
    pub tokens_per_step: u64,
    /// Per repeat, the seconds of each decoding step (prefill first).
    pub decode_secs: Vec<Vec<f64>>,
}

/// Runs `script` with `python` on `spec` (written to `work/peer-spec.json`).
pub fn run(python: &Path, script: &Path, spec: &PeerSpec<'_>, work: &Path) -> Result<PeerResult> {
    let c = spec.config;
    let json = serde_json::json!({
        "seed": c.seed,
        "threads": spec.threads,
        "device": spec.device,
        "vocab_size": spec.vocab_size,
        "model": c.model,
        "train": {
            "batch_size": c.train.batch_size,
            "learning_rate": c.train.learning_rate,
            "min_learning_rate": c.train.min_learning_rate,
            "warmup_steps": c.train.warmup_steps,
            "max_steps": c.train.max_steps,
            "weight_decay": c.train.weight_decay,
            "grad_clip": c.train.grad_clip,
        },
        "train_steps": spec.train_steps,
        "gen_block_size": spec.prompt_len + spec.new_tokens,
        "gen_repeats": spec.gen_repeats,
        "prompt_len": spec.prompt_len,
        "new_tokens": spec.new_tokens,
        "check": spec.check.as_ref().map(|check| serde_json::json!({
            "weights": check.weights,
            "logits": check.logits,
        })),
    });
    let spec_path = work.join("peer-spec.json");
    std::fs::write(&spec_path, json.to_string())
        .map_err(Error::io("cannot write the peer's spec", &spec_path))?;
    let output = Command::new(python)
        .arg(script)
        .arg("--spec")
        .arg(&spec_path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            Error::Usage(format!(
                "cannot run the PyTorch peer with {}: {e}; pass --python with a Python that has \
                 torch 2.13.0 (./dev bench finds it)",
                python.display()
            ))
        })?;
    if !output.status.success() {
        return Err(Error::Failed(format!(
            "the PyTorch peer ({} {}) failed ({}):\n{}",
            python.display(),
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        )));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| {
        Error::Failed(format!(
            "the PyTorch peer printed something other than its result ({e}):\n{}",
            String::from_utf8_lossy(&output.stdout).trim_end()
        ))
    })
}
