//! `trainui query RUN`: a run's history as rows for scripts, notebooks and
//! agents, as JSON Lines or CSV on stdout. The rows are its step events
//! (the default), its finished evaluations (`--evals`) or its samples
//! (`--samples`), bounded by step; the columns are picked by name from one
//! table per kind of row, which is also what the help and the error for an
//! unknown field list.
//!
//! The history is the one the TUI and `plot` show: a resumed run's steps
//! after the checkpoint it resumed from are replaced by the resumed ones.
//! events.jsonl is read in large pieces by the run directory's own reader
//! (step lines straight into their metrics, on two threads), and a line
//! still being written is left for later.
//!
//! Text from the run (prompts, outputs, messages) is data: JSON keeps it
//! exact, with every control and bidirectional character as a `\uXXXX`
//! escape; CSV keeps one row a line, the text escaped as trainui shows it
//! (`\n`, `\x1b`) and quoted as RFC 4180 says when it holds a comma or a
//! quote.

use std::io::{self, BufWriter, Write};
use std::path::Path;

use trainui_protocol::error::{Error, Result};
use trainui_protocol::events::{
    EvalSummary, Event, GenerationOutcome, SCHEMA_VERSION, SampleResult, StepMetrics,
};
use trainui_protocol::rundir::{self, EventTail};
use trainui_protocol::{process, text};

/// Bytes of events.jsonl read at a time.
const CHUNK: u64 = 16 << 20;

/// What rows a query prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One row per step event.
    Steps,
    /// One row per finished evaluation.
    Evals,
    /// One row per sample generation.
    Samples,
}

/// How rows are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON Lines: one object a line, its keys in column order.
    Json,
    /// CSV with a header line.
    Csv,
}

/// What `trainui query` was asked for.
#[derive(Debug, Clone)]
pub struct Query {
    pub kind: Kind,
    pub format: Format,
    /// Field names as given (empty: every field of the kind).
    pub fields: Vec<String>,
    /// First step kept (inclusive).
    pub from: Option<u64>,
    /// Last step kept (inclusive).
    pub to: Option<u64>,
    /// Only steps that are multiples of this.
    pub every: Option<u64>,
}

impl Query {
    /// Whether a row of `step` is kept.
    fn keeps(&self, step: u64) -> bool {
        self.from.is_none_or(|from| step >= from)
            && self.to.is_none_or(|to| step <= to)
            && self.every.is_none_or(|every| step.is_multiple_of(every))
    }
}

/// One value of a row.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cell<'a> {
    Int(u64),
    /// Written as a number, or as `NaN`, `inf`, `-inf` (in JSON as those
    /// texts, as events.jsonl writes them).
    Float(f64),
    Bool(bool),
    Text(&'a str),
    /// Not known: empty in CSV, `null` in JSON.
    Missing,
}

fn float(value: Option<f64>) -> Cell<'static> {
    value.map_or(Cell::Missing, Cell::Float)
}

/// A column: its name and where its value comes from in a row.
struct Column<R> {
    name: &'static str,
    cell: for<'a> fn(&'a R) -> Cell<'a>,
}

/// Names that may stand for a field in `--fields`.
const ALIASES: &[(&str, &str)] = &[("lr", "learning_rate")];

/// The columns of step rows: every field of a step event, the most read
/// first.
const STEP_COLUMNS: &[Column<StepMetrics>] = &[
    Column {
        name: "step",
        cell: |m| Cell::Int(m.step),
    },
    Column {
        name: "loss",
        cell: |m| Cell::Float(m.loss),
    },
    Column {
        name: "learning_rate",
        cell: |m| Cell::Float(m.learning_rate),
    },
    Column {
        name: "grad_norm",
        cell: |m| float(m.grad_norm),
    },
    Column {
        name: "tokens_seen",
        cell: |m| m.tokens_seen.map_or(Cell::Missing, Cell::Int),
    },
    Column {
        name: "tokens_per_sec",
        cell: |m| Cell::Float(m.tokens_per_sec),
    },
    Column {
        name: "elapsed_secs",
        cell: |m| Cell::Float(m.elapsed_secs),
    },
    Column {
        name: "eta_secs",
        cell: |m| Cell::Float(m.eta_secs),
    },
    Column {
        name: "max_steps",
        cell: |m| Cell::Int(m.max_steps),
    },
];

/// A finished evaluation: its `eval_finished` event, with the
/// `val_loss` event of the same evaluation when there was one.
#[derive(Debug, Clone)]
struct EvalRow {
    summary: EvalSummary,
    /// Batches scored and whether scoring ran into its deadline.
    val: Option<(u32, bool)>,
}

/// The columns of evaluation rows. The generation counters are the run's
/// totals after the evaluation, as its event carries them.
const EVAL_COLUMNS: &[Column<EvalRow>] = &[
    Column {
        name: "step",
        cell: |e| Cell::Int(e.summary.step),
    },
    Column {
        name: "eval",
        cell: |e| Cell::Int(e.summary.eval),
    },
    Column {
        name: "val_loss",
        cell: |e| float(e.summary.val_loss),
    },
    Column {
        name: "train_loss",
        cell: |e| float(e.summary.train_loss),
    },
    Column {
        name: "gap",
        cell: |e| float(e.summary.gap),
    },
    Column {
        name: "val_batches",
        cell: |e| e.val.map_or(Cell::Missing, |(b, _)| Cell::Int(b.into())),
    },
    Column {
        name: "val_timed_out",
        cell: |e| e.val.map_or(Cell::Missing, |(_, t)| Cell::Bool(t)),
    },
    Column {
        name: "samples",
        cell: |e| Cell::Int(e.summary.samples.into()),
    },
    Column {
        name: "matches",
        cell: |e| Cell::Int(e.summary.matches.into()),
    },
    Column {
        name: "exact_match",
        cell: |e| Cell::Float(e.summary.exact_match),
    },
    Column {
        name: "generations",
        cell: |e| Cell::Int(e.summary.counters.generations),
    },
    Column {
        name: "completed",
        cell: |e| Cell::Int(e.summary.counters.completed),
    },
    Column {
        name: "timed_out",
        cell: |e| Cell::Int(e.summary.counters.timed_out),
    },
    Column {
        name: "aborted",
        cell: |e| Cell::Int(e.summary.counters.aborted),
    },
    Column {
        name: "errors",
        cell: |e| Cell::Int(e.summary.counters.errors),
    },
    Column {
        name: "timeout_rate",
        cell: |e| Cell::Float(e.summary.counters.timeout_rate()),
    },
];

/// The columns of sample rows: what was asked, what came out, and how.
const SAMPLE_COLUMNS: &[Column<SampleResult>] = &[
    Column {
        name: "step",
        cell: |s| Cell::Int(s.step),
    },
    Column {
        name: "sample",
        cell: |s| Cell::Int(s.sample.into()),
    },
    Column {
        name: "of",
        cell: |s| Cell::Int(s.of.into()),
    },
    Column {
        name: "example",
        cell: |s| Cell::Int(s.example),
    },
    Column {
        name: "origin",
        cell: |s| Cell::Text(&s.origin),
    },
    Column {
        name: "prompt",
        cell: |s| Cell::Text(&s.prompt),
    },
    Column {
        name: "golden",
        cell: |s| Cell::Text(&s.golden),
    },
    Column {
        name: "output",
        cell: |s| Cell::Text(&s.output),
    },
    Column {
        name: "outcome",
        cell: |s| {
            Cell::Text(match s.outcome {
                GenerationOutcome::Completed => "completed",
                GenerationOutcome::TimedOut => "timed_out",
                GenerationOutcome::Aborted => "aborted",
                GenerationOutcome::Error { .. } => "error",
            })
        },
    },
    Column {
        name: "error",
        cell: |s| match &s.outcome {
            GenerationOutcome::Error { message } => Cell::Text(message),
            _ => Cell::Missing,
        },
    },
    Column {
        name: "exact_match",
        cell: |s| Cell::Bool(s.exact_match),
    },
    Column {
        name: "loss",
        cell: |s| float(s.loss),
    },
    Column {
        name: "golden_tokens",
        cell: |s| Cell::Int(s.golden_tokens),
    },
    Column {
        name: "output_tokens",
        cell: |s| Cell::Int(s.output_tokens),
    },
    Column {
        name: "elapsed_secs",
        cell: |s| Cell::Float(s.elapsed_secs),
    },
    Column {
        name: "tokens_per_sec",
        cell: |s| Cell::Float(s.tokens_per_sec),
    },
    Column {
        name: "timeout_secs",
        cell: |s| Cell::Float(s.timeout_secs),
    },
];

fn names<R>(table: &[Column<R>]) -> Vec<&'static str> {
    table.iter().map(|c| c.name).collect()
}

/// The fields of each kind of row, for the help.
#[must_use]
pub fn fields_help() -> String {
    let aliases: Vec<String> = ALIASES
        .iter()
        .map(|(alias, name)| format!("{alias} = {name}"))
        .collect();
    format!(
        "Fields (--fields):\n  steps:     {}\n  --evals:   {}\n  --samples: {}\n  ({})",
        names(STEP_COLUMNS).join(", "),
        names(EVAL_COLUMNS).join(", "),
        names(SAMPLE_COLUMNS).join(", "),
        aliases.join(", ")
    )
}

impl Kind {
    fn what(self) -> &'static str {
        match self {
            Self::Steps => "step rows",
            Self::Evals => "--evals",
            Self::Samples => "--samples",
        }
    }
}

/// The columns `fields` names in `table`, `step` first and each once;
/// every column when `fields` is empty. An unknown name is a usage error
/// that lists the known ones.
fn select<'t, R>(
    table: &'t [Column<R>],
    fields: &[String],
    kind: Kind,
) -> Result<Vec<&'t Column<R>>> {
    if fields.is_empty() {
        return Ok(table.iter().collect());
    }
    let find = |name: &str| table.iter().find(|c| c.name == name);
    let mut picked = vec![find("step").expect("every kind of row has a step")];
    for field in fields {
        let field = field.trim();
        if field.is_empty() {
            continue;
        }
        let name = ALIASES
            .iter()
            .find(|(alias, _)| *alias == field)
            .map_or(field, |(_, name)| *name);
        let Some(column) = find(name) else {
            return Err(Error::Usage(format!(
                "--fields: no field \"{}\" in {}; the fields are {}",
                text::escape(field),
                kind.what(),
                names(table).join(", ")
            )));
        };
        if !picked.iter().any(|c| c.name == column.name) {
            picked.push(column);
        }
    }
    Ok(picked)
}

/// The rows of one kind, as the run's history holds them.
#[derive(Default)]
struct History {
    steps: Vec<StepMetrics>,
    evals: Vec<EvalRow>,
    samples: Vec<SampleResult>,
}

impl History {
    /// A process started at `start_step`: what the history held after it
    /// was trained again (a resume from an earlier checkpoint) is gone.
    fn rewind(&mut self, start_step: u64) {
        self.steps.retain(|m| m.step <= start_step);
        self.evals.retain(|e| e.summary.step <= start_step);
        self.samples.retain(|s| s.step <= start_step);
    }
}

/// Reads the rows `query` asks for from `RUN_DIR/events.jsonl`.
fn read(run_dir: &Path, query: &Query) -> Result<History> {
    if let Some(missing) = rundir::missing_events(
        run_dir,
        "give a run directory (trainui query RUN_DIR --csv)",
    ) {
        return Err(missing);
    }
    let path = run_dir.join(rundir::EVENTS_FILE);
    let length = std::fs::metadata(&path).map_or(0, |m| m.len());
    let mut tail = EventTail::new(run_dir, 0);
    let mut history = History::default();
    // The val_loss event of the evaluation in progress.
    let mut val: Option<(u64, u32, bool)> = None;
    loop {
        let before = tail.offset();
        let events = tail.read_new(CHUNK);
        if let Some(problem) = tail.problem.take() {
            return Err(rundir::unreadable_events(&problem, "query"));
        }
        // A piece without a whole line is not the end of the file; a read
        // that moves no further is (a last line still being written waits
        // for its end, and is not a row yet).
        if events.is_empty() && (tail.offset() >= length || tail.offset() == before) {
            break;
        }
        for event in events {
            match event {
                Event::Started(info) => history.rewind(info.start_step),
                Event::Step(m) if query.kind == Kind::Steps && query.keeps(m.step) => {
                    history.steps.push(m);
                }
                Event::EvalStarted { .. } => val = None,
                Event::ValLoss {
                    step,
                    batches,
                    timed_out,
                    ..
                } => val = Some((step, batches, timed_out)),
                Event::EvalFinished(summary)
                    if query.kind == Kind::Evals && query.keeps(summary.step) =>
                {
                    let val = val
                        .take()
                        .filter(|(step, ..)| *step == summary.step)
                        .map(|(_, batches, timed_out)| (batches, timed_out));
                    history.evals.push(EvalRow { summary, val });
                }
                Event::Sample(sample)
                    if query.kind == Kind::Samples && query.keeps(sample.step) =>
                {
                    history.samples.push(sample);
                }
                _ => {}
            }
        }
    }
    tail.warn_skipped();
    if let Some(version) = tail.newer {
        process::say(format!(
            "warning: {}: lines of protocol {version}, newer than this trainui reads \
             ({SCHEMA_VERSION}), are left out: update trainui to read them",
            path.display()
        ));
    }
    Ok(history)
}

/// `trainui query RUN_DIR`: the rows `query` asks for, on stdout. A reader
/// that goes away (`| head`) ends it quietly.
pub fn run(run_dir: &Path, query: &Query) -> Result<()> {
    if let (Some(from), Some(to)) = (query.from, query.to)
        && from > to
    {
        return Err(Error::Usage(format!(
            "--from {from} is after --to {to}: no step is in between"
        )));
    }
    // Fields are checked before the history is read.
    let columns = Columns::pick(query)?;
    let history = read(run_dir, query)?;
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let written = write(&mut out, &columns, &history, query.format).and_then(|()| out.flush());
    match written {
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(Error::io("cannot write", Path::new("stdout"))),
    }
}

/// The columns picked for the kind of rows asked for.
enum Columns {
    Steps(Vec<&'static Column<StepMetrics>>),
    Evals(Vec<&'static Column<EvalRow>>),
    Samples(Vec<&'static Column<SampleResult>>),
}

impl Columns {
    fn pick(query: &Query) -> Result<Self> {
        Ok(match query.kind {
            Kind::Steps => Self::Steps(select(STEP_COLUMNS, &query.fields, query.kind)?),
            Kind::Evals => Self::Evals(select(EVAL_COLUMNS, &query.fields, query.kind)?),
            Kind::Samples => Self::Samples(select(SAMPLE_COLUMNS, &query.fields, query.kind)?),
        })
    }
}

fn write(
    out: &mut impl Write,
    columns: &Columns,
    history: &History,
    format: Format,
) -> io::Result<()> {
    match columns {
        Columns::Steps(columns) => write_rows(out, columns, &history.steps, format),
        Columns::Evals(columns) => write_rows(out, columns, &history.evals, format),
        Columns::Samples(columns) => write_rows(out, columns, &history.samples, format),
    }
}

/// `rows` in `format`, their `columns` in order (CSV with its header).
fn write_rows<R>(
    out: &mut impl Write,
    columns: &[&Column<R>],
    rows: &[R],
    format: Format,
) -> io::Result<()> {
    let mut line = Vec::with_capacity(256);
    if format == Format::Csv {
        let header: Vec<&str> = columns.iter().map(|c| c.name).collect();
        line.extend_from_slice(header.join(",").as_bytes());
        line.push(b'\n');
        out.write_all(&line)?;
    }
    for row in rows {
        line.clear();
        match format {
            Format::Csv => {
                for (i, column) in columns.iter().enumerate() {
                    if i > 0 {
                        line.push(b',');
                    }
                    csv_cell(&mut line, (column.cell)(row));
                }
            }
            Format::Json => {
                line.push(b'{');
                for (i, column) in columns.iter().enumerate() {
                    if i > 0 {
                        line.push(b',');
                    }
                    line.push(b'"');
                    line.extend_from_slice(column.name.as_bytes());
                    line.extend_from_slice(b"\":");
                    json_cell(&mut line, (column.cell)(row));
                }
                line.push(b'}');
            }
        }
        line.push(b'\n');
        out.write_all(&line)?;
    }
    Ok(())
}

/// A number as JSON writes it (the shortest text that reads back the same).
fn number(line: &mut Vec<u8>, value: impl serde::Serialize) {
    serde_json::to_writer(&mut *line, &value).expect("a number serialises");
}

fn csv_cell(line: &mut Vec<u8>, cell: Cell<'_>) {
    match cell {
        Cell::Int(value) => number(line, value),
        Cell::Float(value) if value.is_finite() => number(line, value),
        Cell::Float(value) => line.extend_from_slice(value.to_string().as_bytes()),
        Cell::Bool(value) => line.extend_from_slice(if value { b"true" } else { b"false" }),
        Cell::Text(value) => {
            // One row a line, nothing that could drive a terminal: control
            // characters written escaped, as trainui shows them.
            let shown = text::escape(value);
            if shown.contains([',', '"']) {
                line.push(b'"');
                line.extend_from_slice(shown.replace('"', "\"\"").as_bytes());
                line.push(b'"');
            } else {
                line.extend_from_slice(shown.as_bytes());
            }
        }
        Cell::Missing => {}
    }
}

fn json_cell(line: &mut Vec<u8>, cell: Cell<'_>) {
    match cell {
        Cell::Int(value) => number(line, value),
        Cell::Float(value) if value.is_finite() => number(line, value),
        // As events.jsonl writes a loss that is not a number.
        Cell::Float(value) => number(line, value.to_string()),
        Cell::Bool(value) => line.extend_from_slice(if value { b"true" } else { b"false" }),
        Cell::Text(value) => {
            let json = serde_json::to_string(value).expect("a string serialises");
            line.extend_from_slice(text::json_safe(json).as_bytes());
        }
        Cell::Missing => line.extend_from_slice(b"null"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;
    use trainui_protocol::events::examples;
    use trainui_protocol::events::{GenerationCounters, RunInfo};

    fn query(kind: Kind, fields: &[&str]) -> Query {
        Query {
            kind,
            format: Format::Csv,
            fields: fields.iter().map(|f| (*f).to_owned()).collect(),
            from: None,
            to: None,
            every: None,
        }
    }

    fn write_events(dir: &Path, events: &[Event], tail: &str) {
        let mut text = Vec::new();
        for event in events {
            text.extend(rundir::event_line(event, SystemTime::UNIX_EPOCH));
            text.push(b'\n');
        }
        text.extend_from_slice(tail.as_bytes());
        std::fs::write(dir.join(rundir::EVENTS_FILE), text).unwrap();
    }

    fn csv(query: &Query, history: &History) -> String {
        let mut out = Vec::new();
        write(
            &mut out,
            &Columns::pick(query).unwrap(),
            history,
            Format::Csv,
        )
        .unwrap();
        String::from_utf8(out).unwrap()
    }

    fn sample(step: u64, prompt: &str, outcome: GenerationOutcome) -> SampleResult {
        SampleResult {
            step,
            sample: 1,
            of: 2,
            example: 17,
            origin: "val.jsonl:18".into(),
            prompt: prompt.into(),
            golden: "85".into(),
            output: "85".into(),
            golden_tokens: 1,
            output_tokens: 1,
            exact_match: outcome == GenerationOutcome::Completed,
            outcome,
            loss: None,
            elapsed_secs: 0.5,
            tokens_per_sec: 2.0,
            timeout_secs: 60.0,
            counters: GenerationCounters::default(),
        }
    }

    fn summary(step: u64) -> EvalSummary {
        EvalSummary {
            step,
            eval: step / 10,
            val_loss: Some(1.5),
            train_loss: Some(1.25),
            gap: Some(0.25),
            samples: 4,
            matches: 3,
            exact_match: 0.75,
            counters: GenerationCounters {
                generations: 4,
                completed: 3,
                timed_out: 1,
                aborted: 0,
                errors: 0,
            },
        }
    }

    /// The keys of `value` serialised, less `skipped`.
    fn keys(value: impl serde::Serialize, skipped: &[&str]) -> Vec<String> {
        let serde_json::Value::Object(map) = serde_json::to_value(value).unwrap() else {
            panic!("not an object")
        };
        let mut keys: Vec<String> = map
            .keys()
            .filter(|k| !skipped.contains(&k.as_str()))
            .cloned()
            .collect();
        keys.sort();
        keys
    }

    fn sorted(names: Vec<&'static str>, skipped: &[&str]) -> Vec<String> {
        let mut names: Vec<String> = names
            .into_iter()
            .filter(|n| !skipped.contains(n))
            .map(str::to_owned)
            .collect();
        names.sort();
        names
    }

    #[test]
    fn every_field_of_the_events_is_a_column() {
        let Event::Step(mut metrics) = examples::step(3, 10, 1.0) else {
            unreachable!()
        };
        metrics.grad_norm = Some(1.0);
        metrics.tokens_seen = Some(4096);
        assert_eq!(keys(&metrics, &[]), sorted(names(STEP_COLUMNS), &[]));
        // A sample's outcome is two columns: its kind and an error's message.
        let sample = sample(3, "p", GenerationOutcome::Completed);
        assert_eq!(
            keys(&sample, &["counters"]),
            sorted(names(SAMPLE_COLUMNS), &["error"])
        );
        // An evaluation's counters are columns of their own, with the
        // batches and deadline of its validation loss.
        let mut eval_keys = keys(summary(10), &["counters"]);
        eval_keys.extend(keys(GenerationCounters::default(), &[]));
        eval_keys.sort();
        assert_eq!(
            eval_keys,
            sorted(
                names(EVAL_COLUMNS),
                &["val_batches", "val_timed_out", "timeout_rate"]
            )
        );
    }

    #[test]
    fn fields_pick_and_order_the_columns_step_first_each_once() {
        let picked = select(
            STEP_COLUMNS,
            &["lr".into(), "loss".into(), "step".into(), "loss".into()],
            Kind::Steps,
        )
        .unwrap();
        let picked: Vec<&str> = picked.iter().map(|c| c.name).collect();
        assert_eq!(picked, ["step", "learning_rate", "loss"]);
        let all = select(STEP_COLUMNS, &[], Kind::Steps).unwrap();
        assert_eq!(all.len(), STEP_COLUMNS.len());
        let Err(Error::Usage(message)) = select(
            SAMPLE_COLUMNS,
            &["prompt".into(), "los\x1bs".into()],
            Kind::Samples,
        ) else {
            panic!("an unknown field is a usage error")
        };
        assert!(message.contains(r#""los\x1bs""#), "{message}");
        assert!(message.contains("--samples"), "{message}");
        assert!(
            message.contains(&names(SAMPLE_COLUMNS).join(", ")),
            "{message}"
        );
    }

    #[test]
    fn csv_text_is_quoted_and_escaped_on_one_line() {
        let mut line = Vec::new();
        csv_cell(&mut line, Cell::Text("2,3 \"x\"\nnext\x1b[2J\u{202e}"));
        assert_eq!(
            String::from_utf8(line).unwrap(),
            r#""2,3 ""x""\nnext\x1b[2J\u{202e}""#
        );
        let cell = |cell| {
            let mut line = Vec::new();
            csv_cell(&mut line, cell);
            String::from_utf8(line).unwrap()
        };
        assert_eq!(cell(Cell::Text("plain")), "plain");
        assert_eq!(cell(Cell::Float(f64::NAN)), "NaN");
        assert_eq!(cell(Cell::Float(f64::NEG_INFINITY)), "-inf");
        assert_eq!(cell(Cell::Float(3e-4)), "0.0003");
        assert_eq!(cell(Cell::Int(12)), "12");
        assert_eq!(cell(Cell::Missing), "");
    }

    #[test]
    fn json_text_reads_back_exact_and_holds_no_raw_control_character() {
        let hostile = "a\x1b]0;t\x07\u{9b}\u{202e}\x7f\r\n\"z";
        let mut line = Vec::new();
        json_cell(&mut line, Cell::Text(hostile));
        let json = String::from_utf8(line).unwrap();
        assert!(!json.chars().any(text::is_unsafe), "{json}");
        assert_eq!(serde_json::from_str::<String>(&json).unwrap(), hostile);
        let cell = |cell| {
            let mut line = Vec::new();
            json_cell(&mut line, cell);
            String::from_utf8(line).unwrap()
        };
        assert_eq!(cell(Cell::Float(f64::INFINITY)), r#""inf""#);
        assert_eq!(cell(Cell::Missing), "null");
        assert_eq!(cell(Cell::Bool(true)), "true");
    }

    #[test]
    fn a_resumed_run_keeps_the_history_it_trained_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut events = vec![examples::started("r", 8)];
        events.extend((1..=6).map(|s| examples::step(s, 8, 1.0)));
        events.push(Event::EvalFinished(summary(2)));
        events.push(Event::EvalFinished(summary(6)));
        events.push(Event::Started(Box::new(RunInfo {
            start_step: 4,
            ..RunInfo::new("r", 8)
        })));
        events.extend((5..=8).map(|s| examples::step(s, 8, 2.0)));
        write_events(dir.path(), &events, "");
        let steps = query(Kind::Steps, &["loss"]);
        let history = read(dir.path(), &steps).unwrap();
        assert_eq!(
            csv(&steps, &history),
            "step,loss\n1,1.0\n2,1.0\n3,1.0\n4,1.0\n5,2.0\n6,2.0\n7,2.0\n8,2.0\n"
        );
        let evals = query(Kind::Evals, &["val_loss"]);
        let history = read(dir.path(), &evals).unwrap();
        assert_eq!(csv(&evals, &history), "step,val_loss\n2,1.5\n");
    }

    #[test]
    fn bounds_and_every_keep_the_steps_between_that_are_multiples() {
        let dir = tempfile::tempdir().unwrap();
        let events: Vec<Event> = (1..=40).map(|s| examples::step(s, 40, 1.0)).collect();
        write_events(dir.path(), &events, "");
        let mut q = query(Kind::Steps, &["max_steps"]);
        (q.from, q.to, q.every) = (Some(10), Some(35), Some(10));
        assert_eq!(
            csv(&q, &read(dir.path(), &q).unwrap()),
            "step,max_steps\n10,40\n20,40\n30,40\n"
        );
    }

    #[test]
    fn a_line_still_being_written_is_no_row_yet() {
        let dir = tempfile::tempdir().unwrap();
        let whole = [examples::step(1, 9, 1.0), examples::step(2, 9, 1.0)];
        let next = String::from_utf8(rundir::event_line(
            &examples::step(3, 9, 1.0),
            SystemTime::UNIX_EPOCH,
        ))
        .unwrap();
        write_events(dir.path(), &whole, &next[..next.len() / 2]);
        let q = query(Kind::Steps, &[]);
        let history = read(dir.path(), &q).unwrap();
        let steps: Vec<u64> = history.steps.iter().map(|m| m.step).collect();
        assert_eq!(steps, [1, 2]);
    }

    #[test]
    fn an_evaluation_row_holds_its_validation_loss_batches_and_the_run_counters() {
        let dir = tempfile::tempdir().unwrap();
        let events = [
            Event::EvalStarted {
                step: 10,
                eval: 1,
                samples: 4,
            },
            Event::ValLoss {
                step: 10,
                loss: Some(1.5),
                batches: 8,
                timed_out: true,
            },
            Event::Sample(sample(10, "p", GenerationOutcome::TimedOut)),
            Event::EvalFinished(summary(10)),
            // An evaluation without a validation loss.
            Event::EvalStarted {
                step: 20,
                eval: 2,
                samples: 4,
            },
            Event::EvalFinished(summary(20)),
        ];
        write_events(dir.path(), &events, "");
        let q = query(Kind::Evals, &[]);
        assert_eq!(
            csv(&q, &read(dir.path(), &q).unwrap()),
            "step,eval,val_loss,train_loss,gap,val_batches,val_timed_out,samples,matches,\
             exact_match,generations,completed,timed_out,aborted,errors,timeout_rate\n\
             10,1,1.5,1.25,0.25,8,true,4,3,0.75,4,3,1,0,0,0.25\n\
             20,2,1.5,1.25,0.25,,,4,3,0.75,4,3,1,0,0,0.25\n"
        );
        let q = query(Kind::Samples, &["outcome", "error", "exact_match"]);
        assert_eq!(
            csv(&q, &read(dir.path(), &q).unwrap()),
            "step,outcome,error,exact_match\n10,timed_out,,false\n"
        );
    }
}
