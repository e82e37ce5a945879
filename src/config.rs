//! Run configuration: a JSON file, `--set KEY=VALUE` overrides, and validation
//! whose messages name the dotted key, the source and the fix.
//!
//! Every key has a default, so a config file only says what differs. Unknown
//! keys are errors (a key that silently does nothing is how a timeout setting
//! once went unused for months), with the nearest valid key suggested.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::events::{LiveSettings, OnNonFinite};

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
pub struct GivenKeys(std::collections::BTreeSet<String>);

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

/// A value that fails a check: the keys it is about, and why.
struct Invalid {
    keys: Vec<&'static str>,
    message: String,
}

impl Invalid {
    fn of(key: &'static str, message: String) -> Self {
        Self {
            keys: vec![key],
            message,
        }
    }
}

/// A configuration mistake at `source`, worded for the person who made it.
fn mistake(source: &str, message: impl fmt::Display) -> Error {
    Error::Config(format!("{source}: {message}"))
}

/// The keys whose value is a command trainui runs (or names a program it
/// executes). They come only from the user's own `--config` and `--set`:
/// a config read from a run directory or a checkpoint, which another
/// program or user may have written, is read without them
/// ([`without_commands`]).
pub const COMMAND_KEYS: &[&str] = &["alerts.command"];

/// `value` (a config read from a run directory or a checkpoint) without
/// the keys of [`COMMAND_KEYS`]; returns those it held.
pub fn without_commands(value: &mut Value) -> Vec<&'static str> {
    let mut removed = Vec::new();
    for &key in COMMAND_KEYS {
        let (section, name) = key.rsplit_once('.').unwrap_or(("", key));
        let parent = if section.is_empty() {
            Some(&mut *value)
        } else {
            section
                .split('.')
                .try_fold(&mut *value, |node, part| node.get_mut(part))
        };
        if let Some(Value::Object(fields)) = parent
            && fields.remove(name).is_some_and(|v| !v.is_null())
        {
            removed.push(key);
        }
    }
    removed
}

/// Reads the config file (or the defaults when `path` is `None`), applies the
/// `--set KEY=VALUE` overrides in order and validates the result.
pub fn load(path: Option<&Path>, overrides: &[String]) -> Result<Config> {
    let (source, value) = match path {
        Some(path) => (path.display().to_string(), read_file(path)?),
        None => ("built-in defaults".to_owned(), Value::Object(Map::new())),
    };
    from_value(&source, value, overrides)
}

/// A config file of the user's (`--config`, which may be a pipe such as
/// `<(jq ...)`) as JSON, with its mistakes of form (invalid JSON, a key
/// given twice) named by line.
pub fn read_file(path: &Path) -> Result<Value> {
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|err| mistake(&source, format!("cannot read the config file: {err}")))?;
    parse_file(&source, &text)
}

/// The config.json of a run directory, read as every file there is (a
/// regular file of at most [`crate::runfile::CONFIG_LIMIT`] bytes, never
/// waited on), as [`read_file`] reads it.
pub fn read_saved(path: &Path) -> Result<Value> {
    let source = path.display().to_string();
    let bytes = crate::runfile::read(path, crate::runfile::CONFIG_LIMIT)
        .map_err(|err| mistake(&source, format!("cannot read the config file: {err}")))?;
    let text = String::from_utf8(bytes)
        .map_err(|err| mistake(&source, format!("not UTF-8 text: {err}")))?;
    parse_file(&source, &text)
}

fn parse_file(source: &str, text: &str) -> Result<Value> {
    let value: Value = serde_json::from_str(text).map_err(|err| {
        Error::Config(format!(
            "{source}:{}:{}: invalid JSON: {err}",
            err.line(),
            err.column()
        ))
    })?;
    if let Some((key, first, second)) = duplicate_key(text) {
        return Err(Error::Config(format!(
            "{source}:{second}: \"{key}\" is given twice (lines {first} and {second}); \
             keep one"
        )));
    }
    Ok(value)
}

/// The first key that an object of the JSON `text` gives twice, dotted, with
/// the lines of both. JSON parsers keep the last silently; a config must not.
fn duplicate_key(text: &str) -> Option<(String, usize, usize)> {
    /// An object being read: its keys so far (with their lines), its dotted
    /// path, and whether a key comes next.
    struct Object {
        keys: std::collections::HashMap<String, usize>,
        path: String,
        expect_key: bool,
    }
    // `None` for an array.
    let mut stack: Vec<Option<Object>> = Vec::new();
    let mut last_key = String::new();
    let (mut line, mut chars) = (1, text.chars());
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            '"' => {
                let mut string = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => string.extend(chars.next()),
                        '"' => break,
                        '\n' => line += 1,
                        c => string.push(c),
                    }
                }
                if let Some(Some(object)) = stack.last_mut()
                    && object.expect_key
                {
                    object.expect_key = false;
                    let path = if object.path.is_empty() {
                        string.clone()
                    } else {
                        format!("{}.{string}", object.path)
                    };
                    if let Some(first) = object.keys.insert(string.clone(), line) {
                        return Some((path, first, line));
                    }
                    last_key = path;
                }
            }
            '{' => {
                let path = if stack.is_empty() {
                    String::new()
                } else {
                    last_key.clone()
                };
                stack.push(Some(Object {
                    keys: std::collections::HashMap::new(),
                    path,
                    expect_key: true,
                }));
            }
            '[' => stack.push(None),
            '}' | ']' => {
                stack.pop();
            }
            ',' => {
                if let Some(Some(object)) = stack.last_mut() {
                    object.expect_key = true;
                }
            }
            _ => {}
        }
    }
    None
}

/// Like [`load`], for a config already parsed from `source` (e.g. the one
/// saved in a checkpoint).
pub fn from_value(source: &str, value: Value, overrides: &[String]) -> Result<Config> {
    let source = source.to_owned();
    if !value.is_object() {
        return Err(mistake(
            &source,
            "the config must be a JSON object ({ ... })",
        ));
    }
    let known = serde_json::to_value(Config::default()).expect("the default config serialises");
    check_keys(&value, &known, "", &source)?;

    let mut assignments = Vec::new();
    for assignment in overrides {
        let set_source = format!("--set {assignment}");
        let (key, parsed) = parse_assignment(assignment).map_err(|_| {
            mistake(
                &set_source,
                "expected KEY=VALUE, e.g. --set train.max_steps=100",
            )
        })?;
        assignments.push((key, parsed, set_source));
    }
    build(&source, value, &known, &assignments)
}

/// `KEY=VALUE` as a dotted key and a JSON value: a value that parses as JSON
/// is taken as such (numbers, booleans); anything else is a string, so
/// `device=cpu` needs no quotes.
pub fn parse_assignment(assignment: &str) -> Result<(String, Value)> {
    let (key, raw) = assignment.split_once('=').ok_or_else(|| {
        Error::Config(format!(
            "{assignment}: expected KEY=VALUE, e.g. train.max_steps=100"
        ))
    })?;
    let parsed = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()));
    Ok((key.trim().to_owned(), parsed))
}

/// `value` with `assignments` (key, value, the source to name in a message)
/// written into it, deserialised and validated; the keys it holds are the
/// config's given keys.
fn build(
    source: &str,
    mut value: Value,
    known: &Value,
    assignments: &[(String, Value, String)],
) -> Result<Config> {
    for (key, new, set_source) in assignments {
        if lookup(known, key).is_none() {
            return Err(mistake(set_source, unknown_key_message(key, known)));
        }
        insert(&mut value, key, new.clone());
    }
    let mut config: Config = serde_path_to_error::deserialize(&value).map_err(|err| {
        let key = err.path().to_string();
        let source = assignments
            .iter()
            .rev()
            .find(|(set_key, ..)| *set_key == key)
            .map_or(source, |(.., set_source)| set_source.as_str());
        mistake(source, format!("{key}: {}", err.inner()))
    })?;
    config.validate().map_err(|invalid| {
        // Blame the `--set` that gave one of the values, if one did.
        let source = assignments
            .iter()
            .rev()
            .find(|(set_key, ..)| invalid.keys.contains(&set_key.as_str()))
            .map_or(source, |(.., set_source)| set_source.as_str());
        mistake(source, invalid.message)
    })?;
    let mut given = Vec::new();
    leaf_keys(&value, "", &mut given);
    config.given = GivenKeys(given.into_iter().collect());
    Ok(config)
}

/// The live settings of `config`: the fields of [`LiveSettings`], read from
/// the config keys of the same names.
#[must_use]
pub fn live_settings(config: &Config) -> LiveSettings {
    serde_json::to_value(config)
        .and_then(serde_json::from_value)
        .expect("every field of LiveSettings is a config key")
}

/// The dotted keys that can change while a run goes on.
#[must_use]
pub fn live_keys() -> Vec<String> {
    let live = serde_json::to_value(live_settings(&Config::default()))
        .expect("the live settings serialise");
    let mut keys = Vec::new();
    leaf_keys(&live, "", &mut keys);
    keys.retain(|key| !lookup(&live, key).is_some_and(Value::is_object));
    keys
}

/// `config` with `changes` (dotted keys to values) made, when they pass the
/// config's checks and touch only live keys; also each change as
/// `key = value`, empty when nothing changed. `source` names the request in
/// messages (e.g. `set`).
pub fn change_live(
    config: &Config,
    changes: &BTreeMap<String, Value>,
    source: &str,
) -> Result<(Config, Vec<String>)> {
    let known = serde_json::to_value(Config::default()).expect("the default config serialises");
    let before = serde_json::to_value(config).expect("a config serialises");
    let assignments: Vec<(String, Value, String)> = changes
        .iter()
        .map(|(key, value)| {
            (
                key.clone(),
                value.clone(),
                format!("{source} {key}={value}"),
            )
        })
        .collect();
    let mut result = build(source, before.clone(), &known, &assignments)?;
    result.given = config.given.clone();
    let after = serde_json::to_value(&result).expect("a config serialises");
    let differences = differing_keys(&before, &after, "");
    let live = live_keys();
    let refused: Vec<&str> = differences
        .iter()
        .map(String::as_str)
        .filter(|key| !live.iter().any(|l| l == key))
        .collect();
    if !refused.is_empty() {
        return Err(Error::Config(format!(
            "{} cannot change while the run goes on; stop it and start again with --resume \
             latest and --set",
            refused.join(", ")
        )));
    }
    let applied = differences
        .iter()
        .map(|key| format!("{key} = {}", lookup(&after, key).unwrap_or(&Value::Null)))
        .collect();
    Ok((result, applied))
}

/// Dotted keys whose values differ between two configs (as JSON).
#[must_use]
pub fn differing_keys(before: &Value, after: &Value, prefix: &str) -> Vec<String> {
    match (before, after) {
        (Value::Object(a), Value::Object(b)) => a
            .iter()
            .flat_map(|(key, value)| {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                differing_keys(value, b.get(key).unwrap_or(&Value::Null), &path)
            })
            .collect(),
        (a, b) if a == b => Vec::new(),
        _ => vec![prefix.to_owned()],
    }
}

/// The value of a dotted key.
#[must_use]
pub fn lookup<'a>(value: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted
        .split('.')
        .try_fold(value, |node, part| node.get(part))
}

/// Reports the first key of `value` that the defaults do not have.
fn check_keys(value: &Value, known: &Value, prefix: &str, source: &str) -> Result<()> {
    let (Value::Object(entries), Value::Object(known_entries)) =
        (value, lookup_prefix(known, prefix))
    else {
        return Ok(());
    };
    for (key, child) in entries {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        if !known_entries.contains_key(key) {
            return Err(mistake(source, unknown_key_message(&path, known)));
        }
        check_keys(child, known, &path, source)?;
    }
    Ok(())
}

fn lookup_prefix<'a>(known: &'a Value, prefix: &str) -> &'a Value {
    if prefix.is_empty() {
        known
    } else {
        lookup(known, prefix).unwrap_or(&Value::Null)
    }
}

fn insert(value: &mut Value, dotted: &str, new: Value) {
    let mut node = value;
    let mut parts = dotted.split('.').peekable();
    while let Some(part) = parts.next() {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        let Value::Object(map) = node else {
            unreachable!("made an object just above")
        };
        if parts.peek().is_none() {
            map.insert(part.to_owned(), new);
            return;
        }
        node = map
            .entry(part.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
    }
}

/// Every leaf key of the defaults, dotted.
fn leaf_keys(value: &Value, prefix: &str, out: &mut Vec<String>) {
    if let Value::Object(map) = value {
        for (key, child) in map {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            if child.is_object() {
                leaf_keys(child, &path, out);
            }
            out.push(path);
        }
    }
}

fn unknown_key_message(key: &str, known: &Value) -> String {
    let mut candidates = Vec::new();
    leaf_keys(known, "", &mut candidates);
    let last = key.rsplit('.').next().unwrap_or(key);
    let best = candidates
        .iter()
        .map(|candidate| {
            let candidate_last = candidate.rsplit('.').next().unwrap_or(candidate);
            let score = strsim::jaro_winkler(key, candidate)
                .max(strsim::jaro_winkler(last, candidate_last) - 0.02);
            (score, candidate)
        })
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((score, candidate)) if score > 0.75 => {
            format!("unknown key \"{key}\"; did you mean \"{candidate}\"?")
        }
        _ => format!("unknown key \"{key}\"; the README lists the valid keys"),
    }
}

impl Config {
    /// Range and consistency checks that types alone cannot express.
    fn validate(&self) -> std::result::Result<(), Invalid> {
        fn at_least<T: PartialOrd + fmt::Display + Copy>(
            key: &'static str,
            value: T,
            min: T,
        ) -> std::result::Result<(), Invalid> {
            if value < min {
                return Err(Invalid::of(
                    key,
                    format!("{key} must be at least {min} (got {value})"),
                ));
            }
            Ok(())
        }
        fn at_most<T: PartialOrd + fmt::Display + Copy>(
            key: &'static str,
            value: T,
            max: T,
            why: &str,
        ) -> std::result::Result<(), Invalid> {
            if value > max {
                return Err(Invalid::of(
                    key,
                    format!("{key} must be at most {max} (got {value}): {why}"),
                ));
            }
            Ok(())
        }
        fn positive(key: &'static str, value: f64) -> std::result::Result<(), Invalid> {
            if !(value.is_finite() && value > 0.0) {
                return Err(Invalid::of(
                    key,
                    format!("{key} must be a number greater than 0 (got {value})"),
                ));
            }
            Ok(())
        }
        fn non_negative(key: &'static str, value: f64) -> std::result::Result<(), Invalid> {
            if !(value.is_finite() && value >= 0.0) {
                return Err(Invalid::of(
                    key,
                    format!("{key} must be a number of 0 or more (got {value})"),
                ));
            }
            Ok(())
        }

        if self.run_dir.as_os_str().is_empty() {
            return Err(Invalid::of(
                "run_dir",
                "run_dir must not be empty".to_owned(),
            ));
        }
        for (key, path) in [
            ("data.train_file", &self.data.train_file),
            ("data.val_file", &self.data.val_file),
            ("data.tokenizer", &self.data.tokenizer),
        ] {
            if path.as_os_str().is_empty() {
                return Err(Invalid::of(key, format!("{key} must name a file")));
            }
        }
        let model = &self.model;
        at_least("model.n_layer", model.n_layer, 1)?;
        at_least("model.n_head", model.n_head, 1)?;
        at_least("model.n_embd", model.n_embd, 1)?;
        at_least("model.block_size", model.block_size, 2)?;
        let sizes = "larger than any model trainui can hold";
        at_most("model.n_layer", model.n_layer, 1024, sizes)?;
        at_most("model.n_head", model.n_head, 1024, sizes)?;
        at_most("model.n_embd", model.n_embd, 65_536, sizes)?;
        at_most("model.block_size", model.block_size, 1 << 20, sizes)?;
        if !model.n_embd.is_multiple_of(model.n_head) {
            return Err(Invalid {
                keys: vec!["model.n_embd", "model.n_head"],
                message: format!(
                    "model.n_embd ({}) must be a multiple of model.n_head ({})",
                    model.n_embd, model.n_head
                ),
            });
        }
        let train = &self.train;
        at_least("train.max_steps", train.max_steps, 1)?;
        at_least("train.batch_size", train.batch_size, 1)?;
        at_most(
            "train.batch_size",
            train.batch_size,
            1 << 20,
            "use train.grad_accum_steps for larger batches",
        )?;
        at_least("train.grad_accum_steps", train.grad_accum_steps, 1)?;
        at_most(
            "train.grad_accum_steps",
            train.grad_accum_steps,
            1 << 20,
            "more micro-batches than a step can hold",
        )?;
        positive("train.learning_rate", train.learning_rate)?;
        non_negative("train.min_learning_rate", train.min_learning_rate)?;
        if train.min_learning_rate > train.learning_rate {
            return Err(Invalid {
                keys: vec!["train.min_learning_rate", "train.learning_rate"],
                message: format!(
                    "train.min_learning_rate ({}) must not exceed train.learning_rate ({})",
                    train.min_learning_rate, train.learning_rate
                ),
            });
        }
        non_negative("train.weight_decay", train.weight_decay)?;
        non_negative("train.grad_clip", train.grad_clip)?;
        at_least("train.log_steps", train.log_steps, 1)?;
        let eval = &self.eval;
        at_least("eval.val_batches", eval.val_batches, 1)?;
        at_least("eval.max_new_tokens", eval.max_new_tokens, 1)?;
        non_negative("eval.temperature", eval.temperature)?;
        if !(0.0..=1.0).contains(&eval.timeout_warn_rate) {
            return Err(Invalid::of(
                "eval.timeout_warn_rate",
                format!(
                    "eval.timeout_warn_rate must be between 0 and 1 (got {})",
                    eval.timeout_warn_rate
                ),
            ));
        }
        at_least(
            "watchdog.stall_timeout_seconds",
            self.watchdog.stall_timeout_seconds.get(),
            1.0,
        )
        .map_err(|invalid| Invalid {
            message: format!(
                "{}: the watchdog looks a few times a second, so a shorter silence is no stall",
                invalid.message
            ),
            ..invalid
        })?;
        if self
            .alerts
            .command
            .as_deref()
            .is_some_and(|c| c.trim().is_empty())
        {
            return Err(Invalid::of(
                "alerts.command",
                "alerts.command is empty: give a shell command, or null for none".into(),
            ));
        }
        Ok(())
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    fn write_config(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    fn error_of(text: &str, sets: &[&str]) -> String {
        let file = write_config(text);
        let sets: Vec<String> = sets.iter().map(|s| (*s).to_owned()).collect();
        load(Some(file.path()), &sets).unwrap_err().to_string()
    }

    #[test]
    fn defaults_round_trip_through_json() {
        let text = serde_json::to_string(&Config::default()).unwrap();
        let file = write_config(&text);
        assert_eq!(load(Some(file.path()), &[]).unwrap(), Config::default());
    }

    #[test]
    fn the_demo_config_file_spells_out_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.json");
        assert_eq!(load(Some(&path), &[]).unwrap(), Config::default());
        let file: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let (mut in_file, mut all) = (Vec::new(), Vec::new());
        leaf_keys(&file, "", &mut in_file);
        leaf_keys(
            &serde_json::to_value(Config::default()).unwrap(),
            "",
            &mut all,
        );
        assert_eq!(in_file, all, "config/default.json lists every key");
    }

    #[test]
    fn unknown_key_names_the_nearest_valid_one() {
        let message = error_of(r#"{"eval": {"eval_timeout_second": 60}}"#, &[]);
        assert!(
            message.contains("unknown key \"eval.eval_timeout_second\""),
            "{message}"
        );
        assert!(
            message.contains("did you mean \"eval.eval_timeout_seconds\""),
            "{message}"
        );
    }

    #[test]
    fn key_in_the_wrong_section_points_to_the_right_one() {
        let message = error_of(r#"{"train": {"eval_timeout_seconds": 60}}"#, &[]);
        assert!(
            message.contains("did you mean \"eval.eval_timeout_seconds\""),
            "{message}"
        );
    }

    #[test]
    fn wrong_type_names_the_dotted_path() {
        let message = error_of(r#"{"train": {"max_steps": "many"}}"#, &[]);
        assert!(
            message.contains("train.max_steps: invalid type: string \"many\""),
            "{message}"
        );
    }

    #[test]
    fn set_overrides_go_through_the_same_checks() {
        let file = write_config("{}");
        let config = load(
            Some(file.path()),
            &["train.max_steps=7".into(), "device=cpu".into()],
        )
        .unwrap();
        assert_eq!(config.train.max_steps, 7);
        assert_eq!(config.device, DevicePref::Cpu);

        let message = error_of("{}", &["train.max_step=7"]);
        assert!(
            message.starts_with("--set train.max_step=7: unknown key"),
            "{message}"
        );
        assert!(
            message.contains("did you mean \"train.max_steps\""),
            "{message}"
        );

        let message = error_of("{}", &["train.max_steps=lots"]);
        assert!(
            message.starts_with("--set train.max_steps=lots: train.max_steps"),
            "{message}"
        );
    }

    #[test]
    fn out_of_range_values_name_the_key() {
        let message = error_of(r#"{"eval": {"timeout_warn_rate": 1.5}}"#, &[]);
        assert!(
            message.contains("eval.timeout_warn_rate must be between 0 and 1"),
            "{message}"
        );
        let message = error_of(r#"{"model": {"n_embd": 100, "n_head": 3}}"#, &[]);
        assert!(message.contains("model.n_embd (100) must be a multiple of model.n_head (3)"));
        let message = error_of("{}", &["eval.eval_timeout_seconds=0"]);
        assert!(
            message.contains(
                "--set eval.eval_timeout_seconds=0: eval.eval_timeout_seconds: must be a number of \
                 seconds greater than 0"
            ),
            "{message}"
        );
    }

    #[test]
    fn durations_have_an_upper_bound_that_says_what_it_is() {
        for (key, value) in [
            ("eval.eval_timeout_seconds", "1e30"),
            ("watchdog.stall_timeout_seconds", "1e300"),
            ("eval.eval_timeout_seconds", "31536000.5"),
        ] {
            let message = error_of("{}", &[&format!("{key}={value}")]);
            assert!(
                message.contains(&format!(
                    "{key}: must be a number of seconds greater than 0 and \
                     at most 31536000 (one year)"
                )),
                "{message}"
            );
        }
        let year = load(None, &["eval.eval_timeout_seconds=31536000".into()]).unwrap();
        assert_eq!(
            year.eval.eval_timeout_seconds.duration().as_secs(),
            31_536_000
        );
        assert!("inf".parse::<Seconds>().is_err());
        assert!("NaN".parse::<Seconds>().is_err());
        assert!("-1".parse::<Seconds>().is_err());
        assert!(("2.5".parse::<Seconds>().unwrap().get() - 2.5).abs() < f64::EPSILON);
        assert!(
            "soon"
                .parse::<Seconds>()
                .unwrap_err()
                .contains("not a number of seconds")
        );
    }

    #[test]
    fn the_live_keys_are_the_fields_of_the_live_settings() {
        assert_eq!(
            live_keys(),
            [
                "checkpoint.save_steps",
                "checkpoint.save_total_limit",
                "eval.eval_steps",
                "eval.eval_timeout_seconds",
                "eval.max_new_tokens",
                "eval.min_new_tokens",
                "eval.samples",
                "eval.temperature",
                "eval.timeout_warn_rate",
                "eval.val_batches",
                "train.log_steps",
                "watchdog.stall_timeout_seconds",
            ]
        );
        let known = serde_json::to_value(Config::default()).unwrap();
        for key in live_keys() {
            assert!(lookup(&known, &key).is_some(), "{key} is a config key");
        }
        let mut config = Config::default();
        config.eval.timeout_warn_rate = 0.25;
        config.train.log_steps = 7;
        let live = live_settings(&config);
        assert_eq!(
            (live.eval.timeout_warn_rate, live.train.log_steps),
            (0.25, 7)
        );
    }

    #[test]
    fn live_changes_pass_the_config_checks_and_touch_only_live_keys() {
        let config = Config::default();
        let change = |pairs: &[(&str, Value)]| {
            let changes = pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect();
            change_live(&config, &changes, "set")
        };
        let (result, applied) = change(&[("eval.timeout_warn_rate", 0.5.into())]).unwrap();
        assert!((result.eval.timeout_warn_rate - 0.5).abs() < f64::EPSILON);
        assert_eq!(applied, ["eval.timeout_warn_rate = 0.5"]);
        let (_, applied) = change(&[("eval.samples", 8.into())]).unwrap();
        assert!(applied.is_empty(), "8 is the value in force: no change");

        let refused = change(&[("model.n_embd", 64.into())]).unwrap_err();
        assert!(
            refused
                .to_string()
                .starts_with("model.n_embd cannot change while the run goes on"),
            "{refused}"
        );
        let out_of_range = change(&[("eval.timeout_warn_rate", 1.5.into())]).unwrap_err();
        assert!(
            out_of_range
                .to_string()
                .contains("eval.timeout_warn_rate must be between 0 and 1"),
            "{out_of_range}"
        );
        let huge = change(&[("eval.eval_timeout_seconds", 1e30.into())]).unwrap_err();
        assert!(huge.to_string().contains("at most 31536000"), "{huge}");
        let unknown = change(&[("eval.sample", 4.into())]).unwrap_err();
        assert!(
            unknown
                .to_string()
                .contains("did you mean \"eval.samples\""),
            "{unknown}"
        );
        assert_eq!(unknown.exit_code(), 2);
    }

    #[test]
    fn differing_keys_are_dotted() {
        let a = serde_json::json!({"eval": {"eval_steps": 1, "samples": 2}, "seed": 3});
        let b = serde_json::json!({"eval": {"eval_steps": 5, "samples": 2}, "seed": 4});
        assert_eq!(differing_keys(&a, &b, ""), ["eval.eval_steps", "seed"]);
    }

    #[test]
    fn device_strings_are_checked() {
        let file = write_config(r#"{"device": "cuda:1"}"#);
        assert_eq!(
            load(Some(file.path()), &[]).unwrap().device,
            DevicePref::Cuda(1)
        );
        let message = error_of(r#"{"device": "gpu"}"#, &[]);
        assert!(
            message.contains("device: \"gpu\" is not a device"),
            "{message}"
        );
    }

    #[test]
    fn a_key_given_twice_is_refused_with_both_lines() {
        let text =
            "{\n  \"eval\": {\n    \"samples\": 2,\n    \"samples\": 4\n  },\n  \"seed\": 1\n}";
        let message = error_of(text, &[]);
        assert!(
            message.contains(":4: \"eval.samples\" is given twice (lines 3 and 4)"),
            "{message}"
        );
        assert_eq!(duplicate_key(r#"{"a": {"x": 1}, "b": {"x": 2}}"#), None);
        assert_eq!(
            duplicate_key(r#"{"a": [{"x": 1}, {"x": 2}], "s": "x\"y"}"#),
            None
        );
        assert_eq!(
            duplicate_key(r#"{"a": 1, "b": {"c": [1, {"d": 2}]}, "a": 3}"#),
            Some(("a".to_owned(), 1, 1))
        );
    }

    #[test]
    fn a_value_from_set_is_blamed_on_the_set() {
        let message = error_of("{}", &["train.min_learning_rate=1"]);
        assert!(
            message.starts_with("--set train.min_learning_rate=1: train.min_learning_rate (1)"),
            "{message}"
        );
        let message = error_of(r#"{"train": {"min_learning_rate": 1}}"#, &[]);
        assert!(!message.starts_with("--set"), "{message}");
        assert!(message.contains("must not exceed"), "{message}");
    }

    #[test]
    fn absurd_sizes_are_refused_before_anything_is_built() {
        for (set, needle) in [
            (
                "train.batch_size=4294967295",
                "train.batch_size must be at most 1048576",
            ),
            ("model.n_embd=1048576", "model.n_embd must be at most 65536"),
            (
                "watchdog.stall_timeout_seconds=0.0001",
                "must be at least 1",
            ),
        ] {
            let message = error_of("{}", &[set]);
            assert!(message.contains(needle), "{set}: {message}");
            assert!(message.starts_with(&format!("--set {set}")), "{message}");
        }
    }

    #[test]
    fn invalid_json_gives_line_and_column() {
        let message = error_of("{\n  \"seed\": 1,\n  oops\n}", &[]);
        assert!(message.contains(":3:3: invalid JSON"), "{message}");
    }
}
