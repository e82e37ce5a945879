//! `trainui runs [DIR]`: one line per run directory under DIR, from the
//! status files alone (never the event logs), so hundreds of runs list at
//! once. A run whose process is gone without a final state says so.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;

use trainui_protocol::error::{Error, Result};
use trainui_protocol::events::{GpuStatus, RunStatus};
use trainui_protocol::lines::{ago, thousands};
use trainui_protocol::process;
use trainui_protocol::rundir;
use trainui_protocol::runlock;
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
    /// Why its status file could not be read (not a regular file, too
    /// large, not a status), or which of its fields were read as unknown.
    pub problem: Option<String>,
    /// The status fields read as unknown, shown as `?` in the table.
    #[serde(skip)]
    pub unknown: Vec<String>,
}

/// The run directories directly under `dir` (and `dir` itself when it is
/// one), most recently updated first.
pub fn list(dir: &Path) -> Result<Vec<RunEntry>> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Error::Usage(format!(
            "{}: cannot list runs: {e} (give the folder that holds run directories)",
            dir.display()
        ))
    })?;
    let mut runs: Vec<RunEntry> = std::iter::once(dir.to_owned())
        .chain(entries.filter_map(|e| Some(e.ok()?.path())))
        .filter(|path| is_run(path))
        .map(|path| entry(&path))
        .collect();
    runs.sort_by(|a, b| {
        let age = |r: &RunEntry| r.updated_secs_ago.unwrap_or(f64::INFINITY);
        age(a).total_cmp(&age(b)).then_with(|| a.name.cmp(&b.name))
    });
    Ok(runs)
}

/// The run directories directly under `dir`, in name order.
pub fn runs_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut runs: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|path| is_run(path))
        .collect();
    runs.sort();
    Ok(runs)
}

/// A run directory has a status file or an event log (or something in
/// their place, which is then named as unreadable).
#[must_use]
pub fn is_run(path: &Path) -> bool {
    [rundir::STATUS_FILE, rundir::EVENTS_FILE]
        .iter()
        .any(|file| std::fs::symlink_metadata(path.join(file)).is_ok())
}

fn entry(path: &Path) -> RunEntry {
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
            problem,
            unknown: unknown_fields,
        };
    };
    let alive = !status.state.is_final() && runlock::run_alive(path, status.pid);
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
        problem,
        unknown: unknown_fields,
    }
}

/// The table `trainui runs` prints.
#[must_use]
pub fn table(runs: &[RunEntry]) -> String {
    let number = |value: Option<f64>| value.map_or_else(|| "-".to_owned(), |v| format!("{v:.4}"));
    let rows: Vec<[String; 8]> = runs
        .iter()
        .map(|run| {
            let state = match (&run.state, run.alive, run.gone) {
                (None, ..) if run.problem.is_some() => "UNREADABLE (below)".to_owned(),
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
                text::escape(&run.path.display().to_string()).into_owned(),
            ]
        })
        .collect();
    let header = [
        "run", "state", "step", "loss", "val loss", "timeouts", "updated", "path",
    ]
    .map(str::to_owned);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            // Names and words to the left, figures to the right.
            let _ = if matches!(i, 2..=6) {
                write!(line, "{cell:>width$}  ")
            } else {
                write!(line, "{cell:<width$}  ")
            };
        }
        let _ = writeln!(out, "{}", line.trim_end());
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

/// `trainui runs`: the table, or JSON for scripts.
pub fn run(dir: &Path, json: bool) -> Result<()> {
    let runs = list(dir)?;
    if json {
        let json = serde_json::to_string_pretty(&runs).expect("the list serialises");
        process::print(format!("{}\n", text::json_safe(json)));
    } else if runs.is_empty() {
        process::print(format!(
            "no run directories in {}\n",
            text::escape(&dir.display().to_string())
        ));
    } else {
        process::print(table(&runs));
    }
    Ok(())
}
