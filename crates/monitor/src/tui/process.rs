//! What is known of a run's process apart from its events: whether it is
//! still there, the ranks of a multi-process job, and the exit status of a
//! job `trainui run` started. The follower of a run directory
//! (`follow.rs`) and `trainui run` tell it as [`Liveness`] notices.

use super::event_log::Level;
use super::intake;
use trainui_protocol::ranks::RankView;

/// Whether the process of a watched run is still there.
#[derive(Debug, Clone, PartialEq)]
pub enum Liveness {
    /// It ended without a final state (killed, crashed, or exited on a stall).
    Gone(GoneRun),
    /// A process trains in the run (again).
    Alive,
    /// The ranks of a multi-process job, as their heartbeat files tell it
    /// (sent when one moves on, goes silent or ends).
    Ranks(Vec<RankView>),
    /// The job `trainui run` started ended with this exit status.
    JobEnded(i32),
    /// What trainui does to end a job that went on after being asked to
    /// end (a second SIGINT or SIGTERM to trainui): said once.
    Ending(String),
    /// `trainui run --restart-on-stall` relaunches the job that stalled:
    /// what it does, said once per relaunch.
    Restarting(String),
    /// Why the run's status file cannot be read (a FIFO, too large, not a
    /// status): said once each time the reason changes.
    Unreadable(String),
    /// For a run on another machine: what stands between this screen and
    /// it (the connection lost, reconnecting), or None once it is in step
    /// again.
    Connection(Option<String>),
    /// The job's processes on this machine as /proc (and NVML) tell them:
    /// its ranks' and, under `trainui run`, every process the job started.
    Processes(Vec<JobProcess>),
}

/// One process of the job on this machine, as last read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobProcess {
    pub pid: u32,
    /// The program's name (`/proc/PID/comm`), as the process set it.
    pub name: String,
    /// Percent of one core since the previous reading (100 is a core).
    pub cpu: Option<f64>,
    /// Resident memory, bytes.
    pub memory: Option<u64>,
    /// GPU memory it holds, bytes, on each GPU it uses (by index).
    pub gpu_memory: Vec<(u32, u64)>,
}

/// A run whose process is gone, as the follower tells it.
#[derive(Debug, Clone, PartialEq)]
pub struct GoneRun {
    pub pid: u32,
    /// The run's last word (its status file's `updated_at`), RFC 3339.
    pub since: String,
    pub last_checkpoint: Option<String>,
    /// The command that continues it.
    pub resume: String,
}

/// What the notices have told of the run's process so far.
#[derive(Debug, Clone, Default)]
pub struct Process {
    /// The watched run's process is gone without a final state.
    pub gone: Option<GoneRun>,
    /// The ranks of the watched job (none for trainui's own trainer).
    pub ranks: Vec<RankView>,
    /// The job's exit status, once it has ended.
    pub job_status: Option<i32>,
    /// The job's processes on this machine, as last read (none for
    /// trainui's own trainer, whose process is this one).
    pub processes: Vec<JobProcess>,
}

impl Process {
    /// The reading of process `pid`, when it is one of the job's.
    #[must_use]
    pub fn reading(&self, pid: u32) -> Option<&JobProcess> {
        self.processes.iter().find(|p| p.pid == pid)
    }

    /// Takes the job's processes in, their names escaped.
    pub fn take_processes(&mut self, mut processes: Vec<JobProcess>) {
        for process in &mut processes {
            process.name = trainui_protocol::text::escape(&process.name).into_owned();
        }
        self.processes = processes;
    }

    /// Takes the ranks' latest views in (escaping their texts); returns
    /// the lines the change is worth in the log: each rank newly stuck,
    /// and the news that every rank beats again.
    pub fn take_ranks(&mut self, ranks: Vec<RankView>) -> Vec<(Level, String)> {
        let ranks = intake::ranks(ranks);
        let stuck = |views: &[RankView]| -> Vec<u32> {
            views
                .iter()
                .filter(|v| v.verdict.is_stuck())
                .map(|v| v.beat.rank)
                .collect()
        };
        let (before, now) = (stuck(&self.ranks), stuck(&ranks));
        let mut lines: Vec<(Level, String)> = ranks
            .iter()
            .filter(|v| v.verdict.is_stuck() && !before.contains(&v.beat.rank))
            .map(|view| (Level::Error, view.describe()))
            .collect();
        if now.is_empty() && !before.is_empty() {
            lines.push((Level::Info, "every rank beats again".into()));
        }
        self.ranks = ranks;
        lines
    }
}
