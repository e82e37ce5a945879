//! What a run is configured by: [`Config`], its sections with their
//! defaults, and the values a type checks ([`DevicePref`], [`Seconds`]).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::events::OnNonFinite;

/// Everything a training run is configured by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Dotted keys the config file or `--set` gave (the rest are defaults).
    #[serde(skip)]
    pub given: GivenKeys,
    /// Folder for events, status, logs and checkpoints.
    pub run_dir: PathBuf,
    /// Seeds parameter initialisation, data order and sampling.
    pub seed: u64,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    pub device: DevicePref,
    pub data: DataConfig,
    pub model: ModelConfig,
    pub train: TrainConfig,
    pub eval: EvalConfig,
    pub checkpoint: CheckpointConfig,
    pub watchdog: WatchdogConfig,
    pub alerts: AlertsConfig,
    pub tensorboard: TensorboardConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// JSONL, one `{"prompt": ..., "completion": ...}` per line.
    pub train_file: PathBuf,
    pub val_file: PathBuf,
    /// A Hugging Face `tokenizer.json` with an `<|endoftext|>` token.
    pub tokenizer: PathBuf,
    /// What to do with an example longer than `model.block_size`.
    pub overlong: Overlong,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Overlong {
    /// Stop with an error naming the file and line.
    Error,
    /// Leave the example out and count it in the `started` event.
    Skip,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    pub n_layer: u32,
    pub n_head: u32,
    pub n_embd: u32,
    /// Longest sequence (prompt + completion + end-of-text) the model sees.
    pub block_size: u32,
    /// A Hugging Face model folder (config.json, safetensors weights,
    /// tokenizer.json) to fine-tune; its config.json decides the sizes.
    pub init_from: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub max_steps: u64,
    /// Examples per micro-batch.
    pub batch_size: u32,
    /// Micro-batches whose gradients are summed into one optimizer step.
    pub grad_accum_steps: u32,
    /// Peak learning rate, reached after `warmup_steps`.
    pub learning_rate: f64,
    /// Floor of the cosine decay, reached at `max_steps`.
    pub min_learning_rate: f64,
    pub warmup_steps: u64,
    /// Decoupled AdamW weight decay, applied to matrices only.
    pub weight_decay: f64,
    /// Global gradient-norm limit; 0 turns clipping off.
    pub grad_clip: f64,
    /// A step event (and a log line) every this many steps.
    pub log_steps: u64,
    /// A step whose loss or gradient norm is NaN or infinite: `stop` the
    /// run (failed, nothing saved), `skip` its update, or `warn` and apply it.
    pub on_nonfinite: OnNonFinite,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    /// A full evaluation every this many steps; 0 turns periodic eval off.
    pub eval_steps: u64,
    pub val_batches: u32,
    /// Validation examples generated and compared per evaluation.
    pub samples: u32,
    pub max_new_tokens: u32,
    /// End-of-text is not generated before this many tokens (as in Hugging
    /// Face `min_new_tokens`); probes how a model behaves past its natural end.
    pub min_new_tokens: u32,
    /// Deadline of one generation.
    pub eval_timeout_seconds: Seconds,
    /// 0 is greedy decoding.
    pub temperature: f64,
    /// Share of timed-out generations above which a warning is raised.
    pub timeout_warn_rate: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckpointConfig {
    /// A checkpoint every this many steps; 0 saves only at the end.
    pub save_steps: u64,
    /// Checkpoints kept on disk, oldest removed first; 0 keeps all.
    pub save_total_limit: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WatchdogConfig {
    /// A run with no progress for this long is marked stalled.
    pub stall_timeout_seconds: Seconds,
    pub on_stall: OnStall,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// A shell command (`sh -c`) run on each alert (finished, stopped,
    /// failed, stalled, recovered, the timeout-rate warning, a non-finite
    /// loss) with the event's events.jsonl line on stdin; none by default.
    pub command: Option<String>,
    /// The command is killed after this long.
    pub timeout_seconds: Seconds,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TensorboardConfig {
    /// Also write TensorBoard event files, into RUN_DIR/tensorboard/.
    pub enabled: bool,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            command: None,
            timeout_seconds: Seconds(10.0),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnStall {
    Warn,
    Exit,
}

/// Which device the user asked for; whether it exists is the trainer's call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DevicePref {
    Auto,
    Cpu,
    Cuda(usize),
}

impl TryFrom<String> for DevicePref {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        match text.as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|index| index.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| {
                    format!(
                        "\"{other}\" is not a device; use \"auto\", \"cpu\", \"cuda\" or \"cuda:N\""
                    )
                }),
        }
    }
}

impl FromStr for DevicePref {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        Self::try_from(text.to_owned())
    }
}

impl From<DevicePref> for String {
    fn from(device: DevicePref) -> Self {
        device.to_string()
    }
}

impl fmt::Display for DevicePref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(index) => write!(f, "cuda:{index}"),
        }
    }
}

/// A number of seconds from the user, for a deadline or a timeout. Every
/// duration a user gives (config keys, `--timeout`) is checked once, here:
/// finite, above 0, and at most [`Seconds::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Seconds(f64);

impl Seconds {
    /// One year: a longer wait is no deadline at all.
    pub const MAX: f64 = 365.0 * 24.0 * 3600.0;

    /// The seconds as a number.
    #[must_use]
    pub fn get(self) -> f64 {
        self.0
    }

    #[must_use]
    pub fn duration(self) -> Duration {
        Duration::from_secs_f64(self.0)
    }
}

impl TryFrom<f64> for Seconds {
    type Error = String;

    fn try_from(secs: f64) -> std::result::Result<Self, String> {
        if secs.is_finite() && secs > 0.0 && secs <= Self::MAX {
            Ok(Self(secs))
        } else {
            Err(format!(
                "must be a number of seconds greater than 0 and at most {} (one year) (got {secs})",
                Self::MAX
            ))
        }
    }
}

impl From<Seconds> for f64 {
    fn from(secs: Seconds) -> Self {
        secs.0
    }
}

impl FromStr for Seconds {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let secs: f64 = text
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not a number of seconds"))?;
        Self::try_from(secs)
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Which keys a config file or `--set` gave. Provenance, not settings: two
/// configs with the same settings are equal whatever gave them.
#[derive(Debug, Clone, Default)]
pub struct GivenKeys(pub(super) std::collections::BTreeSet<String>);

impl GivenKeys {
    #[must_use]
    pub fn contains(&self, key: &str) -> bool {
        self.0.contains(key)
    }
}

impl PartialEq for GivenKeys {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            given: GivenKeys::default(),
            run_dir: PathBuf::from("runs/demo"),
            seed: 1337,
            device: DevicePref::Auto,
            data: DataConfig::default(),
            model: ModelConfig::default(),
            train: TrainConfig::default(),
            eval: EvalConfig::default(),
            checkpoint: CheckpointConfig::default(),
            watchdog: WatchdogConfig::default(),
            alerts: AlertsConfig::default(),
            tensorboard: TensorboardConfig::default(),
        }
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            train_file: PathBuf::from("assets/demo/train.jsonl"),
            val_file: PathBuf::from("assets/demo/val.jsonl"),
            tokenizer: PathBuf::from("assets/demo/tokenizer.json"),
            overlong: Overlong::Error,
        }
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            n_layer: 4,
            n_head: 4,
            n_embd: 128,
            block_size: 32,
            init_from: None,
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            max_steps: 3000,
            batch_size: 64,
            grad_accum_steps: 1,
            learning_rate: 1e-3,
            min_learning_rate: 1e-4,
            warmup_steps: 100,
            weight_decay: 0.1,
            grad_clip: 1.0,
            log_steps: 25,
            on_nonfinite: OnNonFinite::Stop,
        }
    }
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            eval_steps: 250,
            val_batches: 8,
            samples: 8,
            max_new_tokens: 16,
            min_new_tokens: 0,
            eval_timeout_seconds: Seconds(60.0),
            temperature: 0.0,
            timeout_warn_rate: 0.10,
        }
    }
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self {
            save_steps: 500,
            save_total_limit: 3,
        }
    }
}

impl Default for WatchdogConfig {
    fn default() -> Self {
        Self {
            stall_timeout_seconds: Seconds(300.0),
            on_stall: OnStall::Warn,
        }
    }
}

impl Config {
    /// Makes the data paths absolute against `base`, so the effective config
    /// written to the run directory works from any folder.
    pub fn resolve_paths(&mut self, base: &Path) {
        for path in [
            &mut self.data.train_file,
            &mut self.data.val_file,
            &mut self.data.tokenizer,
        ]
        .into_iter()
        .chain(self.model.init_from.as_mut())
        {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
    }
}
