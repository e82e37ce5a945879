//! The command line: every subcommand and its arguments, as clap parses
//! them. What each does lives elsewhere (the two programs' `main.rs` dispatch).

use std::path::PathBuf;
use std::str::FromStr;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};

use crate::run_filter::{Filter, Sort};
use trainui_protocol::config::{DevicePref, Seconds};
use trainui_protocol::events::CommandKind;

/// What `trainui --version` says: the program's version, and the versions
/// of the run-directory protocol it reads and writes (events and status
/// file, then command files). A test keeps the numbers equal to
/// `SCHEMA_VERSION` and `REQUEST_VERSION`.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (protocol 3, commands 2)");

/// `trainui`'s command line.
#[derive(Parser)]
#[command(
    name = "trainui",
    version = VERSION,
    about = "Train language models on libtorch; watch and steer the run"
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub train: TrainArgs,
}

impl Cli {
    /// The command given, `train` when none is.
    #[must_use]
    pub fn command(self) -> Command {
        self.command
            .unwrap_or(Command::Torch(TorchCommand::Train(self.train)))
    }
}

/// Every command, by the program that runs it.
#[derive(Subcommand)]
pub enum Command {
    #[command(flatten)]
    Monitor(MonitorCommand),
    #[command(flatten)]
    Torch(TorchCommand),
}

/// The commands `trainui` runs itself: they read and steer run
/// directories, and load no libtorch. (`display_order` keeps the help's
/// order of all commands.)
#[derive(Subcommand)]
pub enum MonitorCommand {
    /// Summarise a run directory's status.
    #[command(display_order = 1)]
    Status(StatusArgs),
    /// One line per run found below DIR (default runs/): state, step,
    /// losses, last update, and the config keys that differ among them.
    ///
    /// Read from their status files and config.json (never their event
    /// logs): state and whether its process is alive, step, losses,
    /// timeout rate, last update, the config keys and producer details
    /// that differ among the runs listed, and the path. --where chooses
    /// the runs, --sort orders them.
    #[command(display_order = 2)]
    Runs(RunsArgs),
    /// The config keys (and framework, device, world size) whose values
    /// differ among runs, a column per run.
    #[command(display_order = 3)]
    Diff(DiffArgs),
    /// Draw the loss curves of runs (raw, smoothed as in the TUI,
    /// validation) into an SVG or PNG picture, several runs overlaid.
    #[command(display_order = 3)]
    Plot(PlotArgs),
    /// Print a run's history for scripts and notebooks: its step events
    /// (or evaluations, or samples) as JSON Lines or CSV.
    #[command(display_order = 3)]
    Query(QueryArgs),
    /// Write a run's events.jsonl as a TensorBoard event file (into
    /// RUN_DIR/tensorboard/), for `tensorboard --logdir`.
    #[command(display_order = 4)]
    ExportTensorboard(ExportTensorboardArgs),
    /// Send a command to a running job (its words are listed below), or
    /// `set KEY=VALUE` to change a live setting.
    #[command(display_order = 6)]
    Ctl(CtlArgs),
    /// The TUI of a run started elsewhere (e.g. with --no-tui), or of
    /// several side by side; quitting it leaves the runs alone.
    #[command(display_order = 7)]
    Watch(WatchArgs),
    /// Start a training job (a Python script with the trainui package, alone
    /// or under torchrun) and show it like a trainui run: the TUI, or log
    /// lines when not on a terminal. Exits with the job's exit status.
    #[command(display_order = 8)]
    Run(RunArgs),
    /// The far side of a remote run path (`host:PATH`): ssh starts it
    /// there, and it serves that machine's run directories over its
    /// standard input and output to the trainui that started ssh.
    #[command(display_order = 20)]
    Serve(ServeArgs),
}

#[derive(Args)]
pub struct ServeArgs {
    /// Serve on standard input and output (the only way it serves:
    /// nothing listens on a port).
    #[arg(long, required = true)]
    pub stdio: bool,
}

/// The commands that train or run a model: `trainui` hands them to
/// `trainui-torch`, the program that links libtorch.
#[derive(Subcommand)]
pub enum TorchCommand {
    /// Train a model (the default when no subcommand is given).
    #[command(display_order = 0)]
    Train(TrainArgs),
    /// Train a byte-level BPE tokenizer.json from JSONL data.
    #[command(display_order = 5)]
    Tokenizer(TokenizerArgs),
    /// Measure training, generation and UI speed against a PyTorch peer.
    #[command(display_order = 9)]
    Bench(BenchArgs),
    /// Complete a prompt with a model folder or a checkpoint.
    #[command(display_order = 10)]
    Generate(GenerateArgs),
    /// Write a checkpoint as a Hugging Face model folder.
    #[command(display_order = 11)]
    Export(ExportArgs),
}

/// `trainui-torch`'s command line: `trainui`'s words for the commands it
/// hands over, which arrive as they were given.
#[derive(Parser)]
#[command(name = "trainui", version = VERSION)]
#[command(args_conflicts_with_subcommands = true)]
pub struct TorchCli {
    #[command(subcommand)]
    pub command: Option<TorchCommand>,
    #[command(flatten)]
    pub train: TrainArgs,
}

impl TorchCli {
    /// The command given, `train` when none is.
    #[must_use]
    pub fn command(self) -> TorchCommand {
        self.command.unwrap_or(TorchCommand::Train(self.train))
    }
}

#[derive(Args)]
pub struct GenerateArgs {
    /// A Hugging Face model folder or RUN_DIR/checkpoints/checkpoint-N.
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    #[arg(long)]
    pub prompt: String,
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: u32,
    /// End-of-text is not generated before this many tokens (as Hugging
    /// Face's min_new_tokens).
    #[arg(long, default_value_t = 0)]
    pub min_new_tokens: u32,
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.0, value_parser = temperature)]
    pub temperature: f64,
    /// Deadline of the generation, as in evaluation.
    #[arg(long, value_name = "SECONDS", default_value = "60")]
    pub timeout: Seconds,
    /// Seed of the sampling stream (with --temperature above 0).
    #[arg(long, default_value_t = 1337)]
    pub seed: u64,
    /// auto | cpu | cuda | cuda:N
    #[arg(long, default_value = "auto")]
    pub device: DevicePref,
    /// Print the prompt and generated token ids and the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ExportArgs {
    /// RUN_DIR/checkpoints/checkpoint-N (or a model folder).
    pub checkpoint: PathBuf,
    /// The folder to create.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Args)]
pub struct BenchArgs {
    /// The bench model and training settings.
    #[arg(long, value_name = "PATH", default_value = "config/bench.json")]
    pub config: PathBuf,
    /// Override a config key (repeatable), e.g. --set device=cuda.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// A Python with torch 2.13.0, to run the peer (./dev bench passes the
    /// one it set up).
    #[arg(
        long,
        value_name = "PATH",
        env = "TRAINUI_PYTHON",
        default_value = "python3"
    )]
    pub python: PathBuf,
    /// The PyTorch peer script.
    #[arg(long, value_name = "PATH", default_value = "bench/peer_torch.py")]
    pub peer: PathBuf,
    /// Rounds of trainui and the peer, alternating.
    #[arg(long, default_value_t = 6)]
    pub rounds: u32,
    /// Training steps per run, after 3 warm-up steps.
    #[arg(long, default_value_t = 30)]
    pub steps: u64,
    /// CPU threads for libtorch, trainui's and the peer's.
    #[arg(long, default_value_t = 2)]
    pub threads: u32,
    /// Vocabulary of the bench model (its data is random token ids).
    #[arg(long = "vocab", default_value_t = 2048)]
    pub vocab_size: u32,
    /// Generations ended by an abort, and by a deadline, for the latency figures.
    #[arg(long, default_value_t = 200)]
    pub abort_samples: u32,
    /// Step events of history behind the TUI frame and memory figures, and
    /// of the run `watch` and `status` open.
    #[arg(long, default_value_t = 1_000_000)]
    pub history_steps: u64,
    /// Only open a long history with `watch` and `status` (no training, no
    /// peer): the figures of a week-long run.
    #[arg(long)]
    pub history_only: bool,
}

#[derive(Args)]
pub struct WatchArgs {
    /// The run directory; several, or a folder of run directories, to
    /// compare them on one screen.
    #[arg(required = true, value_name = "RUN_DIR")]
    pub run_dirs: Vec<PathBuf>,
    /// Plain ASCII screen without colours (as NO_COLOR and TERM=dumb; a
    /// locale that is not UTF-8 gives ASCII in colour).
    #[arg(long)]
    pub plain: bool,
    /// Compare only the runs that pass this filter (repeatable; all must
    /// pass), as `trainui runs --where` takes it, e.g. --where
    /// 'train.learning_rate<1e-3'.
    #[arg(long = "where", value_name = "KEY OP VALUE")]
    pub filters: Vec<Filter>,
    /// How many folders deep a folder of runs is searched for them.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_DEPTH)]
    pub depth: usize,
    /// The paths are one run, on several machines (a job across nodes
    /// that share no filesystem): its events and status from the first,
    /// the rank files from all.
    #[arg(long)]
    pub as_one: bool,
}

#[derive(Args)]
pub struct RunArgs {
    /// Run directory the job writes (TRAINUI_RUN_DIR); default
    /// runs/job-DATE-TIME. It must not hold a run already.
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    /// Print log lines, and pass the job's own output through (escaped),
    /// instead of showing the TUI.
    #[arg(long)]
    pub no_tui: bool,
    /// Plain ASCII screen without colours (as NO_COLOR and TERM=dumb; a
    /// locale that is not UTF-8 gives ASCII in colour).
    #[arg(long)]
    pub plain: bool,
    /// Relaunch the job's command when it ends stalled (exit status 75, or
    /// a failure after a `stalled` event), at most N times, in the same run
    /// directory; the job finds its latest checkpoint in
    /// TRAINUI_RESUME_CHECKPOINT.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub restart_on_stall: u32,
    /// alerts.command: a shell command run on each alert of the job (it
    /// finished, stopped, failed, stalled or recovered; its timeout rate
    /// passed the warning; a loss was not finite) with the event's
    /// events.jsonl line on stdin.
    #[arg(long, value_name = "COMMAND")]
    pub alerts_command: Option<String>,
    /// alerts.timeout_seconds: the alert command is killed after this long.
    #[arg(long, value_name = "SECONDS", default_value = "10")]
    pub alerts_timeout: Seconds,
    /// The job's command line, after `--`, e.g. `-- torchrun
    /// --nproc-per-node 2 train.py`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Args)]
pub struct CtlArgs {
    /// The run directory of the running job.
    pub run_dir: PathBuf,
    #[arg(value_parser = command_words())]
    pub command: CommandKind,
    /// For `set`: KEY=VALUE (one or more), e.g. eval.eval_steps=100.
    #[arg(value_name = "KEY=VALUE")]
    pub assignments: Vec<String>,
    /// Seconds to wait for the run's answer.
    #[arg(long, value_name = "SECONDS", default_value = "10")]
    pub timeout: Seconds,
}

#[derive(Args, Clone, Default)]
pub struct TrainArgs {
    /// Config file (JSON); without it the built-in defaults (the demo) are used.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Run directory; overrides the config's run_dir.
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    /// Print log lines instead of showing the TUI.
    #[arg(long)]
    pub no_tui: bool,
    /// Override a config key, e.g. --set train.max_steps=100 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Resume from a checkpoint: `latest`, a checkpoint folder, or `auto`
    /// (the latest if there is one, else start), for supervisors.
    #[arg(long, value_name = "latest|auto|PATH")]
    pub resume: Option<Resume>,
    /// Plain ASCII output without colours (as NO_COLOR and TERM=dumb; a
    /// locale that is not UTF-8 gives ASCII in colour).
    #[arg(long)]
    pub plain: bool,
}

#[derive(Args)]
pub struct StatusArgs {
    /// The run directory.
    pub run_dir: PathBuf,
    /// Print the status file as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ExportTensorboardArgs {
    /// The run directory.
    pub run_dir: PathBuf,
    /// The folder of the event file (default RUN_DIR/tensorboard).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Args)]
pub struct PlotArgs {
    /// Run directories (one or more).
    #[arg(required = true, value_name = "RUN_DIR")]
    pub runs: Vec<PathBuf>,
    /// The picture to write: FILE.svg or FILE.png.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Loss on a log scale.
    #[arg(long)]
    pub log: bool,
    /// EMA window in steps (default: as `watch` picks it, about 1/20 of
    /// the shortest run; never more than a quarter of the steps a curve
    /// spans, and the legend says the window applied).
    #[arg(long, value_name = "STEPS", value_parser = clap::value_parser!(u64).range(1..))]
    pub smoothing: Option<u64>,
    /// What to draw: the training loss (with validation loss), the learning
    /// rate, the gradient norm or tokens/s.
    #[arg(long, default_value = "loss", value_parser = ["loss", "lr", "grad_norm", "tokens_per_sec"])]
    pub series: String,
    /// The x axis: steps, tokens seen (estimated from tokens/s for runs that
    /// do not record `tokens_seen`) or wall-clock time.
    #[arg(long = "x", default_value = "steps", value_name = "AXIS", value_parser = ["steps", "tokens", "time"])]
    pub x_axis: String,
    /// Width in pixels.
    #[arg(long, default_value_t = 1200, value_parser = clap::value_parser!(u32).range(200..=8000))]
    pub width: u32,
    /// Height in pixels.
    #[arg(long, default_value_t = 700, value_parser = clap::value_parser!(u32).range(150..=8000))]
    pub height: u32,
    /// The title (default: `SERIES · RUN, RUN`).
    #[arg(long)]
    pub title: Option<String>,
}

#[derive(Args)]
#[command(after_help = crate::query::fields_help())]
pub struct QueryArgs {
    /// The run directory.
    pub run_dir: PathBuf,
    /// Rows from this step on (inclusive).
    #[arg(long, value_name = "STEP")]
    pub from: Option<u64>,
    /// Rows up to this step (inclusive).
    #[arg(long, value_name = "STEP")]
    pub to: Option<u64>,
    /// Only steps that are multiples of N.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub every: Option<u64>,
    /// The columns, comma-separated, in order (step is always first;
    /// default: every field, listed below).
    #[arg(long, value_name = "FIELD,...", value_delimiter = ',')]
    pub fields: Vec<String>,
    #[command(flatten)]
    pub rows: QueryRows,
    #[command(flatten)]
    pub format: QueryFormat,
}

/// `trainui query`'s rows: the steps, unless one of these is given.
#[derive(Args)]
#[group(multiple = false)]
pub struct QueryRows {
    /// Rows of the finished evaluations instead of the steps.
    #[arg(long)]
    pub evals: bool,
    /// Rows of the sample generations instead of the steps.
    #[arg(long)]
    pub samples: bool,
}

/// `trainui query`'s output, one of the two.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct QueryFormat {
    /// JSON Lines: one object a line, text exact (escaped as JSON).
    #[arg(long)]
    pub json: bool,
    /// CSV with a header: one row a line, control characters in text
    /// written escaped (\n, \x1b).
    #[arg(long)]
    pub csv: bool,
}

/// How many folders deep `runs` and `watch` look for runs below a folder.
pub const DEFAULT_DEPTH: usize = 3;

#[derive(Args)]
#[command(after_help = "\
Filters (--where KEY OP VALUE, repeatable, all must pass):
  KEY is a column (name, state, alive, gone, step, max_steps, loss,
  val_loss, exact_match, timeout_rate, tokens_per_sec, updated (seconds
  ago), path, framework, device, world_size) or a dotted key of the run's
  config.json (config.KEY for one named like a column: config.device).
  OP is one of = != < <= > >=. Numbers compare as numbers, text as text;
  with = and != a VALUE holding * or ? is a pattern. A run without the key
  fails the filter, except for !=.

Examples:
  trainui runs runs --where 'train.learning_rate<1e-3' --where state=training
  trainui runs sweeps --where 'name=lr-*' --sort=-loss
  trainui runs sweeps --sort train.learning_rate --json")]
pub struct RunsArgs {
    /// The folder below which run directories are looked for (or a run
    /// directory).
    #[arg(default_value = "runs")]
    pub dir: PathBuf,
    /// Print a JSON array (one object per run) for scripts: the same runs
    /// in the same order.
    #[arg(long)]
    pub json: bool,
    /// How many folders deep runs are looked for (1: only directly under
    /// DIR); a run directory is not searched inside.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_DEPTH)]
    pub depth: usize,
    /// Only the runs that pass this filter (repeatable; all must pass), e.g.
    /// --where 'train.learning_rate<1e-3' --where state=training --where
    /// 'name=lr-*' (see below).
    #[arg(long = "where", value_name = "KEY OP VALUE")]
    pub filters: Vec<Filter>,
    /// Order by a column or a config key, ascending; -KEY (or --reverse)
    /// descending. Runs without the key come last. Default: most recently
    /// updated first.
    #[arg(long, value_name = "KEY", allow_hyphen_values = true)]
    pub sort: Option<Sort>,
    /// Reverse the order (of --sort, or the default).
    #[arg(long)]
    pub reverse: bool,
}

#[derive(Args)]
pub struct DiffArgs {
    /// Two run directories or more, each with its config.json.
    #[arg(required = true, num_args = 2.., value_name = "RUN_DIR")]
    pub runs: Vec<PathBuf>,
    /// Every key, the ones all runs share too.
    #[arg(long)]
    pub all: bool,
    /// Print JSON for scripts: the keys, and each run's values of them.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct TokenizerArgs {
    /// JSONL file(s) of {"prompt", "completion"} to learn from.
    #[arg(long, required = true, value_name = "FILE")]
    pub data: Vec<PathBuf>,
    /// Size of the vocabulary, special tokens included.
    #[arg(long, default_value_t = 512)]
    pub vocab_size: usize,
    /// Where to write tokenizer.json.
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
}

/// `--resume`: where a run continues from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// The newest complete checkpoint of the run directory.
    Latest,
    /// The latest checkpoint if there is one, else a fresh start (for
    /// supervisors, whose first start has no checkpoint).
    Auto,
    /// A checkpoint folder.
    Path(PathBuf),
}

impl FromStr for Resume {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text {
            "latest" => Self::Latest,
            "auto" => Self::Auto,
            path => Self::Path(PathBuf::from(path)),
        })
    }
}

/// `--temperature`: a finite number of 0 or more, as `eval.temperature`
/// takes it (a NaN or an infinity would sample nothing a user asked for).
fn temperature(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(format!(
            "must be a finite number of 0 or more, 0 being greedy (got {value})"
        ))
    }
}

/// `trainui ctl`'s command words are the commands' own.
fn command_words() -> impl TypedValueParser<Value = CommandKind> {
    let words = CommandKind::all()
        .iter()
        .map(|kind| PossibleValue::new(kind.word()).help(kind.about()));
    PossibleValuesParser::new(words).map(|word| {
        *CommandKind::all()
            .iter()
            .find(|kind| kind.word() == word)
            .expect("clap accepts only the listed words")
    })
}

#[cfg(test)]
mod tests {
    use super::VERSION;
    use trainui_protocol::control::REQUEST_VERSION;
    use trainui_protocol::events::SCHEMA_VERSION;

    #[test]
    fn the_version_names_the_protocol_versions_in_force() {
        assert_eq!(
            VERSION,
            format!(
                "{} (protocol {SCHEMA_VERSION}, commands {REQUEST_VERSION})",
                env!("CARGO_PKG_VERSION")
            )
        );
    }
}
