//! Reading a config: a JSON file (the user's, or one saved in a run
//! directory or a checkpoint), `--set KEY=VALUE` overrides, and messages
//! that name the source, the dotted key and the fix (the nearest valid key
//! for an unknown one).

use std::fmt;
use std::path::Path;

use serde_json::{Map, Value};

use super::keys::{insert, leaf_keys, lookup};
use super::types::{Config, GivenKeys};
use crate::error::{Error, Result};

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
pub(super) fn build(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DevicePref, Seconds};

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
        let path =
            Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join("config/default.json");
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
