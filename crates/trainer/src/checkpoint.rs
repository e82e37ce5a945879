//! Checkpoints: `RUN_DIR/checkpoints/checkpoint-<step>/` with
//!
//! ```text
//! model.safetensors       weights
//! optimizer.safetensors   AdamW moments (`<param>.exp_avg`, `<param>.exp_avg_sq`)
//! trainer_state.json      step, optimizer steps, counters, elapsed time, config
//! manifest.json           written last: the files above and their sizes
//! ```
//!
//! A checkpoint is written into a hidden temporary folder and renamed into
//! place, so a crash mid-save never leaves a folder that looks complete; a
//! folder whose manifest is missing or disagrees with its files is skipped.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use trainui_protocol::config::{Config, ModelConfig};
use trainui_protocol::error::{Error, Result};
use trainui_protocol::events::GenerationCounters;

pub const MODEL_FILE: &str = "model.safetensors";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const STATE_FILE: &str = "trainer_state.json";
pub const MANIFEST_FILE: &str = "manifest.json";
const FORMAT: u32 = 1;
const PREFIX: &str = "checkpoint-";

/// Everything besides tensors that an exact resume needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    pub format: u32,
    /// Training steps completed; the data order and learning rate follow
    /// from it.
    pub step: u64,
    /// AdamW updates applied (fewer than `step` when updates of non-finite
    /// steps were skipped; absent in older checkpoints, where they are equal).
    #[serde(default)]
    pub optimizer_steps: Option<u64>,
    pub evals: u64,
    pub counters: GenerationCounters,
    #[serde(default, with = "trainui_protocol::events::float_or_text::option")]
    pub last_loss: Option<f64>,
    pub elapsed_secs: f64,
    pub vocab_size: u32,
    pub config: Config,
    /// The model's family and sizes (absent in checkpoints of trainui's
    /// first format: a GPT-2 of `config.model`'s sizes).
    #[serde(default)]
    pub architecture: Option<crate::hf::Architecture>,
    /// End-of-text id of the tokenizer saved beside the weights.
    #[serde(default)]
    pub eot_id: Option<u32>,
    /// The weights were trained in bfloat16 (a bf16 model folder on CUDA);
    /// a resumed run on CUDA stays in bfloat16.
    #[serde(default)]
    pub bf16: bool,
    /// Steps whose loss or gradient norm was not finite (skipped or warned).
    #[serde(default)]
    pub nonfinite_steps: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    step: u64,
    /// File name to size in bytes.
    files: BTreeMap<String, u64>,
}

/// Largest manifest or trainer state read (a few kilobytes in practice).
const STATE_LIMIT: u64 = 1 << 20;

/// Folder of the checkpoints of a run.
#[must_use]
pub fn checkpoints_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints")
}

/// Writes a checkpoint: `write_tensors` fills the temporary folder with the
/// tensor files, then the state and the manifest follow and the folder is
/// renamed into place, replacing any folder of the same step. Returns the
/// final path. A failed save removes what it wrote.
pub fn save(
    run_dir: &Path,
    state: &TrainerState,
    write_tensors: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    let dir = checkpoints_dir(run_dir);
    let target = dir.join(format!("{PREFIX}{}", state.step));
    let temp = dir.join(format!(
        ".{PREFIX}{}.tmp-{}",
        state.step,
        std::process::id()
    ));
    if temp.exists() {
        fs::remove_dir_all(&temp).map_err(Error::io("cannot remove", &temp))?;
    }
    fs::create_dir_all(&temp).map_err(Error::io("cannot create", &temp))?;
    let written = write_into(&temp, state, write_tensors);
    if written.is_err() {
        // A failed save leaves nothing behind to fill the disk further.
        let _ = fs::remove_dir_all(&temp);
    }
    written?;
    if let Err(err) = place(&dir, &temp, &target) {
        let _ = fs::remove_dir_all(&temp);
        return Err(err);
    }
    Ok(target)
}

/// The tensors, the state and, last, the manifest, into `temp`.
fn write_into(
    temp: &Path,
    state: &TrainerState,
    write_tensors: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    write_tensors(temp)?;
    let state_json = serde_json::to_vec_pretty(state).expect("trainer state serialises");
    let state_path = temp.join(STATE_FILE);
    fs::write(&state_path, state_json).map_err(Error::io("cannot write", &state_path))?;

    let mut files = BTreeMap::new();
    for name in [MODEL_FILE, OPTIMIZER_FILE, STATE_FILE] {
        let path = temp.join(name);
        let size = File::open(&path)
            .and_then(|file| {
                file.sync_all()?;
                file.metadata()
            })
            .map_err(Error::io("cannot sync", &path))?
            .len();
        files.insert(name.to_owned(), size);
    }
    let manifest = Manifest {
        format: FORMAT,
        step: state.step,
        files,
    };
    let manifest_path = temp.join(MANIFEST_FILE);
    fs::write(
        &manifest_path,
        serde_json::to_vec_pretty(&manifest).expect("manifest serialises"),
    )
    .map_err(Error::io("cannot write", &manifest_path))?;
    File::open(&manifest_path)
        .and_then(|f| f.sync_all())
        .map_err(Error::io("cannot sync", &manifest_path))
}

/// Renames the finished `temp` folder to `target`. A folder already there
/// (left by a crash, or by an earlier run that went past this step) is
/// replaced: moved aside, the new one renamed in, then removed; a crash in
/// between leaves it aside, and [`remove_unfinished`] puts it back.
fn place(dir: &Path, temp: &Path, target: &Path) -> Result<()> {
    let replaced = target.exists().then(|| {
        let name = target.file_name().unwrap_or_default().to_string_lossy();
        dir.join(format!(".{name}.replaced-{}", std::process::id()))
    });
    if let Some(aside) = &replaced {
        fs::rename(target, aside).map_err(Error::io("cannot move aside", target))?;
    }
    if let Err(err) = fs::rename(temp, target) {
        if let Some(aside) = &replaced {
            let _ = fs::rename(aside, target);
        }
        return Err(Error::io("cannot rename into place", temp)(err));
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("cannot sync", dir))?;
    if let Some(aside) = &replaced {
        // The new checkpoint is in place; what is left aside now goes at the
        // next start, if not now.
        let _ = fs::remove_dir_all(aside);
    }
    Ok(())
}

/// Clears what a process that died while saving left in the checkpoints
/// folder: unfinished (hidden, temporary) folders are removed, and a
/// checkpoint moved aside to be replaced goes back where it was when its
/// replacement never arrived. Only for the process that holds the run's
/// lock, so that no save is under way.
pub fn remove_unfinished(run_dir: &Path) {
    let dir = checkpoints_dir(run_dir);
    let Ok(entries) = fs::read_dir(&dir) else {
        return;
    };
    for entry in entries.filter_map(std::result::Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(hidden) = name.strip_prefix('.').filter(|n| n.starts_with(PREFIX)) else {
            continue;
        };
        let path = entry.path();
        if let Some((original, _)) = hidden.split_once(".replaced-") {
            let target = dir.join(original);
            if !target.exists() && fs::rename(&path, &target).is_ok() {
                continue;
            }
        }
        let _ = fs::remove_dir_all(&path);
    }
}

/// Checks that a checkpoint folder is complete and returns its state. A
/// folder that is not is an [`Error::Input`]: the user named it, or it is
/// skipped.
pub fn verify(path: &Path) -> Result<TrainerState> {
    verified(path).map_err(Error::Input)
}

fn verified(path: &Path) -> std::result::Result<TrainerState, String> {
    // The manifest and the state are small; anything else in their place
    // (a FIFO, a device, a huge file) is named, not read.
    let read = |name: &str| {
        trainui_protocol::runfile::read(&path.join(name), STATE_LIMIT)
            .map_err(|err| err.at(&path.join(name)))
    };
    let manifest: Manifest = serde_json::from_slice(&read(MANIFEST_FILE)?)
        .map_err(|err| format!("{}: unreadable manifest: {err}", path.display()))?;
    if manifest.format != FORMAT {
        return Err(format!(
            "{}: checkpoint format {} is not {FORMAT}",
            path.display(),
            manifest.format
        ));
    }
    for (name, size) in &manifest.files {
        let file = path.join(name);
        let meta = fs::metadata(&file).map_err(|err| format!("{}: {err}", file.display()))?;
        if !meta.is_file() {
            return Err(format!(
                "{}: not a regular file; a checkpoint holds files only",
                file.display()
            ));
        }
        let actual = meta.len();
        if actual != *size {
            return Err(format!(
                "{}: {actual} bytes where the manifest says {size}: incomplete",
                path.join(name).display()
            ));
        }
    }
    for name in [MODEL_FILE, OPTIMIZER_FILE, STATE_FILE] {
        if !manifest.files.contains_key(name) {
            return Err(format!("{}: the manifest lacks {name}", path.display()));
        }
    }
    serde_json::from_slice(&read(STATE_FILE)?).map_err(|err| {
        format!(
            "{}: unreadable trainer state: {err}",
            path.join(STATE_FILE).display()
        )
    })
}

/// Checkpoint folders of a run, newest first, with their steps.
fn listed(run_dir: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = fs::read_dir(checkpoints_dir(run_dir)) else {
        return Vec::new();
    };
    let mut found: Vec<(u64, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name();
            let step = name.to_str()?.strip_prefix(PREFIX)?.parse().ok()?;
            Some((step, entry.path()))
        })
        .collect();
    found.sort_by_key(|(step, _)| std::cmp::Reverse(*step));
    found
}

/// The complete checkpoints of a run past `step`, oldest first.
#[must_use]
pub fn newer_than(run_dir: &Path, step: u64) -> Vec<PathBuf> {
    let mut newer: Vec<PathBuf> = listed(run_dir)
        .into_iter()
        .filter(|(s, path)| *s > step && verified(path).is_ok())
        .map(|(_, path)| path)
        .collect();
    newer.reverse();
    newer
}

/// The newest complete checkpoint, and the reasons newer ones were skipped.
#[must_use]
pub fn latest(run_dir: &Path) -> (Option<PathBuf>, Vec<String>) {
    let mut skipped = Vec::new();
    for (_, path) in listed(run_dir) {
        match verified(&path) {
            Ok(_) => return (Some(path), skipped),
            Err(reason) => skipped.push(reason),
        }
    }
    (None, skipped)
}

/// Removes the oldest complete checkpoints beyond `keep` (0 keeps all), and
/// incomplete ones older than the newest complete one. Returns what was
/// removed (for tests; the trainer needs no answer).
#[allow(clippy::must_use_candidate)]
pub fn prune(run_dir: &Path, keep: u32) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let mut complete = 0u32;
    for (_, path) in listed(run_dir) {
        let is_complete = verified(&path).is_ok();
        let drop = if is_complete {
            complete += 1;
            keep > 0 && complete > keep
        } else {
            complete > 0
        };
        if drop && fs::remove_dir_all(&path).is_ok() {
            removed.push(path);
        }
    }
    removed
}

/// Differences between the model sections of a checkpoint and a config.
#[must_use]
pub fn shape_mismatch(saved: &ModelConfig, wanted: &ModelConfig) -> Vec<String> {
    let pairs = [
        ("n_layer", saved.n_layer, wanted.n_layer),
        ("n_head", saved.n_head, wanted.n_head),
        ("n_embd", saved.n_embd, wanted.n_embd),
        ("block_size", saved.block_size, wanted.block_size),
    ];
    pairs
        .iter()
        .filter(|(_, a, b)| a != b)
        .map(|(key, a, b)| format!("model.{key} is {a} in the checkpoint but {b} in the config"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(step: u64) -> TrainerState {
        TrainerState {
            format: FORMAT,
            step,
            evals: 0,
            counters: GenerationCounters::default(),
            last_loss: None,
            elapsed_secs: 0.0,
            vocab_size: 10,
            config: Config::default(),
            architecture: None,
            eot_id: None,
            bf16: false,
            nonfinite_steps: 0,
            optimizer_steps: Some(step),
        }
    }

    fn fake_tensors(dir: &Path) -> Result<()> {
        fs::write(dir.join(MODEL_FILE), b"weights").map_err(Error::io("cannot write", dir))?;
        fs::write(dir.join(OPTIMIZER_FILE), b"moments").map_err(Error::io("cannot write", dir))
    }

    #[test]
    fn save_verify_and_latest() {
        let run = tempfile::tempdir().unwrap();
        let first = save(run.path(), &state(10), fake_tensors).unwrap();
        let second = save(run.path(), &state(20), fake_tensors).unwrap();
        assert_eq!(verify(&first).unwrap().step, 10);
        assert_eq!(latest(run.path()).0, Some(second));
    }

    #[test]
    fn a_save_replaces_a_folder_of_the_same_step_and_a_crash_in_between_is_undone() {
        let run = tempfile::tempdir().unwrap();
        let first = save(run.path(), &state(10), fake_tensors).unwrap();
        let again = save(run.path(), &state(10), |dir| {
            fs::write(dir.join(MODEL_FILE), b"other weights").unwrap();
            fs::write(dir.join(OPTIMIZER_FILE), b"other moments").unwrap();
            Ok(())
        })
        .unwrap();
        assert_eq!(first, again);
        assert_eq!(fs::read(again.join(MODEL_FILE)).unwrap(), b"other weights");
        assert!(verify(&again).is_ok());
        let hidden = fs::read_dir(checkpoints_dir(run.path()))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with('.')
            })
            .count();
        assert_eq!(hidden, 0, "nothing left aside");

        // A crash after moving the old folder aside: it goes back.
        let aside = checkpoints_dir(run.path()).join(".checkpoint-10.replaced-4242");
        fs::rename(&again, &aside).unwrap();
        let temp = checkpoints_dir(run.path()).join(".checkpoint-12.tmp-4242");
        fs::create_dir(&temp).unwrap();
        remove_unfinished(run.path());
        assert!(verify(&again).is_ok(), "moved back");
        assert!(!aside.exists() && !temp.exists());
    }

    #[test]
    fn a_failed_save_leaves_no_complete_looking_folder() {
        let run = tempfile::tempdir().unwrap();
        let good = save(run.path(), &state(10), fake_tensors).unwrap();
        let failed = save(run.path(), &state(20), |_| {
            Err(Error::Failed("disk full".into()))
        });
        assert_eq!(failed.unwrap_err().to_string(), "disk full");
        assert!(!checkpoints_dir(run.path()).join("checkpoint-20").exists());
        assert_eq!(latest(run.path()).0, Some(good));
    }

    #[test]
    fn broken_checkpoints_are_skipped_with_a_reason() {
        let run = tempfile::tempdir().unwrap();
        let good = save(run.path(), &state(10), fake_tensors).unwrap();
        let truncated = save(run.path(), &state(20), fake_tensors).unwrap();
        fs::write(truncated.join(MODEL_FILE), b"wei").unwrap();
        let no_manifest = save(run.path(), &state(30), fake_tensors).unwrap();
        fs::remove_file(no_manifest.join(MANIFEST_FILE)).unwrap();
        let (found, skipped) = latest(run.path());
        assert_eq!(found, Some(good));
        assert_eq!(skipped.len(), 2);
        assert!(skipped[0].contains("checkpoint-30"), "{skipped:?}");
        assert!(skipped[1].contains("incomplete"), "{skipped:?}");
    }

    #[test]
    fn pruning_keeps_the_newest() {
        let run = tempfile::tempdir().unwrap();
        for step in [10, 20, 30, 40] {
            save(run.path(), &state(step), fake_tensors).unwrap();
        }
        let broken_old = checkpoints_dir(run.path()).join("checkpoint-5");
        fs::create_dir_all(&broken_old).unwrap();
        let removed = prune(run.path(), 2);
        assert_eq!(removed.len(), 3, "{removed:?}");
        let left: Vec<u64> = listed(run.path()).iter().map(|(step, _)| *step).collect();
        assert_eq!(left, [40, 30]);
        assert!(prune(run.path(), 0).is_empty(), "0 keeps all");
    }

    #[test]
    fn shape_differences_are_named() {
        let saved = ModelConfig::default();
        let wanted = ModelConfig {
            n_layer: saved.n_layer + 1,
            ..saved.clone()
        };
        assert_eq!(
            shape_mismatch(&saved, &wanted),
            [format!(
                "model.n_layer is {} in the checkpoint but {} in the config",
                saved.n_layer,
                saved.n_layer + 1
            )]
        );
    }
}
