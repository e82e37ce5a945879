//! A week-long run opens at once: `trainui watch` and `trainui status` on
//! the run directory of a run logged every step for a million steps, as a
//! person would start them (the real `trainui` program, `watch` in a tmux
//! terminal of 120x40), and `trainui query --csv` prints its whole history
//! into a pipe. And a sweep's folder of a thousand runs lists at once
//! (`trainui runs`).

use std::io::{BufWriter, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use super::plan::quantile;
use super::watched::{first_screen, started, step_event};
use trainui_protocol::error::{Error, Result};
use trainui_protocol::events::{Event, RunState, RunStatus};
use trainui_protocol::rundir;

/// Steps between two evaluations in the written history.
const EVAL_EVERY: u64 = 5_000;
/// Runs of `trainui status` timed.
const STATUS_RUNS: usize = 10;
/// Runs of `trainui query --csv` timed.
const QUERY_RUNS: usize = 3;
/// Run directories in the sweep's folder, and runs of `trainui runs` on it.
pub const SWEEP_RUNS: u64 = 1_000;
const RUNS_RUNS: usize = 5;
/// Run directories `watch` opens at once, and the steps of each.
pub const WATCH_SWEEP_RUNS: u64 = 200;
const WATCH_SWEEP_STEPS: u64 = 300;

#[derive(Debug, Clone, Serialize)]
pub struct HistoryFigures {
    pub steps: u64,
    pub events: u64,
    pub events_bytes: u64,
    /// From starting `trainui watch` to its screen showing the last step.
    pub watch_first_screen_secs: f64,
    /// The watch process's peak resident memory.
    pub watch_peak_bytes: u64,
    /// `trainui status`, median and slowest of its runs.
    pub status_median_secs: f64,
    pub status_max_secs: f64,
    /// `trainui query --csv` of the whole history into a pipe the bench
    /// drains, median and slowest of its runs.
    pub query_csv_median_secs: f64,
    pub query_csv_max_secs: f64,
    /// Bytes of CSV it printed.
    pub query_csv_bytes: u64,
    /// Run directories in the sweep's folder.
    pub sweep_runs: u64,
    /// `trainui runs` on that folder, median and slowest of its runs.
    pub runs_median_secs: f64,
    pub runs_max_secs: f64,
    /// Run directories of the sweep `watch` opens, and from starting
    /// `trainui watch` on their folder to its first screen.
    pub watch_sweep_runs: u64,
    pub watch_sweep_first_screen_secs: f64,
    /// The same history and a busy run on another machine, over ssh to a
    /// loopback sshd (absent when sshd is missing).
    pub remote: Option<super::remote::RemoteFigures>,
}

/// Writes the history in `dir` and times both commands on it.
pub fn measure(steps: u64, dir: &Path) -> Result<HistoryFigures> {
    let run_dir = dir.join("week");
    let (events, events_bytes) = write_history(&run_dir, steps)?;
    let program = trainui_program()?;
    let mut status_secs = (0..STATUS_RUNS)
        .map(|_| {
            let started = Instant::now();
            let output = Command::new(&program)
                .arg("status")
                .arg(&run_dir)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| Error::Failed(format!("cannot run {}: {e}", program.display())))?;
            if !output.status.success() {
                return Err(Error::Failed(format!(
                    "trainui status failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                )));
            }
            Ok(started.elapsed().as_secs_f64())
        })
        .collect::<Result<Vec<f64>>>()?;
    status_secs.sort_by(f64::total_cmp);
    let (watch_first_screen_secs, watch_peak_bytes) =
        first_screen(&program, &run_dir, &format!("step {steps}/{steps}"))?;
    let mut query_bytes = 0;
    let mut query_secs = (0..QUERY_RUNS)
        .map(|_| {
            let (secs, lines, bytes) = drained(
                &program,
                &["query".as_ref(), run_dir.as_ref(), "--csv".as_ref()],
            )?;
            // The header and a row per step: all of the history came out.
            if lines != steps + 1 {
                return Err(Error::Failed(format!(
                    "trainui query --csv printed {lines} lines, not {}",
                    steps + 1
                )));
            }
            query_bytes = bytes;
            Ok(secs)
        })
        .collect::<Result<Vec<f64>>>()?;
    query_secs.sort_by(f64::total_cmp);
    let sweep = dir.join("sweep");
    super::sweep::write_runs(&sweep, SWEEP_RUNS, 5)?;
    let mut runs_secs = (0..RUNS_RUNS)
        .map(|_| {
            let (secs, lines, _) = drained(&program, &["runs".as_ref(), sweep.as_ref()])?;
            if lines < SWEEP_RUNS {
                return Err(Error::Failed(format!(
                    "trainui runs printed {lines} lines for {SWEEP_RUNS} runs"
                )));
            }
            Ok(secs)
        })
        .collect::<Result<Vec<f64>>>()?;
    runs_secs.sort_by(f64::total_cmp);
    let watched = dir.join("sweep-watch");
    super::sweep::write_runs(&watched, WATCH_SWEEP_RUNS, WATCH_SWEEP_STEPS)?;
    let (watch_sweep_first_screen_secs, _) =
        first_screen(&program, &watched, &format!("of {WATCH_SWEEP_RUNS} runs"))?;
    Ok(HistoryFigures {
        steps,
        events,
        events_bytes,
        watch_first_screen_secs,
        watch_peak_bytes,
        status_median_secs: quantile(&status_secs, 0.5),
        status_max_secs: status_secs.last().copied().unwrap_or(f64::INFINITY),
        query_csv_median_secs: quantile(&query_secs, 0.5),
        query_csv_max_secs: query_secs.last().copied().unwrap_or(f64::INFINITY),
        query_csv_bytes: query_bytes,
        sweep_runs: SWEEP_RUNS,
        runs_median_secs: quantile(&runs_secs, 0.5),
        runs_max_secs: runs_secs.last().copied().unwrap_or(f64::INFINITY),
        watch_sweep_runs: WATCH_SWEEP_RUNS,
        watch_sweep_first_screen_secs,
        remote: None,
    })
}

/// Runs `program` with `args`, its stdout read as fast as it comes (as a
/// pipe into another program would), and returns the seconds from its
/// start to its exit, and the lines and bytes it printed. A failure is an
/// error with its stderr.
fn drained(program: &Path, args: &[&std::ffi::OsStr]) -> Result<(f64, u64, u64)> {
    let cannot =
        |e: std::io::Error| Error::Failed(format!("cannot run {}: {e}", program.display()));
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(cannot)?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut buffer = vec![0u8; 1 << 16];
    let (mut lines, mut bytes) = (0u64, 0u64);
    loop {
        let read = stdout.read(&mut buffer).map_err(cannot)?;
        if read == 0 {
            break;
        }
        bytes += read as u64;
        // The compiler vectorises this: no crate needed for one count.
        #[allow(clippy::naive_bytecount)]
        let newlines = buffer[..read].iter().filter(|&&b| b == b'\n').count();
        lines += newlines as u64;
    }
    let output = child.wait_with_output().map_err(cannot)?;
    let secs = started.elapsed().as_secs_f64();
    if !output.status.success() {
        let words: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        return Err(Error::Failed(format!(
            "trainui {} failed: {}",
            words.join(" "),
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok((secs, lines, bytes))
}

/// The `trainui` program beside this one: the one people run.
pub(super) fn trainui_program() -> Result<PathBuf> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::Failed(format!("cannot find the trainui binary: {e}")))?;
    let program = exe.with_file_name("trainui");
    if program.exists() {
        Ok(program)
    } else {
        Err(Error::Failed(format!(
            "{} is missing: cargo build --release --workspace builds it",
            program.display()
        )))
    }
}

/// events.jsonl and the status file of a run of `steps` steps logged every
/// step, an evaluation every [`EVAL_EVERY`], half a second a step. Returns
/// the events and bytes written.
fn write_history(run_dir: &Path, steps: u64) -> Result<(u64, u64)> {
    let path = run_dir.join(rundir::EVENTS_FILE);
    std::fs::create_dir_all(run_dir.join("status")).map_err(Error::io("cannot create", run_dir))?;
    let file = std::fs::File::create(&path).map_err(Error::io("cannot create", &path))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut status = RunStatus::new("week".into(), steps);
    let begun = SystemTime::now() - Duration::from_secs_f64(steps as f64 * 0.5);
    let (mut events, mut bytes) = (0u64, 0u64);
    let mut write = |event: &Event, at: SystemTime, status: &mut RunStatus| -> Result<()> {
        let mut line = rundir::event_line(event, at);
        line.push(b'\n');
        out.write_all(&line)
            .map_err(Error::io("cannot write", &path))?;
        status.apply(event);
        events += 1;
        bytes += line.len() as u64;
        Ok(())
    };
    write(&started(steps), begun, &mut status)?;
    let training = Event::State {
        step: 0,
        state: RunState::Training,
    };
    write(&training, begun, &mut status)?;
    for step in 1..=steps {
        let at = begun + Duration::from_secs_f64(step as f64 * 0.5);
        write(&step_event(step, steps), at, &mut status)?;
        if step % EVAL_EVERY == 0 {
            for event in super::ui_cost::evaluation_events(step) {
                write(&event, at, &mut status)?;
            }
        }
    }
    let finished = Event::State {
        step: steps,
        state: RunState::Finished,
    };
    write(&finished, SystemTime::now(), &mut status)?;

    out.flush().map_err(Error::io("cannot write", &path))?;
    let json = serde_json::to_vec_pretty(&status).expect("the status serialises");
    let status_path = run_dir.join(rundir::STATUS_FILE);
    rundir::write_atomically(&status_path, &json)
        .map_err(Error::io("cannot write", &status_path))?;
    Ok((events, bytes))
}
