//! The run-directory protocol's JSON Schemas (`protocol/schema/`),
//! generated from the serde types that read and write it. The schemas are
//! checked in for the programs that do not read Rust (the Python package's
//! tests validate every line it writes against them); the test here fails
//! when the types and the checked-in files drift apart.

use std::path::{Path, PathBuf};

use schemars::{JsonSchema, Schema, generate::SchemaSettings};

use crate::control::Request;
use crate::events::{Event, RankBeat, RunStatus, SCHEMA_VERSION};

/// One line of events.jsonl (and of a rank's own record, which adds
/// `rank`), as `rundir::RunDir::record` writes it.
#[derive(JsonSchema)]
#[allow(dead_code)] // described, never built
struct EventLine {
    /// Schema version of the line.
    #[schemars(range(min = 1, max = SCHEMA_VERSION))]
    v: u32,
    /// RFC 3339 time, UTC, milliseconds.
    time: String,
    #[serde(flatten)]
    event: Event,
    /// The rank that wrote the line, in `ranks/rank-N.jsonl` only.
    rank: Option<u32>,
}

fn schema_of<T: JsonSchema>(title: &str, description: &str) -> Schema {
    let mut schema = SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<T>();
    schema.insert("title".into(), title.into());
    schema.insert("description".into(), description.into());
    schema.insert(
        "$id".into(),
        format!("https://trainui/protocol/{SCHEMA_VERSION}/{title}").into(),
    );
    schema
}

/// Every schema of the protocol: its file name and contents.
fn schemas() -> Vec<(&'static str, Schema)> {
    vec![
        (
            "event.schema.json",
            schema_of::<EventLine>(
                "event",
                "One line of RUN_DIR/events.jsonl or RUN_DIR/ranks/rank-N.jsonl.",
            ),
        ),
        (
            "status.schema.json",
            schema_of::<RunStatus>(
                "status",
                "RUN_DIR/status/training_status.json, the fold of the events so far.",
            ),
        ),
        (
            "control.schema.json",
            schema_of::<Request>(
                "control",
                "One command file RUN_DIR/control/NAME.json (version 2).",
            ),
        ),
        (
            "rank.schema.json",
            schema_of::<RankBeat>(
                "rank",
                "RUN_DIR/ranks/rank-N.json, the heartbeat of one rank of a job.",
            ),
        ),
    ]
}

fn schema_dir() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join("protocol/schema")
}

#[test]
fn the_checked_in_schemas_match_the_types() {
    let bless = std::env::var_os("TRAINUI_BLESS").is_some();
    let mut drifted = Vec::new();
    for (name, schema) in schemas() {
        let path = schema_dir().join(name);
        let mut text = serde_json::to_string_pretty(&schema).expect("a schema serialises");
        text.push('\n');
        if bless {
            std::fs::create_dir_all(schema_dir()).expect("protocol/schema can be made");
            std::fs::write(&path, &text).expect("protocol/schema is writable");
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            drifted.push(path.display().to_string());
        }
    }
    assert!(
        drifted.is_empty(),
        "the protocol's types changed but these schemas did not: {drifted:?}; \
         if the change is deliberate, document it in protocol/README.md (a new \
         version if a field changed meaning) and run \
         `TRAINUI_BLESS=1 cargo test --release -p trainui-protocol schema` to rewrite them"
    );
}

#[test]
fn the_event_schema_tells_event_types_apart_and_bounds_the_version() {
    let schema = serde_json::to_value(&schemas()[0].1).expect("a schema serialises");
    // The schema names each event type once, and only those serde knows.
    let names: Vec<String> = schema["oneOf"]
        .as_array()
        .expect("one schema per event type")
        .iter()
        .map(|one| {
            one["properties"]["type"]["const"]
                .as_str()
                .unwrap_or("?")
                .to_owned()
        })
        .collect();
    for name in ["started", "step", "sample", "control", "finished", "failed"] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    let required = schema["required"].as_array().expect("v and time");
    assert!(required.contains(&"v".into()) && required.contains(&"time".into()));
    assert_eq!(schema["properties"]["v"]["maximum"], SCHEMA_VERSION);
}
