//! The golden cases of protocol/cases/: what both producers of a run
//! directory (this crate, and the Python package in python/) must say for
//! the same input: the status file an event stream folds to, the log lines
//! an event prints, the answer to a command file, the outcome of a live
//! settings change. The inputs are written by hand; the expected outputs
//! are this crate's own answers, written by
//!
//! ```text
//! TRAINUI_BLESS=1 cargo test --release -p trainui-protocol --test conformance
//! ```
//!
//! after a deliberate change (never by hand), and checked here and by
//! python/tests/test_conformance.py. The same run writes
//! python/trainui/live_settings.json, the live settings' defaults, kinds
//! and bounds, which the Python package reads instead of copies of its own:
//! the bounds are found by probing the config's own checks, so a bound
//! changed in `config::validate` (or a type changed in `LiveSettings`)
//! fails here until the table is blessed again.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::ser::Formatter;
use serde_json::value::RawValue;

use trainui_protocol::channel::Wiring;
use trainui_protocol::config::{self, Config, Seconds};
use trainui_protocol::control::{SPOOL_DIR, Spool, unix_now};
use trainui_protocol::events::{Event, LiveSettings, Phase, RunStatus};
use trainui_protocol::lines::{self, Style};

const BLESS: &str = "TRAINUI_BLESS=1 cargo test --release -p trainui-protocol --test conformance";

fn blessing() -> bool {
    std::env::var_os("TRAINUI_BLESS").is_some()
}

fn repository() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).to_path_buf()
}

fn cases_dir() -> PathBuf {
    repository().join("protocol/cases")
}

/// `value` as the checked-in files lay JSON out: indented two spaces a
/// level down to `flat_from` levels deep, each value deeper on one line
/// (`{"a": 1, "b": [2, 3]}`), ending with a newline, and plain ASCII
/// (anything else inside a string as a `\uXXXX` escape, which reads back
/// as the same text): no file of cases holds a control or bidirectional
/// character as it is.
fn render<T: Serialize>(value: &T, flat_from: usize) -> String {
    let mut bytes = Vec::new();
    let layout = Layout {
        depth: 0,
        flat_from,
        has_value: false,
    };
    let mut serializer = serde_json::Serializer::with_formatter(&mut bytes, layout);
    value.serialize(&mut serializer).expect("cases serialise");
    let text = String::from_utf8(bytes).expect("serde_json writes UTF-8");
    let mut out = String::with_capacity(text.len() + 1);
    for c in text.chars() {
        if c.is_ascii() && c != '\u{7f}' {
            out.push(c);
        } else {
            for unit in c.encode_utf16(&mut [0; 2]) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        }
    }
    out.push('\n');
    out
}

/// serde_json's pretty layout down to `flat_from` levels, flat below.
struct Layout {
    depth: usize,
    flat_from: usize,
    has_value: bool,
}

impl Layout {
    fn flat(&self) -> bool {
        self.depth >= self.flat_from
    }

    fn begin<W: ?Sized + io::Write>(&mut self, writer: &mut W, open: &[u8]) -> io::Result<()> {
        self.depth += 1;
        self.has_value = false;
        writer.write_all(open)
    }

    fn end<W: ?Sized + io::Write>(&mut self, writer: &mut W, close: &[u8]) -> io::Result<()> {
        let flat = self.flat();
        self.depth -= 1;
        if self.has_value && !flat {
            writer.write_all(b"\n")?;
            writer.write_all(&b"  ".repeat(self.depth))?;
        }
        writer.write_all(close)
    }

    fn item<W: ?Sized + io::Write>(&mut self, writer: &mut W, first: bool) -> io::Result<()> {
        if self.flat() {
            return writer.write_all(if first { b"" } else { b", " });
        }
        writer.write_all(if first { b"\n" } else { b",\n" })?;
        writer.write_all(&b"  ".repeat(self.depth))
    }
}

impl Formatter for Layout {
    fn begin_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.begin(writer, b"[")
    }

    fn end_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.end(writer, b"]")
    }

    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.item(writer, first)
    }

    fn end_array_value<W: ?Sized + io::Write>(&mut self, _writer: &mut W) -> io::Result<()> {
        self.has_value = true;
        Ok(())
    }

    fn begin_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.begin(writer, b"{")
    }

    fn end_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.end(writer, b"}")
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.item(writer, first)
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }

    fn end_object_value<W: ?Sized + io::Write>(&mut self, _writer: &mut W) -> io::Result<()> {
        self.has_value = true;
        Ok(())
    }
}

/// Case files: a case's fields one a line, and an expected output's
/// fields too; deeper values (a status's settings, a control answer's
/// events) on one line each.
const CASES_FLAT_FROM: usize = 5;
/// The live settings' table: a key a line.
const TABLE_FLAT_FROM: usize = 3;

/// Reads a checked-in JSON file, failing with its name.
fn read<T: DeserializeOwned>(path: &Path) -> T {
    let text = fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("{}: cannot read: {err}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// Writes a blessed file, only when its contents change.
fn write(path: &Path, text: &str) {
    if fs::read_to_string(path).ok().as_deref() != Some(text) {
        fs::write(path, text)
            .unwrap_or_else(|err| panic!("{}: cannot write: {err}", path.display()));
    }
}

/// A file of cases: what it holds, and the cases.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile<C> {
    about: String,
    cases: Vec<C>,
}

/// One golden case: a hand-written input and the expected output.
trait Case: Serialize + DeserializeOwned + Sync {
    fn name(&self) -> &str;
    /// The expected output as the file holds it (`None` until blessed).
    fn expected(&mut self) -> &mut Option<Value>;
    /// What this crate answers for the input.
    fn answer(&self) -> Value;
}

/// Checks every case of `file` against this crate's answers, or, when
/// blessing, writes the answers in.
fn check_cases<C: Case>(file: &str) {
    let path = cases_dir().join(file);
    let mut cases: CaseFile<C> = read(&path);
    let mut names = std::collections::HashSet::new();
    for case in &cases.cases {
        assert!(
            names.insert(case.name()),
            "{file}: two cases named {:?}",
            case.name()
        );
    }
    // All cases at once: a control case waits for its spool's thread.
    let answers: Vec<Value> = std::thread::scope(|scope| {
        let running: Vec<_> = cases
            .cases
            .iter()
            .map(|case| scope.spawn(|| case.answer()))
            .collect();
        running
            .into_iter()
            .map(|answer| answer.join().expect("a case is answered"))
            .collect()
    });
    let mut problems = Vec::new();
    for (case, answer) in cases.cases.iter_mut().zip(answers) {
        let name = case.name().to_owned();
        let expected = case.expected();
        match expected {
            _ if blessing() => *expected = Some(answer),
            None => problems.push(format!("case {name:?} has no expected output yet")),
            Some(expected) if *expected != answer => problems.push(format!(
                "case {name:?}:\n    the file says {expected}\n    Rust now says {answer}"
            )),
            Some(_) => {}
        }
    }
    if blessing() {
        write(&path, &render(&cases, CASES_FLAT_FROM));
    }
    assert!(
        problems.is_empty(),
        "protocol/cases/{file}: {} case(s) differ from what the Rust producer says:\n  {}\n\
         The expected side is Rust's answer, never edited by hand. If Rust's change is \
         deliberate, run `{BLESS}`, review the diff, and make the Python package say the \
         same (python/tests/test_conformance.py); otherwise fix the Rust code.",
        problems.len(),
        problems.join("\n  ")
    );
}

// ---------------------------------------------------------------------------
// Events in, the status file out

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusCase {
    name: String,
    why: String,
    run_name: String,
    max_steps: u64,
    pid: u32,
    events: Box<RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<Value>,
}

/// Fields of the status file that are not the fold's: when it was written,
/// and the machine's GPUs as last read.
const NOT_FOLDED: [&str; 2] = ["updated_at", "gpus"];

impl Case for StatusCase {
    fn name(&self) -> &str {
        &self.name
    }

    fn expected(&mut self) -> &mut Option<Value> {
        &mut self.status
    }

    fn answer(&self) -> Value {
        let events: Vec<Event> = serde_json::from_str(self.events.get())
            .unwrap_or_else(|err| panic!("case {:?}: an event is not one: {err}", self.name));
        let mut status = RunStatus::new(self.run_name.clone(), self.max_steps);
        status.pid = self.pid;
        for event in &events {
            status.apply(event);
        }
        let mut json = serde_json::to_value(&status).expect("a status serialises");
        let fields = json.as_object_mut().expect("a status is an object");
        for field in NOT_FOLDED {
            fields.remove(field);
        }
        json
    }
}

#[test]
fn events_fold_to_the_status_file_as_the_cases_say() {
    check_cases::<StatusCase>("status.json");
}

// ---------------------------------------------------------------------------
// Events in, log lines out

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LinesCase {
    name: String,
    why: String,
    event: Box<RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lines: Option<Value>,
}

impl Case for LinesCase {
    fn name(&self) -> &str {
        &self.name
    }

    fn expected(&mut self) -> &mut Option<Value> {
        &mut self.lines
    }

    fn answer(&self) -> Value {
        let event: Event = serde_json::from_str(self.event.get())
            .unwrap_or_else(|err| panic!("case {:?}: not an event: {err}", self.name));
        let lines: Vec<String> = lines::format(&event, Style::PLAIN)
            .map(|line| line.text.split('\n').map(str::to_owned).collect())
            .unwrap_or_default();
        lines.into()
    }
}

#[test]
fn events_print_the_log_lines_the_cases_say() {
    check_cases::<LinesCase>("lines.json");
}

// ---------------------------------------------------------------------------
// A command file in, the job's answer out

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ControlCase {
    name: String,
    why: String,
    file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    entry: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    written_secs_ago: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pad_to_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<Value>,
}

/// A spool entry that sorts after every case's file (its first byte is
/// above ASCII) and is refused by name: its answer says the spool has
/// answered the case's file.
const LAST_ENTRY: &str = "\u{fffd}last";

impl ControlCase {
    /// The contents of the case's file.
    fn contents(&self) -> String {
        let mut text = match (&self.text, &self.request) {
            (Some(text), None) => text.clone(),
            (None, Some(request)) => {
                let mut request: Value = serde_json::from_str(request.get())
                    .unwrap_or_else(|err| panic!("case {:?}: {err}", self.name));
                let fields = request
                    .as_object_mut()
                    .unwrap_or_else(|| panic!("case {:?}: a request is an object", self.name));
                if !fields.contains_key("created_unix") {
                    let created = unix_now() - self.written_secs_ago.unwrap_or(0.0);
                    fields.insert("created_unix".into(), created.into());
                }
                request.to_string()
            }
            (None, None) => String::new(),
            (Some(_), Some(_)) => panic!("case {:?}: text or request, not both", self.name),
        };
        if let Some(size) = self.pad_to_bytes {
            while text.len() < size {
                text.push(' ');
            }
        }
        text
    }
}

impl Case for ControlCase {
    fn name(&self) -> &str {
        &self.name
    }

    fn expected(&mut self) -> &mut Option<Value> {
        &mut self.outcome
    }

    fn answer(&self) -> Value {
        let run_dir = tempfile::tempdir().expect("a temporary run directory");
        let spool = run_dir.path().join(SPOOL_DIR);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&spool)
            .expect("a control folder");
        let path = spool.join(&self.file);
        match self.entry.as_deref() {
            None => fs::write(&path, self.contents()).expect("a command file"),
            Some("folder") => fs::create_dir(&path).expect("a folder"),
            Some("link") => {
                let target = run_dir.path().join("target.json");
                fs::write(&target, self.contents()).expect("a command file");
                std::os::unix::fs::symlink(&target, &path).expect("a link");
            }
            Some(other) => panic!("case {:?}: no entry of kind {other:?}", self.name),
        }
        fs::write(spool.join(LAST_ENTRY), "").expect("the last entry");

        let wiring = Wiring::default();
        let heartbeat = Arc::clone(&wiring.heartbeat);
        let job = Spool {
            run_dir: run_dir.path().to_owned(),
            controller: wiring.controller.clone(),
            events: wiring.event_sender(),
            heartbeat: Arc::clone(&heartbeat),
            config: Config::default(),
        };
        let (trainer, events) = wiring.split();
        drop(trainer.events); // the stream ends with the spool
        job.spawn().expect("the spool serves");
        let mut answers = Vec::new();
        loop {
            let event = events
                .recv_timeout(Duration::from_mins(1))
                .expect("the spool answers its files");
            if matches!(&event, Event::Control { id, .. } if id == LAST_ENTRY) {
                break;
            }
            answers.push(serde_json::to_value(&event).expect("an event serialises"));
        }
        heartbeat.beat(Phase::Done); // the spool stops, and its ends close
        let delivered: Vec<Value> = trainer
            .commands
            .iter()
            .map(|command| serde_json::to_value(command).expect("a command serialises"))
            .collect();
        serde_json::json!({"events": answers, "delivered": delivered})
    }
}

#[test]
fn command_files_are_answered_as_the_cases_say() {
    check_cases::<ControlCase>("control.json");
}

// ---------------------------------------------------------------------------
// A live settings change in, the settings or the refusal out

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsCase {
    name: String,
    why: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    start: Option<Box<RawValue>>,
    changes: Box<RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<Value>,
}

fn changes_of(name: &str, raw: &RawValue) -> BTreeMap<String, Value> {
    serde_json::from_str(raw.get())
        .unwrap_or_else(|err| panic!("case {name:?}: changes are an object: {err}"))
}

impl Case for SettingsCase {
    fn name(&self) -> &str {
        &self.name
    }

    fn expected(&mut self) -> &mut Option<Value> {
        &mut self.outcome
    }

    fn answer(&self) -> Value {
        let mut config = Config::default();
        if let Some(start) = &self.start {
            config = config::change_live(&config, &changes_of(&self.name, start), "start")
                .unwrap_or_else(|err| panic!("case {:?}: its start is refused: {err}", self.name))
                .0;
        }
        match config::change_live(&config, &changes_of(&self.name, &self.changes), "set") {
            Ok((result, applied)) => serde_json::json!({
                "settings": config::live_settings(&result),
                "applied": applied,
            }),
            Err(err) => serde_json::json!({"error": err.to_string()}),
        }
    }
}

#[test]
fn live_settings_change_as_the_cases_say() {
    check_cases::<SettingsCase>("settings.json");
}

// ---------------------------------------------------------------------------
// The live settings' table: python/trainui/live_settings.json

/// The table the Python package builds its live settings from.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LiveTable {
    about: String,
    /// The range a number of seconds (`config::Seconds`) takes as a type.
    seconds: Bounds,
    /// Every live key, in the order of `config::live_keys`.
    settings: Vec<LiveKey>,
    /// The keys whose range `config::validate` checks beyond what their
    /// type takes, in the order it checks them: of several changes out of
    /// range, the first in this order is the one refused (after any value
    /// of the wrong type, refused first, in key order).
    check_order: Vec<String>,
}

/// One live key: its kind (`u64`, `u32`, `f64`, `seconds`), its default,
/// and the values the config's types and checks take.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct LiveKey {
    key: String,
    kind: String,
    default: Value,
    #[serde(flatten)]
    bounds: Bounds,
}

/// A range: inclusive `min`/`max`, or exclusive `above`/`below`; no bound
/// on a side that takes every number.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct Bounds {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    min: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    above: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    below: Option<Value>,
}

/// Whether a run with the default config takes `key` set to `value`.
fn takes(key: &str, value: Value) -> bool {
    config::change_live(
        &Config::default(),
        &BTreeMap::from([(key.to_owned(), value)]),
        "probe",
    )
    .is_ok()
}

/// `json` with the dotted `key` set to `value`.
fn with(json: &Value, key: &str, value: Value) -> Value {
    let mut json = json.clone();
    let mut node = &mut json;
    for part in key.split('.') {
        node = &mut node[part];
    }
    *node = value;
    json
}

/// The two neighbours where `ok` turns: `ok(refused)` is false and
/// `ok(taken)` true, found by bisection between them (`ok` changes its
/// answer once between them).
fn edge(mut refused: u64, mut taken: u64, ok: impl Fn(u64) -> bool) -> (u64, u64) {
    while refused.abs_diff(taken) > 1 {
        let middle = refused.midpoint(taken);
        if ok(middle) {
            taken = middle;
        } else {
            refused = middle;
        }
    }
    (refused, taken)
}

/// f64s in their order as u64s (that of `f64::total_cmp`), and back (0
/// for -0).
fn float_key(x: f64) -> u64 {
    let bits = x.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | 1 << 63
    }
}

fn key_float(key: u64) -> f64 {
    let bits = if key >> 63 == 1 {
        key & !(1 << 63)
    } else {
        !key
    };
    let x = f64::from_bits(bits);
    if x == 0.0 { 0.0 } else { x }
}

/// The bound between a refused number and the taken one beside it: the
/// rounder of the two (fewer significant digits), inclusive when it is the
/// taken one. `(inclusive, bound)`.
fn rounder(refused: f64, taken: f64) -> (bool, f64) {
    let digits = |x: f64| format!("{x:e}").len();
    if digits(taken) <= digits(refused) {
        (true, taken)
    } else {
        (false, refused)
    }
}

/// The range of numbers `ok` takes, around `inside` (which it takes).
fn float_bounds(inside: f64, ok: impl Fn(f64) -> bool) -> Bounds {
    let ok_key = |key: u64| ok(key_float(key));
    let mut bounds = Bounds::default();
    if !ok(-f64::MAX) {
        let (refused, taken) = edge(float_key(-f64::MAX), float_key(inside), ok_key);
        match rounder(key_float(refused), key_float(taken)) {
            (true, min) => bounds.min = Some(min.into()),
            (false, above) => bounds.above = Some(above.into()),
        }
    }
    if !ok(f64::MAX) {
        let (refused, taken) = edge(float_key(f64::MAX), float_key(inside), ok_key);
        match rounder(key_float(refused), key_float(taken)) {
            (true, max) => bounds.max = Some(max.into()),
            (false, below) => bounds.below = Some(below.into()),
        }
    }
    bounds
}

/// The range of whole numbers `key` takes, up to `largest`, around `inside`.
fn whole_bounds(key: &str, inside: u64, largest: u64) -> Bounds {
    let ok = |value: u64| takes(key, value.into());
    let min = if ok(0) { 0 } else { edge(0, inside, ok).1 };
    let max = if ok(largest) {
        largest
    } else {
        edge(largest, inside, ok).1
    };
    Bounds {
        min: Some(min.into()),
        max: Some(max.into()),
        ..Bounds::default()
    }
}

/// The values just outside the bounds of `live`.
fn outside(live: &LiveKey) -> Vec<Value> {
    let bounds = &live.bounds;
    let whole = |bound: &Option<Value>| bound.as_ref().and_then(Value::as_u64);
    let float = |bound: &Option<Value>| bound.as_ref().and_then(Value::as_f64);
    if live.kind == "u64" || live.kind == "u32" {
        let below = whole(&bounds.min).and_then(|min| min.checked_sub(1));
        let beyond = whole(&bounds.max).and_then(|max| max.checked_add(1));
        return [below, beyond]
            .into_iter()
            .flatten()
            .map(Value::from)
            .collect();
    }
    [
        float(&bounds.min).map(f64::next_down),
        float(&bounds.above),
        float(&bounds.max).map(f64::next_up),
        float(&bounds.below),
    ]
    .into_iter()
    .flatten()
    .map(Value::from)
    .collect()
}

/// The live keys whose range `config::validate` checks (a value outside it
/// passes the config's types), each with such a value, in the order
/// `validate` checks them: found by changing two at a time and seeing which
/// one is refused.
fn check_order(settings: &[LiveKey]) -> Vec<String> {
    let config = serde_json::to_value(Config::default()).expect("the config serialises");
    let mut checked: Vec<(String, Value)> = settings
        .iter()
        .filter_map(|live| {
            outside(live)
                .into_iter()
                .find(|value| {
                    serde_json::from_value::<Config>(with(&config, &live.key, value.clone()))
                        .is_ok()
                })
                .map(|value| (live.key.clone(), value))
        })
        .collect();
    let refused_first = |a: &(String, Value), b: &(String, Value)| {
        let changes = BTreeMap::from([a.clone(), b.clone()]);
        let err = config::change_live(&Config::default(), &changes, "probe")
            .expect_err("two values out of range are refused");
        err.to_string().starts_with(&format!("probe {}=", a.0))
    };
    // Insertion sort: each key goes before the first that is checked after it.
    let mut order: Vec<(String, Value)> = Vec::new();
    for key in checked.drain(..) {
        let at = order
            .iter()
            .position(|placed| refused_first(&key, placed))
            .unwrap_or(order.len());
        order.insert(at, key);
    }
    order.into_iter().map(|(key, _)| key).collect()
}

/// The table as the Rust config says it: defaults from `Config::default`,
/// kinds from the types of `LiveSettings` and `Config`, bounds by probing
/// `config::change_live` (types and `validate` together).
fn live_table() -> LiveTable {
    let defaults = serde_json::to_value(config::live_settings(&Config::default()))
        .expect("the live settings serialise");
    let config = serde_json::to_value(Config::default()).expect("the config serialises");
    let settings: Vec<LiveKey> = config::live_keys()
        .into_iter()
        .map(|key| {
            let default = config::lookup(&defaults, &key)
                .expect("a live key has a default")
                .clone();
            let (kind, bounds) = if let Some(inside) = default.as_u64() {
                // A u32 field refuses 2^32 whatever the checks say.
                let wide = serde_json::from_value::<LiveSettings>(with(
                    &defaults,
                    &key,
                    (u64::from(u32::MAX) + 1).into(),
                ))
                .is_ok();
                let (kind, largest) = if wide {
                    ("u64", u64::MAX)
                } else {
                    ("u32", u64::from(u32::MAX))
                };
                (kind, whole_bounds(&key, inside, largest))
            } else {
                let inside = default.as_f64().expect("a live setting is a number");
                // A number of seconds refuses 0 as a type, before any check.
                let seconds =
                    serde_json::from_value::<Config>(with(&config, &key, 0.0.into())).is_err();
                let kind = if seconds { "seconds" } else { "f64" };
                (kind, float_bounds(inside, |x| takes(&key, x.into())))
            };
            LiveKey {
                key,
                kind: kind.to_owned(),
                default,
                bounds,
            }
        })
        .collect();
    LiveTable {
        about: format!(
            "The live settings (those `trainui ctl RUN_DIR set` changes): each key's kind, \
             default, and the values trainui's config takes (min/max inclusive, above/below \
             exclusive). Generated from the Rust config by \
             crates/protocol/tests/conformance.rs, never edited by hand: `{BLESS}`. Read by \
             python/trainui/live_settings.py."
        ),
        seconds: float_bounds(1.0, |x| Seconds::try_from(x).is_ok()),
        check_order: check_order(&settings),
        settings,
    }
}

fn live_table_path() -> PathBuf {
    repository().join("python/trainui/live_settings.json")
}

#[test]
fn the_python_packages_live_settings_table_is_the_rust_configs() {
    let table = live_table();
    let path = live_table_path();
    if blessing() {
        write(&path, &render(&table, TABLE_FLAT_FROM));
        return;
    }
    let written: LiveTable = read(&path);
    let (written, table) = (
        render(&written, TABLE_FLAT_FROM),
        render(&table, TABLE_FLAT_FROM),
    );
    // The table's layout has a key a line: the lines that differ say what.
    let only_in = |these: &str, those: &str| {
        let mut lines = String::new();
        for line in these.lines() {
            if !those.lines().any(|other| other == line) {
                let _ = write!(lines, "\n    {}", line.trim());
            }
        }
        lines
    };
    assert!(
        written == table,
        "python/trainui/live_settings.json differs from what the Rust config says (its \
         defaults, kinds, bounds or checks changed in crates/protocol/src/config/ or \
         events.rs):\n  the file says:{}\n  Rust now says:{}\nIf the change is deliberate, run \
         `{BLESS}` and review the diff: the Python package reads its live settings from that \
         file.",
        only_in(&written, &table),
        only_in(&table, &written),
    );
}

#[test]
fn the_table_names_every_live_key_and_the_bounds_found_hold_at_their_edges() {
    let table = live_table();
    let keys: Vec<&str> = table.settings.iter().map(|k| k.key.as_str()).collect();
    assert_eq!(keys, config::live_keys());
    assert_eq!(table.seconds.above, Some(0.0.into()));
    assert_eq!(table.seconds.max, Some(Seconds::MAX.into()));
    for live in &table.settings {
        let key = live.key.as_str();
        let bounds = &live.bounds;
        assert!(takes(key, live.default.clone()), "{key} takes its default");
        for taken in [&bounds.min, &bounds.max].into_iter().flatten() {
            assert!(takes(key, taken.clone()), "{key} takes {taken}");
        }
        for refused in [&bounds.above, &bounds.below].into_iter().flatten() {
            assert!(!takes(key, refused.clone()), "{key} refuses {refused}");
        }
        if let (Some(min), Some(max)) = (
            bounds.min.as_ref().and_then(Value::as_u64),
            bounds.max.as_ref().and_then(Value::as_u64),
        ) {
            if let Some(below) = min.checked_sub(1) {
                assert!(!takes(key, below.into()), "{key} refuses {below}");
            }
            if let Some(beyond) = max.checked_add(1) {
                assert!(!takes(key, beyond.into()), "{key} refuses {beyond}");
            }
            continue;
        }
        for refused in outside(live) {
            assert!(!takes(key, refused.clone()), "{key} refuses {refused}");
        }
    }
}

// ---------------------------------------------------------------------------
// Logging windows in, the ETA of each `step` event out

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EtaCase {
    name: String,
    why: String,
    max_steps: u64,
    /// Each window: `[last step, seconds of training]`.
    windows: Vec<(u64, f64)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eta_secs: Option<Value>,
}

impl Case for EtaCase {
    fn name(&self) -> &str {
        &self.name
    }

    fn expected(&mut self) -> &mut Option<Value> {
        &mut self.eta_secs
    }

    fn answer(&self) -> Value {
        let mut estimate = trainui_protocol::eta::EtaEstimate::new();
        let mut previous = 0;
        let etas: Vec<f64> = self
            .windows
            .iter()
            .map(|&(step, secs)| {
                estimate.window(step - previous, secs);
                previous = step;
                estimate.eta_secs(self.max_steps.saturating_sub(step))
            })
            .collect();
        serde_json::to_value(etas).expect("numbers serialise")
    }
}

#[test]
fn logging_windows_give_the_etas_the_cases_say() {
    check_cases::<EtaCase>("eta.json");
}
