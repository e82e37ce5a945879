//! What differs between runs: their config.json keys (by dotted path) and
//! the producer details of their status files (framework, device, world
//! size). `trainui diff RUN_A RUN_B [RUN...]` prints the keys whose values
//! differ (`--all`: every key), `runs` gives them columns of their own,
//! and [`differing_keys`] gives them to anything else that compares runs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::cli::DiffArgs;
use crate::run_filter;
use crate::run_list;
use trainui_protocol::error::{Error, Result};
use trainui_protocol::process;
use trainui_protocol::text;

pub use crate::differing::{KeyDiff, NAMES_THE_RUN, Settings, differing, every_key};

/// The settings of the run in `run_dir`: its config.json (which it must
/// have) and the producer details of its status file (if it has one).
pub fn read_settings(run_dir: &Path) -> Result<Settings> {
    if !run_dir.is_dir() {
        return Err(Error::Usage(format!(
            "{}: no such run directory",
            run_dir.display()
        )));
    }
    match run_list::read_config(run_dir) {
        Err(why) => Err(Error::Usage(format!(
            "{why} (diff compares runs' config.json)"
        ))),
        Ok(None) => Err(Error::Usage(format!(
            "{}: no config.json, so nothing to compare; diff compares the config.json of runs \
             (trainui train writes one; a Python job when it passes config= to trainui.Run)",
            run_dir.display()
        ))),
        Ok(Some(_)) => Ok(run_list::entry(run_dir).settings()),
    }
}

/// The keys whose values differ among the runs in `run_dirs` (as
/// [`differing`]), each run's value in the order of `run_dirs`. Every run
/// must have a config.json; where some may not (runs that have not
/// started), `differing` over `run_list::entry(dir).settings()` of each
/// counts those that have one and never fails.
pub fn differing_keys(run_dirs: &[PathBuf]) -> Result<Vec<KeyDiff>> {
    let settings = run_dirs
        .iter()
        .map(|dir| read_settings(dir))
        .collect::<Result<Vec<_>>>()?;
    Ok(differing(&settings))
}

/// One run of `diff --json`.
#[derive(Serialize)]
struct RunValues {
    name: String,
    path: PathBuf,
    /// Its values of the keys listed; a key it lacks is left out.
    values: BTreeMap<String, Value>,
}

/// `diff --json`: the keys in order, and each run's values of them.
#[derive(Serialize)]
struct Report {
    keys: Vec<String>,
    runs: Vec<RunValues>,
}

/// The runs' names as headers: their folders' names, or their paths when
/// two share a name.
fn names(run_dirs: &[PathBuf]) -> Vec<String> {
    let folder = |dir: &PathBuf| {
        dir.file_name().map_or_else(
            || dir.display().to_string(),
            |name| name.to_string_lossy().into_owned(),
        )
    };
    let folders: Vec<String> = run_dirs.iter().map(folder).collect();
    folders
        .iter()
        .zip(run_dirs)
        .map(|(name, dir)| {
            if folders.iter().filter(|other| *other == name).count() > 1 {
                dir.display().to_string()
            } else {
                name.clone()
            }
        })
        .collect()
}

/// The table of `diff`: a row per key, a column per run (`-`: the run
/// lacks the key). Within `width` characters the runs' columns are cut
/// alike (never below 12 characters); keys are never cut.
#[must_use]
pub fn table(names: &[String], keys: &[KeyDiff], width: Option<usize>) -> String {
    let header: Vec<String> = std::iter::once("key".to_owned())
        .chain(names.iter().map(|name| text::escape(name).into_owned()))
        .collect();
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|key| {
            std::iter::once(text::escape(&key.key).into_owned())
                .chain(key.values.iter().map(|value| {
                    value.as_ref().map_or_else(
                        || "-".to_owned(),
                        |value| text::escape(&run_filter::text_of(value)).into_owned(),
                    )
                }))
                .collect()
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|cell| cell.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    if let Some(width) = width {
        let total: usize = widths.iter().map(|w| w + 2).sum();
        if total > width && !names.is_empty() {
            let room = width.saturating_sub(widths[0] + 2) / names.len();
            let most = room.saturating_sub(2).max(12);
            for w in &mut widths[1..] {
                *w = (*w).min(most);
            }
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (cell, &width) in row.iter().zip(&widths) {
            let cell = if cell.chars().count() > width {
                let head: String = cell.chars().take(width.saturating_sub(1)).collect();
                format!("{head}…")
            } else {
                cell.clone()
            };
            let _ = write!(line, "{cell:<width$}  ");
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

/// `trainui diff`: the keys that differ among the runs (or every key), as
/// a table or JSON.
pub fn run(args: &DiffArgs) -> Result<()> {
    let settings = args
        .runs
        .iter()
        .map(|dir| read_settings(dir))
        .collect::<Result<Vec<_>>>()?;
    let keys = if args.all {
        every_key(&settings)
    } else {
        differing(&settings)
    };
    let names = names(&args.runs);
    if args.json {
        let report = Report {
            keys: keys.iter().map(|key| key.key.clone()).collect(),
            runs: names
                .iter()
                .zip(&args.runs)
                .enumerate()
                .map(|(index, (name, path))| RunValues {
                    name: name.clone(),
                    path: path.clone(),
                    values: keys
                        .iter()
                        .filter_map(|key| Some((key.key.clone(), key.values[index].clone()?)))
                        .collect(),
                })
                .collect(),
        };
        let json = serde_json::to_string_pretty(&report).expect("the report serialises");
        process::print(format!("{}\n", text::json_safe(json)));
    } else if keys.is_empty() {
        process::print(format!(
            "the {} runs have the same config and producer details (--all lists every key)\n",
            args.runs.len()
        ));
    } else {
        process::print(table(&names, &keys, run_list::terminal_width()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(details: Option<Value>, config: Option<Value>) -> Settings {
        Settings {
            details: details.map(|details| run_filter::flatten_config(&details)),
            config: config.map(|config| {
                run_filter::flatten_config(&config)
                    .into_iter()
                    .map(|(path, value)| (run_filter::config_key_name(&path), value))
                    .collect()
            }),
        }
    }

    fn keys(diffs: &[KeyDiff]) -> Vec<&str> {
        diffs.iter().map(|d| d.key.as_str()).collect()
    }

    #[test]
    fn only_keys_that_differ_among_runs_that_have_them_count() {
        let trainui = json!({"framework": "trainui", "device": "cpu", "world_size": 1});
        let runs = [
            settings(
                Some(trainui.clone()),
                Some(json!({"run_dir": "runs/a", "device": "auto", "seed": 1,
                            "train": {"learning_rate": 0.001, "max_steps": 100}})),
            ),
            settings(
                Some(json!({"framework": "trainui", "device": "cuda:0", "world_size": 1})),
                Some(json!({"run_dir": "runs/b", "device": "auto", "seed": 1.0,
                            "train": {"learning_rate": 0.0003, "max_steps": 100, "warmup": 5}})),
            ),
            // Neither a status nor a config: no say in either.
            settings(None, None),
        ];
        let diffs = differing(&runs);
        assert_eq!(
            keys(&diffs),
            ["train.learning_rate", "train.warmup", "device"]
        );
        assert_eq!(
            diffs[0].values,
            [Some(json!(0.001)), Some(json!(0.0003)), None]
        );
        assert_eq!(diffs[1].values, [None, Some(json!(5)), None]);
        let all = every_key(&runs);
        assert_eq!(
            keys(&all),
            [
                "config.device",
                "run_dir",
                "seed",
                "train.learning_rate",
                "train.max_steps",
                "train.warmup",
                "framework",
                "device",
                "world_size",
            ]
        );
        // One run alone differs from nothing.
        assert!(differing(&runs[..1]).is_empty());
    }

    #[test]
    fn keys_that_name_the_run_are_not_counted_as_differing() {
        let runs = [
            settings(
                None,
                Some(
                    json!({"trainer": {"output_dir": "a", "run_name": "a", "logging_dir": "a/l"}}),
                ),
            ),
            settings(
                None,
                Some(
                    json!({"trainer": {"output_dir": "b", "run_name": "b", "logging_dir": "b/l"}}),
                ),
            ),
        ];
        assert!(differing(&runs).is_empty());
        assert_eq!(every_key(&runs).len(), 3);
    }

    #[test]
    fn the_table_has_a_column_per_run_and_escapes_what_runs_wrote() {
        let runs = [
            settings(None, Some(json!({"note": "a\u{1b}[31m", "lr": 0.001}))),
            settings(None, Some(json!({"lr": 0.0003}))),
        ];
        let names = ["lr-1e-3".to_owned(), "lr-3e-4".to_owned()];
        let got = table(&names, &differing(&runs), None);
        assert_eq!(
            got,
            "key   lr-1e-3    lr-3e-4\n\
             lr    0.001      0.0003\n\
             note  a\\x1b[31m  -\n"
        );
        // On a narrow terminal the runs' columns are cut alike.
        let long = [
            settings(None, Some(json!({"path": "x".repeat(60)}))),
            settings(None, Some(json!({"path": "y".repeat(60)}))),
        ];
        let got = table(&names, &differing(&long), Some(50));
        for line in got.lines() {
            assert!(line.chars().count() <= 50, "{line}");
        }
        assert!(got.contains("xxxx…"), "{got}");
    }

    #[test]
    fn runs_of_one_name_go_by_their_paths() {
        let dirs = ["a/exp", "b/exp", "c/other"].map(PathBuf::from);
        assert_eq!(names(&dirs), ["a/exp", "b/exp", "other"]);
    }
}
