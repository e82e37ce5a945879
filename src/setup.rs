//! From `trainui train`'s arguments to a checked [`TrainSetup`]: the
//! effective config, the checkpoint to resume, the model folder and the
//! data. Every user mistake is reported here, before anything is written.

use std::path::{Path, PathBuf};

use crate::checkpoint;
use crate::cli::{Resume, TrainArgs};
use crate::config::{self, Config};
use crate::data::{self, Dataset, TextTokenizer};
use crate::error::{Error, Result};
use crate::hf::{self, HfFolder};
use crate::rundir;
use crate::trainer::{self, TrainSetup};

/// The run `args` ask for, checked: nothing is written yet.
pub fn prepare(args: &TrainArgs) -> Result<TrainSetup> {
    let (mut config, resume_from) = effective_config(args)?;
    trainer::resolve_device(config.device)?;
    // A resumed run has its weights, sizes and tokenizer in the checkpoint.
    let init_from = if resume_from.is_none() {
        hf::apply_to_config(&mut config)?
    } else {
        None
    };
    let (tokenizer, train, val) = load_data(&config, resume_from.as_deref(), init_from.as_ref())?;
    let run_dir = &config.run_dir;
    let run_name = run_dir.file_name().map_or_else(
        || run_dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    Ok(TrainSetup {
        config,
        run_name,
        tokenizer,
        train: train.examples,
        val: val.examples,
        skipped_overlong: train.skipped_overlong + val.skipped_overlong,
        resume_from,
        init_from,
    })
}

/// The effective config of a `train` invocation and the checkpoint it
/// resumes from.
fn effective_config(args: &TrainArgs) -> Result<(Config, Option<PathBuf>)> {
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

    let resume_from = match &args.resume {
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
        // `auto`: resume if there is a checkpoint, else start (or start over).
        Some(Resume::Auto) if checkpoint::latest(&run_dir).0.is_none() => None,
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
                    eprintln!("warning: skipping an incomplete checkpoint: {reason}");
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
                config = config::from_value(&source, saved, &args.overrides)?;
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
            Some(path)
        }
    };
    config.run_dir = run_dir;
    let cwd = std::env::current_dir()
        .map_err(|e| Error::Failed(format!("cannot read the current folder: {e}")))?;
    config.resolve_paths(&cwd);
    Ok((config, resume_from))
}

/// The tokenizer and both datasets, checked against the checkpoint to resume.
fn load_data(
    config: &Config,
    resume_from: Option<&Path>,
    init_from: Option<&HfFolder>,
) -> Result<(TextTokenizer, Dataset, Dataset)> {
    let resumed = resume_from
        .map(|path| checkpoint::verify(path).map(|state| (path, state)))
        .transpose()?;
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
