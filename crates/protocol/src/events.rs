//! The contract between the trainer thread and everything else: the
//! [`Command`]s it takes, the [`Event`]s it reports, and the [`RunStatus`]
//! folded from them (the types; the fold itself, what each event changes,
//! is in status.rs).
//!
//! All of it is plain serde data, and this file imports nothing from the
//! rest of the crate, so it can be read, versioned and mirrored on its own:
//! the same events drive the headless printer, the run directory
//! (events.jsonl, status file), the TUI and `trainui watch`, and the same
//! commands come from keys, signals and the control spool.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Version of the events.jsonl and training_status.json layouts (the
/// run-directory protocol, protocol/README.md). 3 added `producer` (who
/// wrote the run) and the per-rank files of multi-process jobs; 2 added the
/// live `settings` (in `started`, a `settings` event and the status file)
/// and made a settings change the command `{"set": {KEY: VALUE}}` (it was
/// `{"reconfigure": {...}}`).
pub const SCHEMA_VERSION: u32 = 3;

/// Requests to the trainer, acted on at the next step boundary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, strum::EnumDiscriminants)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[strum_discriminants(name(CommandKind), derive(Hash, strum::VariantArray))]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Finish the current step, save a checkpoint, then stop with state `stopped`.
    Stop,
    Pause,
    Resume,
    /// Run a full evaluation at the next step boundary.
    EvalNow,
    /// End the generation in progress as `aborted` (the sender also raises
    /// the shared abort flag, which the decoder checks before every step).
    AbortGeneration,
    /// Save a checkpoint at the next step boundary.
    Save,
    /// Change settings that can change while the run goes on: dotted keys
    /// (`eval.eval_steps`, see [`LiveSettings`]) to values, as `--set` takes them.
    Set(BTreeMap<String, Value>),
}

impl Command {
    /// The word `trainui ctl` takes for this command.
    #[must_use]
    pub fn word(&self) -> &'static str {
        CommandKind::from(self).word()
    }
}

impl CommandKind {
    /// The word `trainui ctl` takes, and front ends show.
    #[must_use]
    pub fn word(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::EvalNow => "eval",
            Self::AbortGeneration => "abort",
            Self::Save => "save",
            Self::Set => "set",
        }
    }

    /// What the command does, in a few words.
    #[must_use]
    pub fn about(self) -> &'static str {
        match self {
            Self::Stop => "stop at the next step boundary, save a checkpoint, end the run",
            Self::Pause => "pause training",
            Self::Resume => "resume a paused run",
            Self::EvalNow => "evaluate now (at the next step boundary)",
            Self::AbortGeneration => "abort the generation in progress",
            Self::Save => "save a checkpoint now",
            Self::Set => "change a live setting, KEY=VALUE",
        }
    }

    /// Every command, in the order `ctl` and the help list them.
    #[must_use]
    pub fn all() -> &'static [Self] {
        <Self as strum::VariantArray>::VARIANTS
    }

    /// The command a word names.
    #[must_use]
    pub fn from_word(word: &str) -> Option<Self> {
        Self::all().iter().copied().find(|kind| kind.word() == word)
    }

    /// The command itself, for the kinds that take no arguments.
    #[must_use]
    pub fn command(self) -> Option<Command> {
        Some(match self {
            Self::Stop => Command::Stop,
            Self::Pause => Command::Pause,
            Self::Resume => Command::Resume,
            Self::EvalNow => Command::EvalNow,
            Self::AbortGeneration => Command::AbortGeneration,
            Self::Save => Command::Save,
            Self::Set => return None,
        })
    }
}

/// The settings that can change while a run goes on, by config section and
/// under their config names. This is the one list of live keys: the keys
/// `ctl set` and config.json edits may change, and the conversions from and
/// to the config, are derived from its fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct LiveSettings {
    pub train: LiveTrain,
    pub eval: LiveEval,
    pub checkpoint: LiveCheckpoint,
    pub watchdog: LiveWatchdog,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct LiveTrain {
    pub log_steps: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct LiveEval {
    pub eval_steps: u64,
    pub val_batches: u32,
    pub samples: u32,
    pub max_new_tokens: u32,
    pub min_new_tokens: u32,
    pub eval_timeout_seconds: f64,
    pub temperature: f64,
    /// Share of timed-out generations above which the run warns (and the
    /// TUI shows the rate in red).
    pub timeout_warn_rate: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct LiveCheckpoint {
    pub save_steps: u64,
    pub save_total_limit: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct LiveWatchdog {
    pub stall_timeout_seconds: f64,
}

/// What a run does with a step whose loss or gradient norm is not finite
/// (NaN or infinite): `train.on_nonfinite`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum OnNonFinite {
    /// End the run as failed, without saving: the newest checkpoint stays
    /// the last good one.
    #[default]
    Stop,
    /// Drop the step's update and go on.
    Skip,
    /// Apply the update and go on (no checkpoint is written while the
    /// weights are not finite).
    Warn,
}

impl OnNonFinite {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Skip => "skip",
            Self::Warn => "warn",
        }
    }
}

/// What the run is doing, as shown in the status file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Starting,
    Training,
    Evaluating,
    Paused,
    Stopping,
    Stopped,
    Finished,
    Failed,
    Stalled,
}

impl RunState {
    /// The run will not change any more.
    #[must_use]
    pub fn is_final(self) -> bool {
        matches!(self, Self::Stopped | Self::Finished | Self::Failed)
    }

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Training => "training",
            Self::Evaluating => "evaluating",
            Self::Paused => "paused",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Finished => "finished",
            Self::Failed => "failed",
            Self::Stalled => "stalled",
        }
    }
}

/// What the trainer was doing at its latest heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Starting,
    Training,
    Validating,
    Generating,
    Saving,
    Paused,
    /// The trainer is done; nothing more to watch.
    Done,
}

impl Phase {
    pub const ALL: [Self; 7] = [
        Self::Starting,
        Self::Training,
        Self::Validating,
        Self::Generating,
        Self::Saving,
        Self::Paused,
        Self::Done,
    ];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Training => "training",
            Self::Validating => "validation loss",
            Self::Generating => "generating",
            Self::Saving => "saving a checkpoint",
            Self::Paused => "paused",
            Self::Done => "done",
        }
    }
}

/// Losses as JSON: a number, or the text `"NaN"`, `"inf"` or `"-inf"` for
/// the values JSON has no number for (a diverged run must say so, not
/// write `null`, which reads as "not known yet").
pub mod float_or_text {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[cfg_attr(test, derive(schemars::JsonSchema))]
    #[serde(untagged)]
    /// A number, or the text `"NaN"`, `"inf"` or `"-inf"`.
    pub enum Json {
        Number(f64),
        Text(String),
    }

    fn to_json(value: f64) -> Json {
        if value.is_finite() {
            Json::Number(value)
        } else {
            Json::Text(value.to_string())
        }
    }

    fn from_json<E: serde::de::Error>(json: Json) -> Result<f64, E> {
        match json {
            Json::Number(value) => Ok(value),
            Json::Text(text) => text
                .parse()
                .map_err(|_| E::custom(format!("{text:?} is not a number"))),
        }
    }

    #[allow(clippy::trivially_copy_pass_by_ref)] // serde's `with` passes a reference
    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        to_json(*value).serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        from_json(Json::deserialize(deserializer)?)
    }

    /// The same for an optional value (`null` when not known).
    pub mod option {
        use super::{Json, from_json, to_json};
        use serde::{Deserialize, Deserializer, Serialize, Serializer};

        #[allow(clippy::ref_option)] // serde's `with` passes a reference
        pub fn serialize<S: Serializer>(
            value: &Option<f64>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            value.map(to_json).serialize(serializer)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<f64>, D::Error> {
            Option::<Json>::deserialize(deserializer)?
                .map(from_json)
                .transpose()
        }
    }
}

/// Everything the trainer reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The model is built and training is about to begin.
    /// (Boxed: the largest event by far, and the rarest.)
    Started(Box<RunInfo>),
    /// Metrics of the last `log_steps` steps.
    Step(StepMetrics),
    /// The run moved to another state.
    State { step: u64, state: RunState },
    /// A command was received and acted on.
    CommandAck {
        step: u64,
        command: Command,
        message: String,
    },
    /// The live settings in force changed (a `set` command, an edit of
    /// config.json).
    Settings { step: u64, settings: LiveSettings },
    /// Something the operator should know that does not stop the run.
    Warning { step: u64, message: String },
    /// A full evaluation began.
    EvalStarted { step: u64, eval: u64, samples: u32 },
    /// Validation loss of an evaluation; `None` when no batch could be scored.
    ValLoss {
        step: u64,
        #[serde(default, with = "float_or_text::option")]
        #[cfg_attr(test, schemars(with = "Option<float_or_text::Json>"))]
        loss: Option<f64>,
        batches: u32,
        timed_out: bool,
    },
    /// A sample generation began.
    GenerationStarted(GenerationStart),
    /// Text generated so far by the running generation (a few per second at most).
    GenerationProgress {
        step: u64,
        sample: u32,
        text: String,
        tokens: u64,
        elapsed_secs: f64,
    },
    /// A sample generation ended.
    Sample(SampleResult),
    /// A full evaluation ended.
    EvalFinished(EvalSummary),
    /// A checkpoint was written completely.
    Checkpoint { step: u64, path: String },
    /// A step's loss or gradient norm was not finite (the first such step
    /// of a logging window; `count` says how many there were in the run).
    NonFinite {
        step: u64,
        #[serde(with = "float_or_text")]
        #[cfg_attr(test, schemars(with = "float_or_text::Json"))]
        loss: f64,
        #[serde(with = "float_or_text")]
        #[cfg_attr(test, schemars(with = "float_or_text::Json"))]
        grad_norm: f64,
        action: OnNonFinite,
        count: u64,
    },
    /// No heartbeat for `watchdog.stall_timeout_seconds`: the run is stuck.
    Stalled {
        step: u64,
        phase: Phase,
        silent_secs: f64,
        timeout_secs: f64,
    },
    /// Heartbeats came back after a stall.
    Recovered { step: u64, phase: Phase },
    /// A request from outside the process (a `ctl` command file, an edit of
    /// config.json) was accepted or rejected.
    Control {
        id: String,
        command: String,
        accepted: bool,
        message: String,
    },
    /// The run ended: `state` is `finished` (max_steps reached) or `stopped`.
    Finished(Summary),
    /// The trainer hit an error it cannot continue from.
    Failed { step: u64, message: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct RunInfo {
    pub run_name: String,
    pub pid: u32,
    /// Resolved device, e.g. `cpu` or `cuda:0`.
    pub device: String,
    /// First step of this process (0 unless resumed).
    pub start_step: u64,
    pub max_steps: u64,
    pub parameters: u64,
    pub vocab_size: u32,
    pub train_examples: u64,
    pub val_examples: u64,
    /// Examples left out for being longer than `model.block_size`.
    pub skipped_overlong: u64,
    /// The checkpoint this process resumed from.
    pub resumed_from: Option<String>,
    /// Evaluations and generations so far (non-zero after a resume).
    pub evals: u64,
    pub counters: GenerationCounters,
    /// The live settings at the start (absent in runs of schema 1).
    #[serde(default)]
    pub settings: Option<LiveSettings>,
    /// Steps with a non-finite loss or gradient norm so far (non-zero after
    /// a resume).
    #[serde(default)]
    pub nonfinite_steps: u64,
    /// Who writes the run (absent in runs of schema 1 and 2, all written by
    /// trainui's trainer).
    #[serde(default)]
    pub producer: Option<Producer>,
}

impl RunInfo {
    /// The start of a fresh run of this process, on the CPU, with nothing
    /// else known yet (no data, no settings): for programs that write a run
    /// directory of their own, such as fake histories.
    #[must_use]
    pub fn new(run_name: impl Into<String>, max_steps: u64) -> Self {
        Self {
            run_name: run_name.into(),
            pid: std::process::id(),
            device: "cpu".into(),
            start_step: 0,
            max_steps,
            parameters: 0,
            vocab_size: 0,
            train_examples: 0,
            val_examples: 0,
            skipped_overlong: 0,
            resumed_from: None,
            evals: 0,
            counters: GenerationCounters::default(),
            settings: None,
            nonfinite_steps: 0,
            producer: None,
        }
    }
}

/// Who writes a run: trainui's trainer, or a Python job through the
/// `trainui` package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct Producer {
    /// `trainui` (the trainer of `trainui train`) or `trainui-python`.
    pub name: String,
    /// The producer's version.
    pub version: String,
    /// `trainui`, or the Python job's framework: `pytorch`,
    /// `transformers`, `lightning` or `accelerate`.
    pub framework: String,
    /// Processes (ranks) that train together.
    #[serde(default = "one")]
    pub world_size: u32,
}

fn one() -> u32 {
    1
}

impl Producer {
    /// trainui's own trainer.
    #[must_use]
    pub fn trainui() -> Self {
        Self {
            name: "trainui".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            framework: "trainui".into(),
            world_size: 1,
        }
    }
}

/// The heartbeat of one rank of a multi-process job, `ranks/rank-N.json`:
/// written by a thread of that rank about once a second, from what its
/// training thread last reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct RankBeat {
    /// Schema version, [`SCHEMA_VERSION`].
    pub v: u32,
    pub rank: u32,
    pub world_size: u32,
    #[serde(default)]
    pub local_rank: u32,
    pub host: String,
    pub pid: u32,
    /// What the rank was doing at its last heartbeat.
    pub phase: Phase,
    /// The rank's step at its last heartbeat.
    pub step: u64,
    pub state: RunState,
    /// RFC 3339 time of the last heartbeat of the rank's training thread.
    pub beat: String,
    /// The same, in seconds since the Unix epoch.
    pub beat_unix: f64,
    /// When this file was written, in seconds since the Unix epoch: a file
    /// that is not rewritten any more belongs to a rank that is dead or
    /// frozen as a whole.
    pub written_unix: f64,
    /// The stop signal (`SIGINT`, `SIGTERM`, `SIGHUP`) the rank caught
    /// before it ended, if it caught one: a rank a launcher such as torchrun
    /// ended after another one failed. Absent otherwise (and from older
    /// producers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
}

/// How a generation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GenerationOutcome {
    /// End-of-text or `max_new_tokens` reached.
    Completed,
    /// `eval.eval_timeout_seconds` passed.
    TimedOut,
    /// The operator aborted it.
    Aborted,
    /// libtorch reported an error.
    Error { message: String },
}

/// Generations of the whole run, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct GenerationCounters {
    pub generations: u64,
    pub completed: u64,
    pub timed_out: u64,
    pub aborted: u64,
    pub errors: u64,
}

impl GenerationCounters {
    pub fn count(&mut self, outcome: &GenerationOutcome) {
        self.generations += 1;
        match outcome {
            GenerationOutcome::Completed => self.completed += 1,
            GenerationOutcome::TimedOut => self.timed_out += 1,
            GenerationOutcome::Aborted => self.aborted += 1,
            GenerationOutcome::Error { .. } => self.errors += 1,
        }
    }

    /// Share of generations that timed out.
    #[must_use]
    pub fn timeout_rate(&self) -> f64 {
        if self.generations == 0 {
            0.0
        } else {
            self.timed_out as f64 / self.generations as f64
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct GenerationStart {
    pub step: u64,
    /// 1-based position in this evaluation, of `of`.
    pub sample: u32,
    pub of: u32,
    /// Index of the example in the validation file, and its `file:line`.
    pub example: u64,
    pub origin: String,
    pub prompt: String,
    pub golden: String,
    pub golden_tokens: u64,
    pub timeout_secs: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct SampleResult {
    pub step: u64,
    pub sample: u32,
    pub of: u32,
    pub example: u64,
    pub origin: String,
    pub prompt: String,
    pub golden: String,
    /// Text generated, partial when the generation did not complete.
    pub output: String,
    pub golden_tokens: u64,
    pub output_tokens: u64,
    pub outcome: GenerationOutcome,
    /// Completed and equal to the golden completion (surrounding spaces aside).
    pub exact_match: bool,
    /// Loss of the model on this example's golden completion.
    #[serde(default, with = "float_or_text::option")]
    #[cfg_attr(test, schemars(with = "Option<float_or_text::Json>"))]
    pub loss: Option<f64>,
    pub elapsed_secs: f64,
    pub tokens_per_sec: f64,
    pub timeout_secs: f64,
    /// Counters of the run after this sample.
    pub counters: GenerationCounters,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct EvalSummary {
    pub step: u64,
    pub eval: u64,
    #[serde(default, with = "float_or_text::option")]
    #[cfg_attr(test, schemars(with = "Option<float_or_text::Json>"))]
    pub val_loss: Option<f64>,
    /// Training loss at the latest step event.
    #[serde(default, with = "float_or_text::option")]
    #[cfg_attr(test, schemars(with = "Option<float_or_text::Json>"))]
    pub train_loss: Option<f64>,
    /// `val_loss - train_loss`.
    #[serde(default, with = "float_or_text::option")]
    #[cfg_attr(test, schemars(with = "Option<float_or_text::Json>"))]
    pub gap: Option<f64>,
    pub samples: u32,
    pub matches: u32,
    /// `matches / samples` (0 when there were no samples).
    pub exact_match: f64,
    pub counters: GenerationCounters,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct StepMetrics {
    pub step: u64,
    pub max_steps: u64,
    /// Mean training loss over the steps since the previous step event
    /// (those whose update was skipped for a non-finite loss left out).
    #[serde(with = "float_or_text")]
    #[cfg_attr(test, schemars(with = "float_or_text::Json"))]
    pub loss: f64,
    pub learning_rate: f64,
    /// Non-padding tokens trained on per second since the previous event.
    pub tokens_per_sec: f64,
    pub elapsed_secs: f64,
    /// Estimated time to `max_steps` at the current pace.
    pub eta_secs: f64,
    /// Mean gradient norm (before clipping) over the same steps as `loss`;
    /// absent when the producer does not report it or no step was finite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_norm: Option<f64>,
    /// Non-padding tokens trained on since the run began (a resumed run
    /// counting on from its checkpoint's count where the producer kept
    /// it); absent from producers that do not count them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_seen: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct Summary {
    pub step: u64,
    pub max_steps: u64,
    pub state: RunState,
    /// Training loss at the last step event, if any.
    #[serde(default, with = "float_or_text::option")]
    #[cfg_attr(test, schemars(with = "Option<float_or_text::Json>"))]
    pub loss: Option<f64>,
    pub elapsed_secs: f64,
}

/// The run as the status file shows it: a fold over the event stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct RunStatus {
    pub schema_version: u32,
    pub run_name: String,
    pub state: RunState,
    pub current_step: u64,
    pub max_steps: u64,
    #[serde(default, with = "float_or_text::option")]
    #[cfg_attr(test, schemars(with = "Option<float_or_text::Json>"))]
    pub loss: Option<f64>,
    #[serde(default, with = "float_or_text::option")]
    #[cfg_attr(test, schemars(with = "Option<float_or_text::Json>"))]
    pub val_loss: Option<f64>,
    pub learning_rate: Option<f64>,
    pub tokens_per_sec: Option<f64>,
    /// The gradient norm of the latest step event that had one (null while
    /// the producer has reported none).
    #[serde(default)]
    pub grad_norm: Option<f64>,
    pub elapsed_secs: f64,
    pub eta_secs: Option<f64>,
    pub device: String,
    pub evals: u64,
    pub generations: u64,
    pub completed: u64,
    pub timeouts: u64,
    pub aborts: u64,
    pub errors: u64,
    pub timeout_rate: f64,
    /// Exact-match rate of the latest evaluation.
    pub exact_match: Option<f64>,
    pub last_checkpoint: Option<String>,
    pub resumed_from: Option<String>,
    pub warnings: u64,
    pub last_message: Option<String>,
    /// The live settings in force (null until the run has started).
    pub settings: Option<LiveSettings>,
    /// Steps whose loss or gradient norm was not finite.
    #[serde(default)]
    pub nonfinite_steps: u64,
    /// Who writes the run (null for runs of schema 1 and 2).
    #[serde(default)]
    pub producer: Option<Producer>,
    /// The state a stall interrupted, restored when beats resume.
    #[serde(skip)]
    pub(crate) state_before_stall: Option<RunState>,
    /// RFC 3339 time of the last change.
    pub updated_at: String,
    pub pid: u32,
    /// The machine's GPUs as last read (every few seconds) by the process
    /// that writes this file; empty without GPUs or readings.
    #[serde(default)]
    pub gpus: Vec<GpuStatus>,
}

/// One GPU's reading in the status file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct GpuStatus {
    /// Its index on the machine (as nvidia-smi numbers it).
    pub index: u32,
    pub name: String,
    /// Percent of the last sample period the GPU was busy.
    pub utilization: u32,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    /// Degrees Celsius.
    pub temperature: Option<u32>,
    /// Watts.
    pub power_watts: Option<f64>,
}

#[cfg(any(test, feature = "examples"))]
pub mod examples;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialise_with_a_type_tag() {
        let event = Event::State {
            step: 3,
            state: RunState::Paused,
        };
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(json, r#"{"type":"state","step":3,"state":"paused"}"#);
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), event);
    }

    #[test]
    fn commands_serialise_as_events_and_control_files_name_them() {
        let set = Command::Set(BTreeMap::from([("eval.eval_steps".into(), 100.into())]));
        assert_eq!(
            serde_json::to_string(&set).unwrap(),
            r#"{"set":{"eval.eval_steps":100}}"#
        );
        assert_eq!(
            serde_json::to_string(&Command::EvalNow).unwrap(),
            r#""eval_now""#
        );
        assert_eq!(set.word(), "set");
        for &kind in CommandKind::all() {
            if let Some(command) = kind.command() {
                assert_eq!(CommandKind::from(&command), kind);
                assert_eq!(command.word(), kind.word());
            }
        }
    }
}
