//! `trainui runs [DIR]`: one line per run directory found below DIR, from
//! the status files and config.json alone (never the event logs), so
//! thousands of runs list at once. A run whose process is gone without a
//! final state says so. The runs can be chosen and ordered (`--where`,
//! `--sort`, see `run_filter.rs`), and the config keys and producer details
//! that differ among those listed get columns of their own (see `diff.rs`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;
use serde_json::Value;

use crate::cli::RunsArgs;
use crate::differing::{self, Settings};
use crate::run_filter::{self, Column, Fields, Filter, Key};
use trainui_protocol::error::{Error, Result};
use trainui_protocol::events::{GpuStatus, Producer, RunStatus};
use trainui_protocol::lines::{ago, thousands};
use trainui_protocol::process;
use trainui_protocol::rundir;
use trainui_protocol::runfile;
use trainui_protocol::text;

/// One run, as `trainui runs --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct RunEntry {
    pub name: String,
    pub path: PathBuf,
    /// The run's state, as its status file says (`null`: no status file
    /// yet).
    pub state: Option<String>,
    /// Its process holds the run (it trains, evaluates, waits...).
    pub alive: bool,
    /// Not alive, and no final state: killed, crashed, or its machine went
    /// down.
    pub gone: bool,
    pub step: u64,
    pub max_steps: u64,
    pub loss: Option<f64>,
    pub val_loss: Option<f64>,
    pub exact_match: Option<f64>,
    pub timeout_rate: f64,
    pub tokens_per_sec: Option<f64>,
    pub updated_at: Option<String>,
    /// Seconds since the status file was last written.
    pub updated_secs_ago: Option<f64>,
    pub gpus: Vec<GpuStatus>,
    /// The device the run resolved (`cpu`, `cuda:0`), as its status file
    /// says.
    pub device: Option<String>,
    /// Who writes the run, as its status file says (`null` without one, or
    /// from runs of schema 1 and 2, all written by trainui's trainer).
    pub producer: Option<Producer>,
    /// This run's values of the config keys and producer details that
    /// differ among the runs listed, by the names `--where` takes; a key
    /// the run lacks is left out.
    pub differing: BTreeMap<String, Value>,
    /// Why its status file or its config.json could not be read (not a
    /// regular file, too large, not a status or not JSON), or which of its
    /// status fields were read as unknown.
    pub problem: Option<String>,
    /// The status fields read as unknown, shown as `?` in the table.
    #[serde(skip)]
    pub unknown: Vec<String>,
    /// Its config.json's values by dotted path (`None`: no readable
    /// config.json).
    #[serde(skip)]
    pub config: Option<BTreeMap<String, Value>>,
    /// Something is in the status file's place that could not be read.
    #[serde(skip)]
    pub status_unreadable: bool,
}

impl RunEntry {
    /// Its config keys and producer details, as `diff` compares them.
    #[must_use]
    pub fn settings(&self) -> Settings {
        let details = self.state.is_some().then(|| {
            Column::DETAILS
                .iter()
                .filter_map(|&column| {
                    Some((column.name().to_owned(), self.field(&Key::Column(column))?))
                })
                .collect()
        });
        let config = self.config.as_ref().map(|config| {
            config
                .iter()
                .map(|(path, value)| (run_filter::config_key_name(path), value.clone()))
                .collect()
        });
        Settings { details, config }
    }
}

impl Fields for RunEntry {
    fn field(&self, key: &Key) -> Option<Value> {
        let column = match key {
            Key::Column(column) => *column,
            Key::Config(path) => return self.config.as_ref()?.get(path).cloned(),
        };
        let status = self.state.is_some();
        // Losses that are not numbers are the text the status file gives them.
        let number = |value: f64| {
            serde_json::Number::from_f64(value).map_or_else(
                || {
                    Value::from(if value.is_nan() {
                        "NaN"
                    } else if value > 0.0 {
                        "inf"
                    } else {
                        "-inf"
                    })
                },
                Value::Number,
            )
        };
        match column {
            Column::Name => Some(self.name.clone().into()),
            Column::State => self.state.clone().map(Value::from),
            Column::Alive => Some(self.alive.into()),
            Column::Gone => Some(self.gone.into()),
            Column::Step => status.then(|| self.step.into()),
            Column::MaxSteps => status.then(|| self.max_steps.into()),
            Column::Loss => self.loss.map(number),
            Column::ValLoss => self.val_loss.map(number),
            Column::ExactMatch => self.exact_match.map(number),
            Column::TimeoutRate => status.then(|| number(self.timeout_rate)),
            Column::TokensPerSec => self.tokens_per_sec.map(number),
            Column::Updated => self.updated_secs_ago.map(number),
            Column::Path => Some(self.path.display().to_string().into()),
            // A status without a producer was written by trainui's trainer.
            Column::Framework => status.then(|| {
                self.producer
                    .as_ref()
                    .map_or("trainui", |p| p.framework.as_str())
                    .into()
            }),
            Column::Device => self
                .device
                .clone()
                .filter(|d| !d.is_empty())
                .map(Value::from),
            Column::WorldSize => {
                status.then(|| self.producer.as_ref().map_or(1, |p| p.world_size).into())
            }
        }
    }
}

/// The run directories below `dir` (see [`find`]), most recently updated
/// first.
pub fn list(dir: &Path, depth: usize) -> Result<Vec<RunEntry>> {
    let mut runs: Vec<RunEntry> = find(dir, depth)?.iter().map(|path| entry(path)).collect();
    runs.sort_by(|a, b| {
        let age = |r: &RunEntry| r.updated_secs_ago.unwrap_or(f64::INFINITY);
        age(a).total_cmp(&age(b)).then_with(|| a.name.cmp(&b.name))
    });
    Ok(runs)
}

/// As [`list`], of a folder on another machine (`host:PATH`): the runs'
/// small files copied over ssh, each run's path the remote one.
fn list_remote(dir: &Path, depth: usize) -> Result<Vec<RunEntry>> {
    use crate::remote;
    let (copies, remote) =
        remote::localize_folders(&[dir.to_owned()], depth, remote::Depth::Small)?;
    let Some(remote) = remote else {
        return list(dir, depth);
    };
    remote.wait_synced()?;
    let mut runs: Vec<RunEntry> = copies
        .iter()
        // A lone folder that holds no run is no run to list.
        .filter(|copy| is_run(copy))
        .map(|copy| {
            let mut run = entry(copy);
            run.path = PathBuf::from(remote::shown(copy));
            run
        })
        .collect();
    runs.sort_by(|a, b| {
        let age = |r: &RunEntry| r.updated_secs_ago.unwrap_or(f64::INFINITY);
        age(a).total_cmp(&age(b)).then_with(|| a.name.cmp(&b.name))
    });
    Ok(runs)
}

/// The run directories at most `depth` folders below `dir`, in path order:
/// `dir` itself when it is a run, else those directly under it (depth 1),
/// under its folders (depth 2), and so on. A run directory is not searched
/// inside, nor are hidden folders and links to folders (which could loop).
pub fn find(dir: &Path, depth: usize) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Error::Usage(format!(
            "{}: cannot list runs: {e} (give the folder that holds run directories)",
            dir.display()
        ))
    })?;
    if is_run(dir) {
        return Ok(vec![dir.to_owned()]);
    }
    let mut found = Vec::new();
    if depth > 0 {
        walk(entries, depth, &mut found);
    }
    found.sort();
    Ok(found)
}

/// The runs among `entries`, and below them for `levels` - 1 more levels.
fn walk(entries: std::fs::ReadDir, levels: usize, found: &mut Vec<PathBuf>) {
    for entry in entries.filter_map(std::result::Result::ok) {
        let path = entry.path();
        if is_run(&path) {
            found.push(path);
        } else if levels > 1
            && entry.file_type().is_ok_and(|kind| kind.is_dir())
            && !entry.file_name().to_string_lossy().starts_with('.')
            && let Ok(inside) = std::fs::read_dir(&path)
        {
            walk(inside, levels - 1, found);
        }
    }
}

/// The runs among `paths` (as [`entry`] reads them) that pass every
/// filter, in their order.
#[must_use]
pub fn select(paths: &[PathBuf], filters: &[Filter]) -> Vec<PathBuf> {
    if filters.is_empty() {
        return paths.to_vec();
    }
    let runs: Vec<RunEntry> = paths.iter().map(|path| entry(path)).collect();
    run_filter::select(runs, filters)
        .into_iter()
        .map(|run| run.path)
        .collect()
}

/// A run's config.json, its values by dotted path: `None` when it has
/// none, an error naming the file when it cannot be read or is not a JSON
/// object.
pub fn read_config(run_dir: &Path) -> std::result::Result<Option<BTreeMap<String, Value>>, String> {
    let path = run_dir.join(rundir::CONFIG_FILE);
    if std::fs::symlink_metadata(&path).is_err() {
        return Ok(None);
    }
    let bytes = runfile::read(&path, runfile::CONFIG_LIMIT).map_err(|err| err.at(&path))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(config @ Value::Object(_)) => Ok(Some(run_filter::flatten_config(&config))),
        Ok(_) => Err(format!("{}: not a JSON object", path.display())),
        Err(err) => Err(format!("{}: not JSON: {err}", path.display())),
    }
}

/// A run directory has a status file or an event log (or something in
/// their place, which is then named as unreadable).
#[must_use]
pub fn is_run(path: &Path) -> bool {
    [rundir::STATUS_FILE, rundir::EVENTS_FILE]
        .iter()
        .any(|file| std::fs::symlink_metadata(path.join(file)).is_ok())
}

/// What `runs` shows of the run in `path`, read from its status file and
/// its config.json.
#[must_use]
pub fn entry(path: &Path) -> RunEntry {
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    // Something in the status file's place is read, or named as unreadable.
    let read = std::fs::symlink_metadata(path.join(rundir::STATUS_FILE))
        .is_ok()
        .then(|| rundir::read_status_fields(path));
    let mut unknown_fields = Vec::new();
    let (status, problem): (Option<RunStatus>, Option<String>) = match read {
        None => (None, None),
        Some(Ok((status, unknown))) => {
            let problem = (!unknown.is_empty()).then(|| {
                let why: Vec<&str> = unknown.iter().map(|field| field.why.as_str()).collect();
                format!("status fields read as unknown: {}", why.join("; "))
            });
            unknown_fields = unknown.into_iter().map(|field| field.name).collect();
            (Some(status), problem)
        }
        Some(Err(err)) => (None, Some(err.to_string())),
    };
    let status_unreadable = problem.is_some() && status.is_none();
    let (config, problem) = match read_config(path) {
        Ok(config) => (config, problem),
        Err(why) => (
            None,
            Some(problem.map_or_else(|| why.clone(), |problem| format!("{problem}; {why}"))),
        ),
    };
    let Some(status) = status else {
        return RunEntry {
            name,
            path: path.to_owned(),
            state: None,
            alive: false,
            gone: false,
            step: 0,
            max_steps: 0,
            loss: None,
            val_loss: None,
            exact_match: None,
            timeout_rate: 0.0,
            tokens_per_sec: None,
            updated_at: None,
            updated_secs_ago: None,
            gpus: Vec::new(),
            device: None,
            producer: None,
            differing: BTreeMap::new(),
            problem,
            unknown: unknown_fields,
            config,
            status_unreadable,
        };
    };
    let alive = !status.state.is_final() && crate::remote::run_alive(path, status.pid);
    let updated_secs_ago = humantime::parse_rfc3339_weak(&status.updated_at)
        .ok()
        .and_then(|at| SystemTime::now().duration_since(at).ok())
        .map(|age| age.as_secs_f64());
    RunEntry {
        name,
        path: path.to_owned(),
        state: Some(status.state.as_str().to_owned()),
        alive,
        gone: !alive && !status.state.is_final(),
        step: status.current_step,
        max_steps: status.max_steps,
        loss: status.loss,
        val_loss: status.val_loss,
        exact_match: status.exact_match,
        timeout_rate: status.timeout_rate,
        tokens_per_sec: status.tokens_per_sec,
        updated_at: Some(status.updated_at),
        updated_secs_ago,
        gpus: status.gpus,
        device: Some(status.device),
        producer: status.producer,
        differing: BTreeMap::new(),
        problem,
        unknown: unknown_fields,
        config,
        status_unreadable,
    }
}

/// The most characters a differing key's column takes; longer keys keep
/// their end (`…ng.learning_rate`), longer values their start.
const KEY_COLUMN: usize = 20;
/// The fewest characters the path column is cut to, to make room for the
/// differing keys on a narrow terminal.
const PATH_COLUMN: usize = 20;

/// The table `trainui runs` prints: the usual columns, then a column for
/// each of the `differing` keys (each run's value in `differing`), then
/// the path. Within `width` characters (the terminal's), the path is cut
/// from the left, down to `PATH_COLUMN`, to make room for the differing
/// keys, and those that still do not fit are named under the table (the
/// usual columns and a path without differing keys are never cut).
#[must_use]
pub fn table(runs: &[RunEntry], differing: &[String], width: Option<usize>) -> String {
    let number = |value: Option<f64>| value.map_or_else(|| "-".to_owned(), |v| format!("{v:.4}"));
    let rows: Vec<[String; 7]> = runs
        .iter()
        .map(|run| {
            let state = match (&run.state, run.alive, run.gone) {
                (None, ..) if run.status_unreadable => "UNREADABLE (below)".to_owned(),
                (None, ..) => "no status yet".to_owned(),
                (Some(state), true, _) => format!("{state} · alive"),
                (Some(state), false, true) => format!("{state} · GONE, no final state"),
                (Some(state), false, false) => state.clone(),
            };
            let shown = |field: &str, text: String| {
                if run.unknown.iter().any(|u| u == field) {
                    "?".to_owned()
                } else {
                    text
                }
            };
            [
                text::escape(&run.name).into_owned(),
                shown("state", text::escape(&state).into_owned()),
                format!(
                    "{}/{}",
                    shown("current_step", thousands(run.step)),
                    shown("max_steps", thousands(run.max_steps))
                ),
                shown("loss", number(run.loss)),
                shown("val_loss", number(run.val_loss)),
                shown("timeout_rate", format!("{:.1}%", 100.0 * run.timeout_rate)),
                shown(
                    "updated_at",
                    run.updated_secs_ago.map_or_else(|| "-".to_owned(), ago),
                ),
            ]
        })
        .collect();
    let header = [
        "run", "state", "step", "loss", "val loss", "timeouts", "updated",
    ]
    .map(str::to_owned);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    // The differing keys: header, cells, width, and whether all are numbers.
    let extras: Vec<(String, Vec<String>, usize, bool)> = differing
        .iter()
        .map(|key| {
            let values: Vec<Option<&Value>> =
                runs.iter().map(|run| run.differing.get(key)).collect();
            let cells: Vec<String> = values
                .iter()
                .map(|value| {
                    value.map_or_else(
                        || "-".to_owned(),
                        |value| cut_end(&text::escape(&run_filter::text_of(value)), KEY_COLUMN),
                    )
                })
                .collect();
            let head = cut_start(&text::escape(key), KEY_COLUMN);
            let width = cells
                .iter()
                .chain(std::iter::once(&head))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0);
            let numeric = values.iter().flatten().all(|value| value.is_number());
            (head, cells, width, numeric)
        })
        .collect();
    let paths: Vec<String> = runs
        .iter()
        .map(|run| text::escape(&run.path.display().to_string()).into_owned())
        .collect();
    let mut path_width = paths
        .iter()
        .map(|path| path.chars().count())
        .max()
        .unwrap_or(0)
        .max("path".len());
    let usual: usize = widths.iter().map(|w| w + 2).sum();
    // Which differing keys get a column: all of them, or on a terminal
    // those that fit in order beside a path cut to PATH_COLUMN, the path
    // then taking what is left.
    let mut shown: Vec<usize> = (0..extras.len()).collect();
    if let Some(width) = width {
        let mut used = usual + path_width.min(PATH_COLUMN);
        shown.retain(|&index| {
            let fits = used + extras[index].2 + 2 <= width;
            if fits {
                used += extras[index].2 + 2;
            }
            fits
        });
        if !shown.is_empty() {
            let taken: usize = shown.iter().map(|&index| extras[index].2 + 2).sum();
            path_width = path_width.min(width.saturating_sub(usual + taken).max(PATH_COLUMN));
        }
    }
    let mut out = String::new();
    let lines = std::iter::once(None).chain((0..runs.len()).map(Some));
    for row in lines {
        let mut line = String::new();
        let usual_cells = row.map_or(&header, |r| &rows[r]);
        for (i, (cell, width)) in usual_cells.iter().zip(widths).enumerate() {
            // Names and words to the left, figures to the right.
            let _ = if matches!(i, 2..=6) {
                write!(line, "{cell:>width$}  ")
            } else {
                write!(line, "{cell:<width$}  ")
            };
        }
        for (head, cells, width, numeric) in shown.iter().map(|&index| &extras[index]) {
            let cell = row.map_or(head, |r| &cells[r]);
            let _ = if *numeric && row.is_some() {
                write!(line, "{cell:>width$}  ")
            } else {
                write!(line, "{cell:<width$}  ")
            };
        }
        let path = row.map_or_else(|| "path".to_owned(), |r| cut_start(&paths[r], path_width));
        line.push_str(&path);
        let _ = writeln!(out, "{}", line.trim_end());
    }
    if shown.len() < extras.len() {
        let hidden: Vec<String> = (0..extras.len())
            .filter(|index| !shown.contains(index))
            .map(|index| text::escape(&differing[index]).into_owned())
            .collect();
        let _ = writeln!(
            out,
            "{} more differing {}, too wide for the terminal (trainui diff or runs --json shows \
             them): {}",
            hidden.len(),
            if hidden.len() == 1 { "key" } else { "keys" },
            hidden.join(", ")
        );
    }
    for run in runs {
        if let Some(problem) = &run.problem {
            let _ = writeln!(
                out,
                "{}: {}",
                text::escape(&run.name),
                text::escape(problem)
            );
        }
    }
    out
}

/// `text` in at most `width` characters: its end, after `…`.
fn cut_start(text: &str, width: usize) -> String {
    let count = text.chars().count();
    if count <= width {
        return text.to_owned();
    }
    let tail: String = text.chars().skip(count + 1 - width).collect();
    format!("…{tail}")
}

/// `text` in at most `width` characters: its start, then `…`.
fn cut_end(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let head: String = text.chars().take(width.saturating_sub(1)).collect();
    format!("{head}…")
}

/// The width of the terminal the output goes to: `COLUMNS` when set, else
/// the terminal's own when stdout is one; `None` for a pipe or a file,
/// whose lines are never cut.
#[must_use]
pub fn terminal_width() -> Option<usize> {
    if let Some(columns) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|&c| c > 0)
    {
        return Some(columns);
    }
    std::io::stdout()
        .is_terminal()
        .then(|| ratatui::crossterm::terminal::size().ok())
        .flatten()
        .map(|(columns, _)| usize::from(columns))
}

/// The runs `trainui runs` lists, in its order, each with its values of
/// the keys that differ among them; and those keys.
pub fn listed(args: &RunsArgs) -> Result<(Vec<RunEntry>, Vec<String>)> {
    let runs = match crate::remote::target(&args.dir) {
        None => list(&args.dir, args.depth)?,
        Some(_) => list_remote(&args.dir, args.depth)?,
    };
    let runs = run_filter::select(runs, &args.filters);
    let mut runs = runs;
    // Without --sort, the list's own order: most recently updated first.
    let (key, descending) = args
        .sort
        .as_ref()
        .map_or((Key::Column(Column::Updated), false), |sort| {
            (sort.key.clone(), sort.descending)
        });
    run_filter::sort_by(&mut runs, &key, descending != args.reverse);
    let settings: Vec<Settings> = runs.iter().map(RunEntry::settings).collect();
    let differing = differing::differing(&settings);
    for (index, run) in runs.iter_mut().enumerate() {
        run.differing = differing
            .iter()
            .filter_map(|key| Some((key.key.clone(), key.values[index].clone()?)))
            .collect();
    }
    Ok((runs, differing.into_iter().map(|key| key.key).collect()))
}

/// `trainui runs`: the table, or JSON for scripts.
pub fn run(args: &RunsArgs) -> Result<()> {
    let (runs, differing) = listed(args)?;
    let dir = text::escape(&args.dir.display().to_string()).into_owned();
    if args.json {
        let json = serde_json::to_string_pretty(&runs).expect("the list serialises");
        process::print(format!("{}\n", text::json_safe(json)));
    } else if runs.is_empty() && args.filters.is_empty() {
        let folders = if args.depth == 1 { "folder" } else { "folders" };
        process::print(format!(
            "no run directories in {dir} (looked {} {folders} deep; --depth N looks deeper)\n",
            args.depth
        ));
    } else if runs.is_empty() {
        let filters: Vec<String> = args
            .filters
            .iter()
            .map(|filter| format!("--where {}", text::escape(&filter.to_string())))
            .collect();
        process::print(format!("no run in {dir} passes {}\n", filters.join(" ")));
    } else {
        process::print(table(&runs, &differing, terminal_width()));
    }
    Ok(())
}
