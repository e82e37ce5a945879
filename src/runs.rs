//! `trainui runs [DIR]`: one line per run directory under DIR, from the
//! status files alone (never the event logs), so hundreds of runs list at
//! once. A run whose process is gone without a final state says so.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::events::{GpuStatus, RunStatus};
use crate::lines::{ago, thousands};
use crate::rundir;

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

/// A run directory has a status file or an event log.
#[must_use]
pub fn is_run(path: &Path) -> bool {
    path.join(rundir::STATUS_FILE).is_file() || path.join(rundir::EVENTS_FILE).is_file()
}

fn entry(path: &Path) -> RunEntry {
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let status: Option<RunStatus> = rundir::read_status(path).ok();
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
        };
    };
    let alive = !status.state.is_final() && rundir::run_alive(path, status.pid);
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
                (None, ..) => "no status yet".to_owned(),
                (Some(state), true, _) => format!("{state} · alive"),
                (Some(state), false, true) => format!("{state} · GONE, no final state"),
                (Some(state), false, false) => state.clone(),
            };
            [
                run.name.clone(),
                state,
                format!("{}/{}", thousands(run.step), thousands(run.max_steps)),
                number(run.loss),
                number(run.val_loss),
                format!("{:.1}%", 100.0 * run.timeout_rate),
                run.updated_secs_ago.map_or_else(|| "-".to_owned(), ago),
                run.path.display().to_string(),
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
    out
}

/// `trainui runs`: the table, or JSON for scripts.
pub fn run(dir: &Path, json: bool) -> Result<()> {
    let runs = list(dir)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&runs).expect("the list serialises")
        );
    } else if runs.is_empty() {
        println!("no run directories in {}", dir.display());
    } else {
        print!("{}", table(&runs));
    }
    Ok(())
}
