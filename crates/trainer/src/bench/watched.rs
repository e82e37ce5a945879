//! What the history bench writes and starts: the events of a long run
//! (its start and its steps), and `trainui watch` in a tmux terminal,
//! timed to its first full screen.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use trainui_protocol::error::{Error, Result};
use trainui_protocol::events::{Event, RunInfo, StepMetrics};

/// Longest wait for `watch`'s first full screen before giving up.
const WATCH_LIMIT: Duration = Duration::from_mins(1);

pub(super) fn started(steps: u64) -> Event {
    Event::Started(Box::new(RunInfo {
        parameters: 3_716_608,
        vocab_size: 2048,
        train_examples: 20_000,
        val_examples: 500,
        settings: Some(trainui_protocol::config::live_settings(
            &trainui_protocol::config::Config::default(),
        )),
        ..RunInfo::new("week", steps)
    }))
}

pub(super) fn step_event(step: u64, steps: u64) -> Event {
    let progress = step as f64 / steps as f64;
    Event::Step(StepMetrics {
        step,
        max_steps: steps,
        loss: 0.2 + 4.5 * (-6.0 * progress).exp() + 0.05 * (step as f64 * 0.7).sin(),
        learning_rate: 1e-3 * (1.0 - progress).max(0.1),
        tokens_per_sec: 15_234.0,
        elapsed_secs: step as f64 * 0.5,
        eta_secs: (steps - step) as f64 * 0.5,
        grad_norm: Some(1.25),
        tokens_seen: Some(step * 7_617),
    })
}

/// Starts `trainui watch` on `run_dir` (a run, or a folder of runs) in a
/// tmux terminal of 120x40 and waits for its screen to show `marker` (the
/// last step; how many runs it compares). Returns the seconds that took
/// and the watch process's peak memory.
pub(super) fn first_screen(program: &Path, run_dir: &Path, marker: &str) -> Result<(f64, u64)> {
    first_screen_with(program, run_dir, marker, &[])
}

/// As [`first_screen`], with `env` set for watch.
pub(super) fn first_screen_with(
    program: &Path,
    run_dir: &Path,
    marker: &str,
    env: &[(&str, String)],
) -> Result<(f64, u64)> {
    let socket = format!("trainui-bench-{}", std::process::id());
    let tmux = |args: &[&str]| -> Result<String> {
        let output = Command::new("tmux")
            .args(["-L", &socket])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::Failed(format!("cannot run tmux: {e}")))?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let quote = |text: &str| format!("'{}'", text.replace('\'', r"'\''"));
    let env: Vec<String> = env
        .iter()
        .map(|(name, value)| quote(&format!("{name}={value}")))
        .collect();
    let command = format!(
        "exec env {} {} watch {}",
        env.join(" "),
        quote(&program.to_string_lossy()),
        quote(&run_dir.to_string_lossy())
    );
    let started = Instant::now();
    // The tmux server (and watch in it) ends however this returns.
    let _server = KillServer(socket.clone());
    tmux(&[
        "new-session",
        "-d",
        "-s",
        "watch",
        "-x",
        "120",
        "-y",
        "40",
        &command,
    ])?;
    loop {
        let screen = tmux(&["capture-pane", "-p", "-t", "watch"])?;
        if screen.contains(marker) {
            let secs = started.elapsed().as_secs_f64();
            let pid = tmux(&["display", "-p", "-t", "watch", "#{pane_pid}"])?;
            let peak = peak_bytes(pid.trim()).unwrap_or(0);
            return Ok((secs, peak));
        }
        if started.elapsed() > WATCH_LIMIT {
            return Err(Error::Failed(format!(
                "watch showed no `{marker}` within {}s; its screen:\n{screen}",
                WATCH_LIMIT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Ends the bench's own tmux server when dropped.
struct KillServer(String);

impl Drop for KillServer {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.0, "kill-server"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// VmHWM of process `pid`, from /proc (Linux).
fn peak_bytes(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
