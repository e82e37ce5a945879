//! trainui: train a language model on libtorch and see and steer the run from
//! a terminal.

mod bench;
mod config;
mod control;
mod data;
mod events;
mod headless;
mod hf;
mod recorder;
mod rundir;
mod trainer;
mod tui;
mod watch;
mod watchdog;

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};

use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::events::{Command, Event, RunState, RunStatus};
use crate::recorder::Recorder;
use crate::rundir::RunDir;
use crate::trainer::Controller;
use crate::watchdog::Watchdog;

#[derive(Parser)]
#[command(
    name = "trainui",
    version,
    about = "Train language models on libtorch; watch and steer the run"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Commands>,
    #[command(flatten)]
    train: TrainArgs,
}

#[derive(Subcommand)]
enum Commands {
    /// Train a model (the default when no subcommand is given).
    Train(TrainArgs),
    /// Summarise a run directory's status.
    Status(StatusArgs),
    /// Train a byte-level BPE tokenizer.json from JSONL data.
    Tokenizer(TokenizerArgs),
    /// Send a command to a running job: eval, abort, pause, resume, save,
    /// stop, or set KEY=VALUE.
    Ctl(CtlArgs),
    /// The TUI of a run started elsewhere (e.g. with --no-tui); quitting it
    /// leaves the run alone.
    Watch(WatchArgs),
    /// Measure training, generation and UI speed against a PyTorch peer.
    Bench(BenchArgs),
    /// Complete a prompt with a model folder or a checkpoint.
    Generate(GenerateArgs),
    /// Write a checkpoint as a Hugging Face model folder.
    Export(ExportArgs),
}

#[derive(Args)]
struct GenerateArgs {
    /// A Hugging Face model folder or RUN_DIR/checkpoints/checkpoint-N.
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    #[arg(long)]
    prompt: String,
    #[arg(long, default_value_t = 64)]
    max_new_tokens: u32,
    /// End-of-text is not generated before this many tokens (as Hugging
    /// Face's min_new_tokens).
    #[arg(long, default_value_t = 0)]
    min_new_tokens: u32,
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    /// Deadline of the generation, as in evaluation.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    timeout: f64,
    /// Seed of the sampling stream (with --temperature above 0).
    #[arg(long, default_value_t = 1337)]
    seed: u64,
    /// auto | cpu | cuda | cuda:N
    #[arg(long, default_value = "auto")]
    device: String,
    /// Print the prompt and generated token ids and the outcome as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ExportArgs {
    /// RUN_DIR/checkpoints/checkpoint-N (or a model folder).
    checkpoint: PathBuf,
    /// The folder to create.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

#[derive(Args)]
struct BenchArgs {
    /// The bench model and training settings.
    #[arg(long, value_name = "PATH", default_value = "config/bench.json")]
    config: PathBuf,
    /// Override a config key (repeatable), e.g. --set device=cuda.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// A Python with torch 2.13.0, to run the peer (./dev bench passes the
    /// one it set up).
    #[arg(
        long,
        value_name = "PATH",
        env = "TRAINUI_PYTHON",
        default_value = "python3"
    )]
    python: PathBuf,
    /// The PyTorch peer script.
    #[arg(long, value_name = "PATH", default_value = "bench/peer_torch.py")]
    peer: PathBuf,
    /// Rounds of trainui and the peer, alternating.
    #[arg(long, default_value_t = 6)]
    rounds: u32,
    /// Training steps per run, after 3 warm-up steps.
    #[arg(long, default_value_t = 30)]
    steps: u64,
    /// CPU threads for libtorch, trainui's and the peer's.
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// Vocabulary of the bench model (its data is random token ids).
    #[arg(long = "vocab", default_value_t = 2048)]
    vocab_size: u32,
    /// Generations ended by an abort, and by a deadline, for the latency figures.
    #[arg(long, default_value_t = 200)]
    abort_samples: u32,
    /// Step events of history behind the TUI frame and memory figures.
    #[arg(long, default_value_t = 1_000_000)]
    history_steps: u64,
}

#[derive(Args)]
struct WatchArgs {
    /// The run directory.
    run_dir: PathBuf,
    /// No colours.
    #[arg(long)]
    plain: bool,
}

#[derive(Args)]
struct CtlArgs {
    /// The run directory of the running job.
    run_dir: PathBuf,
    /// eval | abort | pause | resume | save | stop | set
    command: String,
    /// For `set`: KEY=VALUE, e.g. eval.eval_steps=100.
    assignment: Option<String>,
    /// Seconds to wait for the run's answer.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
}

#[derive(Args, Clone, Default)]
struct TrainArgs {
    /// Config file (JSON); without it the built-in defaults (the demo) are used.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Run directory; overrides the config's run_dir.
    #[arg(long, value_name = "DIR")]
    run_dir: Option<PathBuf>,
    /// Print log lines instead of showing the TUI.
    #[arg(long)]
    no_tui: bool,
    /// Override a config key, e.g. --set train.max_steps=100 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Resume from a checkpoint: `latest`, a checkpoint folder, or `auto`
    /// (the latest if there is one, else start), for supervisors.
    #[arg(long, value_name = "latest|auto|PATH")]
    resume: Option<String>,
    /// Plain ASCII output without colours.
    #[arg(long)]
    plain: bool,
}

#[derive(Args)]
struct StatusArgs {
    /// The run directory.
    run_dir: PathBuf,
    /// Print the status file as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct TokenizerArgs {
    /// JSONL file(s) of {"prompt", "completion"} to learn from.
    #[arg(long, required = true, value_name = "FILE")]
    data: Vec<PathBuf>,
    /// Size of the vocabulary, special tokens included.
    #[arg(long, default_value_t = 512)]
    vocab_size: usize,
    /// Where to write tokenizer.json.
    #[arg(long, value_name = "PATH")]
    out: PathBuf,
}

/// How a command ended, as an exit code.
enum Failure {
    /// A usage, config or data mistake: exit 2.
    User(String),
    /// Something went wrong while running: exit 1.
    Runtime(String),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Commands::Train(args)) => train(&args),
        None => train(&cli.train),
        Some(Commands::Status(args)) => status(&args),
        Some(Commands::Tokenizer(args)) => tokenizer(args),
        Some(Commands::Ctl(args)) => ctl(&args),
        Some(Commands::Watch(args)) => watch_run(&args),
        Some(Commands::Bench(args)) => bench(args),
        Some(Commands::Generate(args)) => generate(&args),
        Some(Commands::Export(args)) => trainer::inference::export(&args.checkpoint, &args.out)
            .map(|()| {
                println!(
                    "exported {} to {}",
                    args.checkpoint.display(),
                    args.out.display()
                );
            })
            .map_err(Failure::User),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::User(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
    }
}

fn train(args: &TrainArgs) -> Result<(), Failure> {
    let (mut config, resume_from) = prepare_run(args)?;
    let run_dir = config.run_dir.clone();
    trainer::resolve_device(config.device).map_err(Failure::User)?;
    // A resumed run has its weights, sizes and tokenizer in the checkpoint.
    let init_from = if resume_from.is_none() {
        hf::apply_to_config(&mut config).map_err(Failure::User)?
    } else {
        None
    };
    if let Some(folder) = &init_from {
        hf::check_weights(folder).map_err(Failure::User)?;
    }
    let (tokenizer, train_set, val_set) =
        load_data(&config, resume_from.as_deref(), init_from.as_ref())?;

    // Every check is done: only now is anything written.
    let run_name = run_dir.file_name().map_or_else(
        || run_dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let status = RunStatus::new(run_name.clone(), config.train.max_steps);
    let run = RunDir::open(&run_dir, &config, status).map_err(|e| {
        Failure::Runtime(format!(
            "{}: cannot write the run directory: {e}",
            run_dir.display()
        ))
    })?;
    let timeout_warn_rate = config.eval.timeout_warn_rate;
    let watchdog_config = config.watchdog.clone();
    let live_config = config.clone();
    let mut handle = trainer::spawn(trainer::TrainSetup {
        config,
        run_name,
        tokenizer,
        train: train_set.examples,
        val: val_set.examples,
        skipped_overlong: train_set.skipped_overlong + val_set.skipped_overlong,
        resume_from,
        init_from,
    })
    .map_err(|e| Failure::Runtime(format!("cannot start the trainer thread: {e}")))?;

    let stdout_is_terminal = std::io::stdout().is_terminal();
    let use_tui = !args.no_tui && stdout_is_terminal;
    let stall_recorded = Arc::new(AtomicBool::new(false));
    let event_sender = handle
        .event_sender
        .take()
        .expect("a new handle holds its event sender");
    let stall_timeout_millis = Arc::new(AtomicU64::new(
        (watchdog_config.stall_timeout_seconds * 1000.0).round() as u64,
    ));
    control::Spool {
        run_dir: run_dir.clone(),
        controller: handle.controller.clone(),
        events: event_sender.clone(),
        heartbeat: Arc::clone(&handle.heartbeat),
        config: live_config,
        stall_timeout_millis: Arc::clone(&stall_timeout_millis),
    }
    .spawn()
    .map_err(|e| {
        Failure::Runtime(format!(
            "{}: cannot create the control spool: {e}",
            run_dir.display()
        ))
    })?;
    Watchdog {
        heartbeat: Arc::clone(&handle.heartbeat),
        timeout_millis: stall_timeout_millis,
        on_stall: watchdog_config.on_stall,
        events: event_sender,
        stall_recorded: Arc::clone(&stall_recorded),
        before_exit: if use_tui { ratatui::restore } else { || {} },
    }
    .spawn()
    .map_err(|e| Failure::Runtime(format!("cannot start the watchdog: {e}")))?;

    let mut recorder = Recorder::new(run, stall_recorded);
    if use_tui {
        install_signal_handlers(handle.controller.clone(), true)?;
        let exit = run_tui(&handle, &mut recorder, args.plain, timeout_warn_rate)?;
        if exit == tui::app::Exit::Restart {
            return Err(restart_from_latest_checkpoint(&run_dir));
        }
        if exit == tui::app::Exit::Now && !recorder.run.status().state.is_final() {
            // Quit at once: the trainer is left mid-step, with the last
            // checkpoint on disk.
            std::process::exit(130);
        }
        for event in handle.events.try_iter() {
            let _ = recorder.record(&event, headless::Style::PLAIN);
        }
    } else {
        if !args.no_tui {
            eprintln!("stdout is not a terminal: running headless (--no-tui says so explicitly)");
        }
        install_signal_handlers(handle.controller.clone(), false)?;
        recorder::run_headless(
            &handle.events,
            &mut recorder,
            headless::Style::detect(args.plain, stdout_is_terminal),
            &mut std::io::stdout(),
        );
    }
    let _ = handle.thread.join();
    outcome(recorder.run.status())
}

/// The tokenizer and both datasets, checked against the checkpoint to resume.
fn load_data(
    config: &Config,
    resume_from: Option<&Path>,
    init_from: Option<&hf::HfFolder>,
) -> Result<(data::TextTokenizer, data::Dataset, data::Dataset), Failure> {
    let user = |e: data::DataError| Failure::User(e.to_string());
    let resumed = resume_from
        .map(|path| trainer::checkpoint::verify(path).map(|state| (path, state)))
        .transpose()
        .map_err(Failure::User)?;
    let tokenizer = match (&resumed, init_from) {
        // A checkpoint carries the tokenizer it was trained with.
        (Some((path, state)), _) if path.join(trainer::checkpoint::TOKENIZER_FILE).is_file() => {
            data::TextTokenizer::load_with_eot(
                &path.join(trainer::checkpoint::TOKENIZER_FILE),
                state.eot_id,
            )
            .map_err(user)?
        }
        (None, Some(folder)) => {
            let tokenizer =
                data::TextTokenizer::load_with_eot(&folder.tokenizer(), folder.eos_token_id)
                    .map_err(user)?;
            let vocab = folder.architecture.vocab_size();
            if tokenizer.vocab_size > vocab || tokenizer.eot_id >= vocab {
                return Err(Failure::User(format!(
                    "{}: the tokenizer has {} tokens (end-of-text id {}), but {} gives the model a \
                     vocabulary of {vocab}: ids past it have no embedding; use the tokenizer \
                     saved with this model",
                    folder.tokenizer().display(),
                    tokenizer.vocab_size,
                    tokenizer.eot_id,
                    folder.path.join(hf::CONFIG_FILE).display()
                )));
            }
            tokenizer
        }
        _ => data::TextTokenizer::load(&config.data.tokenizer).map_err(user)?,
    };
    if let Some((path, state)) = resumed
        && state.vocab_size != tokenizer.vocab_size
    {
        return Err(Failure::User(format!(
            "--resume {}: the checkpoint was trained with a vocabulary of {} tokens, but {} \
                 has {}; resume with the tokenizer of that run",
            path.display(),
            state.vocab_size,
            config.data.tokenizer.display(),
            tokenizer.vocab_size
        )));
    }
    let block_size = config.model.block_size as usize;
    let load = |path: &Path| {
        data::load_examples(path, &tokenizer, block_size, config.data.overlong)
            .map_err(|e| Failure::User(e.to_string()))
    };
    let train_set = load(&config.data.train_file)?;
    let val_set = load(&config.data.val_file)?;
    Ok((tokenizer, train_set, val_set))
}

/// The exit status of a run that ended: success when it finished or was
/// stopped on request.
fn outcome(status: &RunStatus) -> Result<(), Failure> {
    match status.state {
        RunState::Finished | RunState::Stopped => Ok(()),
        RunState::Failed => Err(Failure::Runtime(
            status
                .last_message
                .clone()
                .unwrap_or_else(|| "the trainer failed".into()),
        )),
        other => Err(Failure::Runtime(format!(
            "the trainer ended without a final state (last state: {})",
            other.as_str()
        ))),
    }
}

/// The effective config of a `train` invocation and the checkpoint it
/// resumes from, with every user mistake reported before anything is written.
fn prepare_run(args: &TrainArgs) -> Result<(Config, Option<PathBuf>), Failure> {
    let user = |e: config::ConfigError| Failure::User(e.to_string());
    let mut config = config::load(args.config.as_deref(), &args.overrides).map_err(user)?;
    let resume_path = args
        .resume
        .as_deref()
        .filter(|r| !matches!(*r, "latest" | "auto"))
        .map(PathBuf::from);
    // The run a checkpoint belongs to: RUN_DIR/checkpoints/checkpoint-N.
    let owning_run = resume_path.as_ref().and_then(|path| {
        let checkpoints = path.parent()?;
        (checkpoints.file_name()? == "checkpoints")
            .then(|| checkpoints.parent().map(Path::to_path_buf))?
    });
    let run_dir = args
        .run_dir
        .clone()
        .or(owning_run)
        .unwrap_or_else(|| config.run_dir.clone());

    // `auto`: resume if there is a checkpoint, else start (or start over).
    let resume = match args.resume.as_deref() {
        Some("auto") if trainer::checkpoint::latest(&run_dir).0.is_none() => None,
        Some("auto") => Some("latest"),
        other => other,
    };
    let resume_from = match resume {
        None if args.resume.is_some() => None,
        None => {
            if run_dir.join(rundir::EVENTS_FILE).exists() {
                return Err(Failure::User(format!(
                    "{}: this run directory already holds a run; pick another with --run-dir, \
                     or continue it with --resume latest",
                    run_dir.display()
                )));
            }
            None
        }
        Some(resume) => {
            let path = if let Some(path) = resume_path {
                path
            } else {
                let (latest, skipped) = trainer::checkpoint::latest(&run_dir);
                for reason in &skipped {
                    eprintln!("warning: skipping an incomplete checkpoint: {reason}");
                }
                latest.ok_or_else(|| {
                    Failure::User(format!(
                        "--resume {resume}: no complete checkpoint in {}",
                        trainer::checkpoint::checkpoints_dir(&run_dir).display()
                    ))
                })?
            };
            let state = trainer::checkpoint::verify(&path)
                .map_err(|reason| Failure::User(format!("--resume {resume}: {reason}")))?;
            if args.config.is_none() {
                // Continue with the run's own settings, plus any --set.
                let saved = serde_json::to_value(&state.config).expect("a config serialises");
                let source = path
                    .join(trainer::checkpoint::STATE_FILE)
                    .display()
                    .to_string();
                config = config::from_value(&source, saved, &args.overrides).map_err(user)?;
            }
            let mismatch = trainer::checkpoint::shape_mismatch(&state.config.model, &config.model);
            if !mismatch.is_empty() {
                return Err(Failure::User(format!(
                    "--resume {resume}: {}: {}; resume with the model section the checkpoint \
                     was trained with",
                    path.display(),
                    mismatch.join(", ")
                )));
            }
            Some(path)
        }
    };
    config.run_dir = run_dir;
    let cwd = std::env::current_dir().map_err(|e| Failure::Runtime(e.to_string()))?;
    config.resolve_paths(&cwd);
    Ok((config, resume_from))
}

/// SIGINT/SIGTERM: stop after the current step (a running generation is
/// aborted); a second one exits at once. SIGUSR1: evaluate now. SIGUSR2:
/// abort the running generation.
/// With `tui`, nothing is printed and a second signal restores the terminal
/// before exiting.
fn install_signal_handlers(controller: Controller, tui: bool) -> Result<(), Failure> {
    use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGUSR1, SIGUSR2])
        .map_err(|e| Failure::Runtime(format!("cannot install signal handlers: {e}")))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut stops = 0;
            for signal in signals.forever() {
                match signal {
                    SIGUSR1 => controller.send(Command::EvalNow),
                    SIGUSR2 => controller.send(Command::AbortGeneration),
                    _ => {
                        stops += 1;
                        if stops > 1 {
                            if tui {
                                ratatui::restore();
                            } else {
                                eprintln!("second signal: exiting now");
                            }
                            std::process::exit(128 + signal);
                        }
                        if !tui {
                            eprintln!(
                                "stopping after the current step (send the signal again to exit \
                                 now)"
                            );
                        }
                        controller.send(Command::Stop);
                    }
                }
            }
        })
        .map_err(|e| Failure::Runtime(format!("cannot start the signal thread: {e}")))?;
    Ok(())
}

/// Replaces this process with the same command resuming from the latest
/// checkpoint of `run_dir`. Works even when the trainer thread is stuck in a
/// call that never returns. Returns only if the exec failed.
fn restart_from_latest_checkpoint(run_dir: &Path) -> Failure {
    use std::os::unix::process::CommandExt;
    let args = resume_args(std::env::args_os().skip(1), run_dir);
    let program = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("trainui"));
    let err = std::process::Command::new(program).args(args).exec();
    Failure::Runtime(format!("cannot restart with --resume auto: {err}"))
}

/// `args` without any `--resume` or `--run-dir`, then `--run-dir RUN_DIR
/// --resume auto`.
fn resume_args(args: impl Iterator<Item = OsString>, run_dir: &Path) -> Vec<OsString> {
    let mut kept = Vec::new();
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        if text == "--resume" || text == "--run-dir" {
            args.next();
        } else if !text.starts_with("--resume=") && !text.starts_with("--run-dir=") {
            kept.push(arg);
        }
    }
    kept.extend([
        "--run-dir".into(),
        run_dir.as_os_str().to_owned(),
        "--resume".into(),
        "auto".into(),
    ]);
    kept
}

/// Runs the TUI on this thread until the user quits.
fn run_tui(
    handle: &trainer::TrainerHandle,
    recorder: &mut Recorder,
    plain: bool,
    timeout_warn_rate: f64,
) -> Result<tui::app::Exit, Failure> {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let status = recorder.run.status();
    let mut app = tui::app::App::new(
        status.run_name.clone(),
        status.max_steps,
        timeout_warn_rate,
        !plain && !no_color,
    );
    let mut record = |event: &Event| recorder.record(event, headless::Style::PLAIN).1;
    let controller = handle.controller.clone();
    let mut send = |command: Command| {
        controller.send(command);
        None
    };
    tui::run_in_terminal(&mut app, &handle.events, &mut record, &mut send)
        .map_err(Failure::Runtime)?;
    Ok(app.exit.unwrap_or(tui::app::Exit::Done))
}

/// Prints a completion; exits 1 when the generation did not complete.
fn generate(args: &GenerateArgs) -> Result<(), Failure> {
    let device: config::DevicePref =
        serde_json::from_value(serde_json::Value::String(args.device.clone()))
            .map_err(|e| Failure::User(format!("--device {}: {e}", args.device)))?;
    if !(args.timeout > 0.0 && args.timeout.is_finite()) {
        return Err(Failure::User(
            "--timeout must be a number of seconds above 0".into(),
        ));
    }
    let generation = trainer::inference::generate_text(
        &args.model,
        device,
        &trainer::inference::TextRequest {
            prompt: &args.prompt,
            max_new_tokens: args.max_new_tokens,
            min_new_tokens: args.min_new_tokens,
            temperature: args.temperature,
            timeout: std::time::Duration::from_secs_f64(args.timeout),
            seed: args.seed,
        },
    )
    .map_err(Failure::User)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&generation).expect("a generation serialises")
        );
    } else {
        println!("{}", generation.completion);
    }
    match &generation.outcome {
        events::GenerationOutcome::Completed => Ok(()),
        other => Err(Failure::Runtime(format!(
            "the generation ended {} after {:.1}s ({} tokens)",
            serde_json::to_value(other).map_or_else(|_| "early".into(), |v| v["kind"].to_string()),
            generation.elapsed_secs,
            generation.token_ids.len()
        ))),
    }
}

/// Runs the bench and prints its table (or JSON). Exits 0 even when a
/// target is missed: the table says which, and why is for a person to find.
fn bench(args: BenchArgs) -> Result<(), Failure> {
    let report = bench::run(&bench::BenchOptions {
        config: args.config,
        overrides: args.overrides,
        python: args.python,
        peer: args.peer,
        rounds: args.rounds.max(1),
        steps: args.steps.max(1),
        threads: args.threads.max(1),
        vocab_size: args.vocab_size,
        abort_samples: args.abort_samples.max(1),
        history_steps: args.history_steps,
    })
    .map_err(Failure::User)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("the report serialises")
        );
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

/// Sends a command file to a running job and waits for its answer: first
/// the spool's (accepted or rejected), then the trainer's acknowledgement.
fn ctl(args: &CtlArgs) -> Result<(), Failure> {
    use control::Action;
    let action = match (args.command.as_str(), &args.assignment) {
        ("eval", None) => Action::Eval,
        ("abort", None) => Action::Abort,
        ("pause", None) => Action::Pause,
        ("resume", None) => Action::Resume,
        ("save", None) => Action::Save,
        ("stop", None) => Action::Stop,
        ("set", Some(assignment)) => Action::Set {
            assignment: assignment.clone(),
        },
        ("set", None) => return Err(Failure::User("ctl set needs KEY=VALUE".into())),
        (other, _) => {
            return Err(Failure::User(format!(
                "unknown ctl command {other:?}; use eval, abort, pause, resume, save, stop or \
                 set KEY=VALUE"
            )));
        }
    };
    let command = action.command();
    let offset = std::fs::metadata(args.run_dir.join(rundir::EVENTS_FILE)).map_or(0, |m| m.len());
    let id = control::send(&args.run_dir, action).map_err(Failure::User)?;
    let deadline =
        std::time::Instant::now() + std::time::Duration::from_secs_f64(args.timeout.max(0.1));
    let mut tail = rundir::EventTail::new(&args.run_dir, offset);
    let mut answered = false;
    while std::time::Instant::now() < deadline {
        for event in tail.read_new(1 << 20) {
            match event {
                Event::Control {
                    id: answer,
                    accepted,
                    message,
                    ..
                } if answer == id => {
                    if !accepted {
                        return Err(Failure::User(format!(
                            "{}: rejected: {message}",
                            args.command
                        )));
                    }
                    answered = true;
                    if command.is_none() {
                        println!("{}: {message}", args.command);
                        return Ok(());
                    }
                }
                Event::CommandAck {
                    command: acked,
                    message,
                    ..
                } if answered && Some(acked) == command => {
                    println!("{}: {message}", args.command);
                    return Ok(());
                }
                _ => {}
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    if answered {
        println!(
            "{}: accepted; the trainer acts at its next step boundary",
            args.command
        );
        return Ok(());
    }
    let _ = std::fs::remove_file(control::spool_dir(&args.run_dir).join(format!("{id}.json")));
    let alive = rundir::read_status(&args.run_dir)
        .ok()
        .map(|s| (s.pid, process_alive(s.pid)));
    let why = match alive {
        Some((pid, false)) => format!("its process {pid} is not running"),
        Some((pid, true)) => format!("process {pid} is alive but did not answer"),
        None => "it has no status file".to_owned(),
    };
    Err(Failure::Runtime(format!(
        "no answer from the run in {} within {}s: {why}; the command was withdrawn",
        args.run_dir.display(),
        args.timeout
    )))
}

fn watch_run(args: &WatchArgs) -> Result<(), Failure> {
    if !std::io::stdout().is_terminal() {
        return Err(Failure::User(
            "watch needs a terminal; for scripts use `trainui status` or read events.jsonl".into(),
        ));
    }
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    watch::run(&args.run_dir, !args.plain && !no_color).map_err(Failure::Runtime)
}

fn status(args: &StatusArgs) -> Result<(), Failure> {
    if args.json {
        let path = args.run_dir.join(rundir::STATUS_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Failure::User(format!(
                "{}: cannot read the status file: {e}",
                path.display()
            ))
        })?;
        print!("{text}");
        return Ok(());
    }
    let status = rundir::read_status(&args.run_dir).map_err(Failure::User)?;
    print!("{}", describe_status(&status, process_alive(status.pid)));
    Ok(())
}

fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn describe_status(status: &RunStatus, alive: bool) -> String {
    use std::fmt::Write;
    let number = |value: Option<f64>, digits: usize| {
        value.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
    };
    let mut out = String::new();
    let process = if alive { "running" } else { "not running" };
    let _ = writeln!(
        out,
        "run        {} (pid {}, {process})",
        status.run_name, status.pid
    );
    let _ = writeln!(out, "state      {}", status.state.as_str());
    if !alive && !status.state.is_final() {
        let _ = writeln!(
            out,
            "           the process is gone without a final state: it was killed or crashed"
        );
    }
    let percent = 100.0 * status.current_step as f64 / status.max_steps.max(1) as f64;
    let _ = writeln!(
        out,
        "step       {} / {} ({percent:.1}%)",
        status.current_step, status.max_steps
    );
    let _ = writeln!(
        out,
        "loss       {}  (val {})",
        number(status.loss, 4),
        number(status.val_loss, 4)
    );
    let _ = writeln!(
        out,
        "lr         {}",
        status
            .learning_rate
            .map_or_else(|| "-".to_owned(), |lr| format!("{lr:.2e}"))
    );
    let _ = writeln!(
        out,
        "speed      {} tok/s",
        status
            .tokens_per_sec
            .map_or_else(|| "-".to_owned(), |t| headless::thousands(t as u64))
    );
    let _ = writeln!(
        out,
        "time       elapsed {}, eta {}",
        headless::duration(status.elapsed_secs),
        status
            .eta_secs
            .map_or_else(|| "-".to_owned(), headless::duration)
    );
    let _ = writeln!(
        out,
        "eval       {} evals, exact match {}",
        status.evals,
        status
            .exact_match
            .map_or_else(|| "-".to_owned(), |m| format!("{:.1}%", 100.0 * m))
    );
    let _ = writeln!(
        out,
        "generate   {} generations: {} completed, {} timeouts, {} aborts, {} errors \
         (timeout rate {:.1}%)",
        status.generations,
        status.completed,
        status.timeouts,
        status.aborts,
        status.errors,
        100.0 * status.timeout_rate
    );
    if let Some(path) = &status.last_checkpoint {
        let _ = writeln!(out, "checkpoint {path}");
    }
    if let Some(message) = &status.last_message {
        let _ = writeln!(out, "last       {message}");
    }
    let _ = writeln!(out, "updated    {}", status.updated_at);
    out
}

fn tokenizer(args: TokenizerArgs) -> Result<(), Failure> {
    if args.vocab_size < 257 {
        return Err(Failure::User(format!(
            "--vocab-size {}: a byte-level tokenizer needs at least 257 (256 bytes and \
             end-of-text)",
            args.vocab_size
        )));
    }
    let options = data::TokenizerTraining {
        data: args.data,
        vocab_size: args.vocab_size,
        out: args.out,
    };
    let size = data::train_tokenizer(&options).map_err(|e| Failure::User(e.to_string()))?;
    println!("wrote {} ({size} tokens)", options.out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_resumes_the_same_run_from_its_latest_checkpoint() {
        let args = [
            "train",
            "--resume",
            "runs/x/checkpoints/checkpoint-5",
            "--set",
            "a=1",
        ]
        .map(OsString::from)
        .into_iter()
        .chain(["--run-dir=runs/y".into(), "--no-tui".into()]);
        let got = resume_args(args, Path::new("/abs/runs/x"));
        let expected = [
            "train",
            "--set",
            "a=1",
            "--no-tui",
            "--run-dir",
            "/abs/runs/x",
            "--resume",
            "auto",
        ];
        assert_eq!(got, expected.map(OsString::from));
    }

    #[test]
    fn status_summary_flags_a_dead_process() {
        let mut status = RunStatus::new("demo".into(), 100);
        status.state = RunState::Training;
        status.current_step = 40;
        let text = describe_status(&status, false);
        assert!(text.contains("step       40 / 100 (40.0%)"), "{text}");
        assert!(text.contains("gone without a final state"), "{text}");
        assert!(!describe_status(&status, true).contains("gone"));
    }
}
