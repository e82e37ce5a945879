//! What `trainui watch` costs: the CPU time of the real `watch` process, in
//! a pseudo-terminal made by script(1), while the run it watches trains
//! (busy) and once it has finished (idle).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use trainui_protocol::error::{Error, Result};

/// Clock ticks a second of /proc's CPU times: USER_HZ, which Linux fixes at
/// 100 for what it reports to user space.
const TICKS_PER_SEC: f64 = 100.0;

#[derive(Debug, Clone, Serialize)]
pub struct WatchFigures {
    /// CPU of the watch process over wall time while the run trained.
    pub busy_cpu_share: f64,
    pub busy_secs: f64,
    /// Events the run wrote meanwhile, and the watch's CPU per event beyond
    /// what watching an idle run costs.
    pub busy_events: u64,
    pub busy_ms_per_event: f64,
    /// CPU over wall time watching the finished run.
    pub idle_cpu_share: f64,
    pub idle_secs: f64,
}

/// A `trainui watch RUN_DIR` process in a pseudo-terminal of its own.
pub struct Watcher {
    script: Child,
    /// The watch process itself (script's child).
    pid: u32,
}

impl Watcher {
    /// Starts watching `run_dir` (which must exist). Its screen goes to
    /// /dev/null, its keyboard is /dev/null: nothing reaches the terminal
    /// the bench runs in.
    pub fn start(run_dir: &Path) -> Result<Self> {
        let exe = super::history::trainui_program()?;
        let command = format!(
            "stty rows 40 cols 120; exec {} watch {}",
            quoted(&exe.to_string_lossy()),
            quoted(&run_dir.to_string_lossy())
        );
        let script = Command::new("script")
            .args(["-qfec", &command, "/dev/null"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                Error::Failed(format!(
                    "cannot run script(1) (util-linux) to give watch a terminal: {e}"
                ))
            })?;
        let script_pid = script.id();
        let started = Instant::now();
        loop {
            if let Some(pid) = child_of(script_pid) {
                return Ok(Self { script, pid });
            }
            if started.elapsed() > Duration::from_secs(10) {
                return Err(Error::Failed("the watch process did not start".into()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// CPU seconds the watch process has used.
    pub fn cpu_secs(&self) -> Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .map_err(|e| Error::Failed(format!("the watch process is gone: {e}")))?;
        // Fields after the command name (which may hold spaces) in brackets.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        let ticks = |n: usize| fields.get(n).and_then(|f| f.parse::<f64>().ok());
        // utime and stime are the 14th and 15th fields; the 12th and 13th
        // after the name and state.
        match (ticks(11), ticks(12)) {
            (Some(user), Some(system)) => Ok((user + system) / TICKS_PER_SEC),
            _ => Err(Error::Failed(format!("unexpected /proc stat: {stat}"))),
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.pid.to_string())
            .stderr(Stdio::null())
            .status();
        let _ = self.script.kill();
        let _ = self.script.wait();
    }
}

/// The first process whose parent is `parent`.
fn child_of(parent: u32) -> Option<u32> {
    let tasks = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).ok();
    if let Some(pid) = tasks.and_then(|t| t.split_whitespace().next()?.parse().ok()) {
        return Some(pid);
    }
    std::fs::read_dir("/proc").ok()?.find_map(|entry| {
        let candidate: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{candidate}/stat")).ok()?;
        let its_parent: u32 = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        (its_parent == parent).then_some(candidate)
    })
}

/// `text` in single quotes for sh.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}
