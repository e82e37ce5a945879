//! Settings that change while a run goes on: the live settings of a config,
//! the keys they are, and a checked change of them.

use std::collections::BTreeMap;

use serde_json::Value;

use super::keys::{differing_keys, leaf_keys, lookup};
use super::load::build;
use super::types::Config;
use crate::error::{Error, Result};
use crate::events::LiveSettings;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
