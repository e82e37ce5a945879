//! A config as JSON, by dotted key (`eval.eval_steps`): looking a key up,
//! writing one, listing them, and comparing two configs.

use serde_json::{Map, Value};

/// Dotted keys whose values differ between two configs (as JSON).
#[must_use]
pub fn differing_keys(before: &Value, after: &Value, prefix: &str) -> Vec<String> {
    match (before, after) {
        (Value::Object(a), Value::Object(b)) => a
            .iter()
            .flat_map(|(key, value)| {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                differing_keys(value, b.get(key).unwrap_or(&Value::Null), &path)
            })
            .collect(),
        (a, b) if a == b => Vec::new(),
        _ => vec![prefix.to_owned()],
    }
}

/// The value of a dotted key.
#[must_use]
pub fn lookup<'a>(value: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted
        .split('.')
        .try_fold(value, |node, part| node.get(part))
}

/// Writes `new` at a dotted key, making the objects on the way.
pub(super) fn insert(value: &mut Value, dotted: &str, new: Value) {
    let mut node = value;
    let mut parts = dotted.split('.').peekable();
    while let Some(part) = parts.next() {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        let Value::Object(map) = node else {
            unreachable!("made an object just above")
        };
        if parts.peek().is_none() {
            map.insert(part.to_owned(), new);
            return;
        }
        node = map
            .entry(part.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
    }
}

/// Every leaf key of the defaults, dotted.
pub(super) fn leaf_keys(value: &Value, prefix: &str, out: &mut Vec<String>) {
    if let Value::Object(map) = value {
        for (key, child) in map {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            if child.is_object() {
                leaf_keys(child, &path, out);
            }
            out.push(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differing_keys_are_dotted() {
        let a = serde_json::json!({"eval": {"eval_steps": 1, "samples": 2}, "seed": 3});
        let b = serde_json::json!({"eval": {"eval_steps": 5, "samples": 2}, "seed": 4});
        assert_eq!(differing_keys(&a, &b, ""), ["eval.eval_steps", "seed"]);
    }
}
