//! Which settings differ among runs: the pure part of `trainui diff`,
//! shared by `runs` (its columns), `diff` and the compare view.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use crate::run_filter::{self, Column};

/// The last parts of keys that only say where or under which name a run
/// is written (trainui's `run_dir`; a Trainer's `output_dir`,
/// `logging_dir`, `run_name`): they differ between any two runs, and the
/// run's name and path say it already, so they are not counted as
/// differing (`--all` shows them).
pub const NAMES_THE_RUN: [&str; 4] = ["run_dir", "output_dir", "logging_dir", "run_name"];

/// One run's settings, by the names `--where` takes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    /// The producer details ([`Column::DETAILS`]), from its status file
    /// (`None` without one).
    pub details: Option<BTreeMap<String, Value>>,
    /// Its config.json's keys (`None` without one).
    pub config: Option<BTreeMap<String, Value>>,
}

/// A key and each run's value of it (`None`: the run lacks it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyDiff {
    pub key: String,
    pub values: Vec<Option<Value>>,
}

/// The keys whose values differ among `runs`: config keys in name order,
/// then the producer details (in [`Column::DETAILS`] order). A key
/// differs when two runs that have its source (a status file for the
/// details, a config.json for the config keys) disagree on it, or one
/// lacks it; a run without the source has no say. Keys that name the run
/// ([`NAMES_THE_RUN`]) are left out.
#[must_use]
pub fn differing(runs: &[Settings]) -> Vec<KeyDiff> {
    keys(runs, false)
}

/// Every key of `runs`, the same ones too, in the order of [`differing`].
#[must_use]
pub fn every_key(runs: &[Settings]) -> Vec<KeyDiff> {
    keys(runs, true)
}

fn keys(runs: &[Settings], all: bool) -> Vec<KeyDiff> {
    type Part = fn(&Settings) -> Option<&BTreeMap<String, Value>>;
    fn details(settings: &Settings) -> Option<&BTreeMap<String, Value>> {
        settings.details.as_ref()
    }
    fn config(settings: &Settings) -> Option<&BTreeMap<String, Value>> {
        settings.config.as_ref()
    }
    let mut out = Vec::new();
    let detail_names: Vec<String> = Column::DETAILS
        .iter()
        .map(|column| column.name().to_owned())
        .collect();
    let config_names: BTreeSet<&String> = runs
        .iter()
        .filter_map(config)
        .flat_map(BTreeMap::keys)
        .collect();
    let parts: [(Part, Vec<String>); 2] = [
        (config, config_names.into_iter().cloned().collect()),
        (details, detail_names),
    ];
    for (part, names) in parts {
        let having: Vec<&BTreeMap<String, Value>> = runs.iter().filter_map(part).collect();
        for key in names {
            let differs =
                having
                    .windows(2)
                    .any(|pair| match (pair[0].get(&key), pair[1].get(&key)) {
                        (Some(a), Some(b)) => !run_filter::same(a, b),
                        (a, b) => a.is_some() != b.is_some(),
                    });
            let present = having.iter().any(|values| values.contains_key(&key));
            if present && (all || (differs && !names_the_run(&key))) {
                let values = runs
                    .iter()
                    .map(|settings| part(settings).and_then(|values| values.get(&key)).cloned())
                    .collect();
                out.push(KeyDiff { key, values });
            }
        }
    }
    out
}

fn names_the_run(key: &str) -> bool {
    NAMES_THE_RUN.contains(&key.rsplit('.').next().unwrap_or(key))
}
