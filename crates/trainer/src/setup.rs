//! From `trainui train`'s arguments to a checked [`TrainSetup`]: the
//! effective config, the checkpoint to resume, the model folder and the
//! data. Every user mistake is reported here, before anything is written.

use std::path::{Path, PathBuf};

use crate::checkpoint::{self, TrainerState};
use crate::data::{self, Dataset, TextTokenizer};
use crate::hf::{self, Architecture, HfFolder};
use crate::trainer::{self, TrainSetup};
use trainui::cli::{Resume, TrainArgs};
use trainui::machine;
use trainui_protocol::config::{self, Config};
use trainui_protocol::control;
use trainui_protocol::error::{Error, Result};
use trainui_protocol::process;
use trainui_protocol::rundir;
use trainui_protocol::runlock::RunLock;

/// The run `args` ask for, checked: nothing is written yet, but the lock of
/// a run directory that already holds a run, taken before its checkpoints
/// are read (so a run still writing them is named, not misread).
pub fn prepare(args: &TrainArgs) -> Result<(TrainSetup, Option<RunLock>)> {
    let (mut config, resumed, lock) = effective_config(args)?;
    if config.tensorboard.enabled {
        trainui::tensorboard::check_folder(
            &config.run_dir.join(trainui::tensorboard::FOLDER),
            "set tensorboard.enabled=false",
        )?;
    }
    trainer::resolve_device(config.device)?;
    // A resumed run has its weights, sizes and tokenizer in the checkpoint.
    let init_from = if resumed.is_none() {
        hf::apply_to_config(&mut config)?
    } else {
        None
    };
    let (tokenizer, train, val) = load_data(&config, resumed.as_ref(), init_from.as_ref())?;
    let architecture = match (&resumed, &init_from) {
        (Some((_, state)), _) => state.architecture.clone(),
        (None, Some(folder)) => Some(folder.architecture.clone()),
        (None, None) => None,
    }
    .unwrap_or_else(|| Architecture::gpt2(&config.model, tokenizer.vocab_size));
    let bf16 = match (&resumed, &init_from) {
        (Some((_, state)), _) => state.bf16,
        (None, Some(folder)) => folder.wants_bf16(),
        (None, None) => false,
    };
    check_memory(&config, &architecture, bf16)?;
    let run_dir = &config.run_dir;
    let run_name = run_dir.file_name().map_or_else(
        || run_dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let setup = TrainSetup {
        config,
        run_name,
        tokenizer,
        train: train.examples,
        val: val.examples,
        skipped_overlong: train.skipped_overlong + val.skipped_overlong,
        resume_from: resumed.map(|(path, _)| path),
        init_from,
    };
    Ok((setup, lock))
}

/// A checkpoint to resume, checked, with its state.
type Resumed = (PathBuf, TrainerState);

/// The effective config of a `train` invocation and the checkpoint it
/// resumes from, checked, with its state.
fn effective_config(args: &TrainArgs) -> Result<(Config, Option<Resumed>, Option<RunLock>)> {
    let mut config = config::load(args.config.as_deref(), &args.overrides)?;
    // The run a checkpoint belongs to: RUN_DIR/checkpoints/checkpoint-N.
    let owning_run = match &args.resume {
        Some(Resume::Path(path)) => path.parent().and_then(|checkpoints| {
            (checkpoints.file_name()? == "checkpoints")
                .then(|| checkpoints.parent().map(Path::to_path_buf))?
        }),
        _ => None,
    };
    let run_dir = args
        .run_dir
        .clone()
        .or(owning_run)
        .unwrap_or_else(|| config.run_dir.clone());
    control::check_spool(&run_dir)?;
    let holds_a_run = run_dir.join(rundir::EVENTS_FILE).exists()
        || checkpoint::checkpoints_dir(&run_dir).exists();
    let lock = if holds_a_run {
        let lock = RunLock::take(&run_dir)?;
        checkpoint::remove_unfinished(&run_dir);
        Some(lock)
    } else {
        None
    };

    let resumed = match &args.resume {
        None => {
            if run_dir.join(rundir::EVENTS_FILE).exists() {
                return Err(Error::Usage(format!(
                    "{}: this run directory already holds a run; pick another with --run-dir, \
                     or continue it with --resume latest",
                    run_dir.display()
                )));
            }
            None
        }
        // `auto`: resume if there is a checkpoint, else start (or start over)
        // with the run's own settings when it has some.
        Some(Resume::Auto) if checkpoint::latest(&run_dir).0.is_none() => {
            for reason in checkpoint::latest(&run_dir).1 {
                process::say(format!(
                    "warning: skipping an incomplete checkpoint: {reason}"
                ));
            }
            let saved = run_dir.join(rundir::CONFIG_FILE);
            if args.config.is_none() && saved.is_file() {
                let source = saved.display().to_string();
                control::owned_by_me_alone(&saved)?;
                let value = settings_of_a_run(config::read_saved(&saved)?, &source);
                config = config::from_value(&source, value, &args.overrides)?;
                process::say(format!(
                    "no complete checkpoint in {}: starting the run again with the settings of {}",
                    checkpoint::checkpoints_dir(&run_dir).display(),
                    saved.display()
                ));
            }
            None
        }
        Some(resume) => {
            let named = match resume {
                Resume::Path(path) => format!("--resume {}", path.display()),
                Resume::Latest | Resume::Auto => "--resume latest".to_owned(),
            };
            let path = if let Resume::Path(path) = resume {
                path.clone()
            } else {
                let (latest, skipped) = checkpoint::latest(&run_dir);
                for reason in &skipped {
                    process::say(format!(
                        "warning: skipping an incomplete checkpoint: {reason}"
                    ));
                }
                latest.ok_or_else(|| {
                    Error::Usage(format!(
                        "{named}: no complete checkpoint in {}",
                        checkpoint::checkpoints_dir(&run_dir).display()
                    ))
                })?
            };
            let state = checkpoint::verify(&path)
                .map_err(|reason| Error::Input(format!("{named}: {reason}")))?;
            if args.config.is_none() {
                // Continue with the run's own settings, plus any --set.
                let saved = serde_json::to_value(&state.config).expect("a config serialises");
                let source = path.join(checkpoint::STATE_FILE).display().to_string();
                config = config::from_value(
                    &source,
                    settings_of_a_run(saved, &source),
                    &args.overrides,
                )?;
            }
            let newer = checkpoint::newer_than(&run_dir, state.step);
            if !newer.is_empty() {
                let folders: Vec<String> = newer.iter().map(|p| p.display().to_string()).collect();
                return Err(Error::Usage(format!(
                    "{named}: {} has newer checkpoints ({}); training on from step {} would mix \
                     two runs in one folder (and replace them). Resume the newest with \
                     --resume latest, resume into another --run-dir, or move the newer \
                     checkpoints out of {} first",
                    run_dir.display(),
                    folders.join(", "),
                    state.step,
                    checkpoint::checkpoints_dir(&run_dir).display()
                )));
            }
            let mismatch = checkpoint::shape_mismatch(&state.config.model, &config.model);
            if !mismatch.is_empty() {
                return Err(Error::Config(format!(
                    "{named}: {}: {}; resume with the model section the checkpoint was trained \
                     with",
                    path.display(),
                    mismatch.join(", ")
                )));
            }
            Some((path, state))
        }
    };
    config.run_dir = run_dir;
    let cwd = std::env::current_dir()
        .map_err(|e| Error::Failed(format!("cannot read the current folder: {e}")))?;
    config.resolve_paths(&cwd);
    Ok((config, resumed, lock))
}

/// The settings saved with a run (its config.json, a checkpoint's state),
/// to continue it with: without the keys that name commands, which come
/// from this command line alone (the run directory may come from someone
/// else, and its commands are not run). Says which were left out.
fn settings_of_a_run(mut saved: serde_json::Value, source: &str) -> serde_json::Value {
    for key in config::without_commands(&mut saved) {
        process::say(format!(
            "warning: {source}: {key} is not taken from a saved run (it could run anything); \
             give it with --config or --set {key}=... to use it"
        ));
    }
    saved
}

/// Refuses a model and batch that cannot fit the memory of the device they
/// would train on (the machine's, or the GPU's when NVML can say), before
/// anything is built: an allocation that fails aborts the process. The
/// estimate counts weights, gradients and AdamW's two moments (4 bytes
/// each, 2 in bfloat16 on a GPU), and one micro-batch's activations and
/// logits.
fn check_memory(config: &Config, architecture: &Architecture, bf16: bool) -> Result<()> {
    let parameters: f64 = hf::expected_tensors(architecture)
        .values()
        .map(|shape| shape.iter().map(|&d| d as f64).product::<f64>())
        .sum();
    let (layers, heads, width) = architecture.sizes();
    let rows = f64::from(config.train.batch_size) * f64::from(config.model.block_size);
    let per_token = f64::from(layers)
        * (16.0 * f64::from(width) + 2.0 * f64::from(heads) * f64::from(config.model.block_size))
        + 3.0 * f64::from(architecture.vocab_size());
    let device = trainer::resolve_device(config.device)?;
    let (available, what, bytes) = match device.strip_prefix("cuda:") {
        Some(index) => (
            index.parse().ok().and_then(machine::gpu_memory),
            format!("GPU {index}"),
            if bf16 { 2.0 } else { 4.0 },
        ),
        None => (machine::memory(), "this machine".to_owned(), 4.0),
    };
    let needed = bytes * (4.0 * parameters + rows * per_token);
    let Some(available) = available else {
        return Ok(());
    };
    if needed > available as f64 {
        const GIB: f64 = (1u64 << 30) as f64;
        return Err(Error::Config(format!(
            "the model ({} parameters) with micro-batches of {} x {} tokens needs about {:.1} GiB \
             to train, more than the {:.1} GiB of {what}; make the model smaller \
             (model.n_layer, model.n_embd), or lower train.batch_size and raise \
             train.grad_accum_steps",
            trainui_protocol::lines::thousands(parameters as u64),
            config.train.batch_size,
            config.model.block_size,
            needed / GIB,
            available as f64 / GIB
        )));
    }
    Ok(())
}

/// The tokenizer and both datasets, checked against the checkpoint to resume.
fn load_data(
    config: &Config,
    resumed: Option<&Resumed>,
    init_from: Option<&HfFolder>,
) -> Result<(TextTokenizer, Dataset, Dataset)> {
    let tokenizer = match (&resumed, init_from) {
        // A checkpoint carries the tokenizer it was trained with.
        (Some((path, state)), _) if path.join(checkpoint::TOKENIZER_FILE).is_file() => {
            TextTokenizer::load_with_eot(&path.join(checkpoint::TOKENIZER_FILE), state.eot_id)?
        }
        (None, Some(folder)) => {
            let tokenizer = TextTokenizer::load_with_eot(&folder.tokenizer(), folder.eos_token_id)?;
            let vocab = folder.architecture.vocab_size();
            if tokenizer.vocab_size > vocab || tokenizer.eot_id >= vocab {
                return Err(Error::Input(format!(
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
        _ => TextTokenizer::load(&config.data.tokenizer)?,
    };
    if let Some((path, state)) = resumed
        && state.vocab_size != tokenizer.vocab_size
    {
        return Err(Error::Input(format!(
            "--resume {}: the checkpoint was trained with a vocabulary of {} tokens, but {} \
             has {}; resume with the tokenizer of that run",
            path.display(),
            state.vocab_size,
            config.data.tokenizer.display(),
            tokenizer.vocab_size
        )));
    }
    let block_size = config.model.block_size as usize;
    let load =
        |path: &Path| data::load_examples(path, &tokenizer, block_size, config.data.overlong);
    let train = load(&config.data.train_file)?;
    let val = load(&config.data.val_file)?;
    Ok((tokenizer, train, val))
}
