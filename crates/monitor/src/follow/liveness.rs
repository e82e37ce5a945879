//! The process of a followed run, watched on a thread of its own: gone
//! without a final state (its status file says it trains, its lock is
//! free), training again, the ranks of a multi-process job as their
//! heartbeat files tell them, why the status file cannot be read, and the
//! job's processes on this machine (CPU, memory, GPU memory).
//! Each change reaches the screen once, as a [`Liveness`] notice; the
//! processes' readings come every second.

use std::path::Path;
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::Duration;

use super::processes::ProcessMeter;
use crate::tui::process::{GoneRun, Liveness};
use trainui_protocol::control;
use trainui_protocol::ranks::{self, RankView};
use trainui_protocol::rundir;
use trainui_protocol::runlock;

/// How often the follower reads the ranks' files: each rank rewrites its
/// own about once a second, and the screen shows it within this much more.
const RANKS_EVERY: Duration = Duration::from_millis(250);
/// How often the follower checks that the run's process is still there,
/// in readings of the ranks (2 s).
const LIVENESS_EVERY: u32 = 8;
/// How often the job's processes are read, in readings of the ranks (1 s;
/// a divisor of [`LIVENESS_EVERY`]).
const PROCESSES_EVERY: u32 = 4;

/// Watches the run's process on a thread of its own: a notice when it is
/// gone without a final state (and the command files this process left
/// for it are withdrawn), another when a process trains in the run again;
/// its ranks as they move; the processes of its ranks on this machine.
pub fn watch_liveness(run_dir: &Path) -> std::io::Result<Receiver<Liveness>> {
    watch(run_dir, None)
}

/// As [`watch_liveness`], for the job this process started: `job` says
/// its pid now (a relaunch has another), and every process it started is
/// read with its ranks.
pub fn watch_job_liveness(
    run_dir: &Path,
    job: impl Fn() -> u32 + Send + 'static,
) -> std::io::Result<Receiver<Liveness>> {
    watch(run_dir, Some(Box::new(job)))
}

/// The pid of the job this process started, read when its processes are.
type JobPid = Box<dyn Fn() -> u32 + Send>;

fn watch(run_dir: &Path, job: Option<JobPid>) -> std::io::Result<Receiver<Liveness>> {
    let (notices, receiver) = mpsc::channel();
    let run_dir = run_dir.to_owned();
    thread::Builder::new()
        .name("liveness".into())
        .spawn(move || {
            let mut gone = false;
            let mut ranks = Vec::new();
            let mut told = None;
            let mut meter = ProcessMeter::new();
            let mut shown_processes = false;
            let mut first = true;
            let mut trouble = None;
            for reading in (0..LIVENESS_EVERY).cycle() {
                if !std::mem::take(&mut first) {
                    thread::sleep(RANKS_EVERY);
                }
                // A run on another machine: its connection, as it changes.
                let now = crate::remote::connection_trouble(&run_dir);
                if now != trouble {
                    trouble.clone_from(&now);
                    if notices.send(Liveness::Connection(now)).is_err() {
                        return;
                    }
                }
                if reading % PROCESSES_EVERY == 0 {
                    let processes = job_processes(&mut meter, &ranks, job.as_ref());
                    let none = processes.is_empty();
                    // An empty reading is sent once, when the processes end.
                    if (!none || shown_processes)
                        && notices.send(Liveness::Processes(processes)).is_err()
                    {
                        return;
                    }
                    shown_processes = !none;
                }
                if reading % LIVENESS_EVERY != 0 {
                    if !send_ranks(&run_dir, &mut ranks, &notices) {
                        return;
                    }
                    continue;
                }
                let (notice, problem) = liveness(&run_dir);
                if problem != told {
                    told.clone_from(&problem);
                    if let Some(problem) = problem
                        && notices.send(Liveness::Unreadable(problem)).is_err()
                    {
                        return;
                    }
                }
                if matches!(notice, Liveness::Gone(_)) != gone {
                    gone = !gone;
                    if gone {
                        control::withdraw_own(&run_dir);
                    }
                    if notices.send(notice).is_err() {
                        return;
                    }
                }
                if !send_ranks(&run_dir, &mut ranks, &notices) {
                    return;
                }
            }
        })?;
    Ok(receiver)
}

/// Reads the ranks' files; sends them when one moved on, changed its
/// phase or verdict, or beat. False when the screen is gone.
fn send_ranks(run_dir: &Path, ranks: &mut Vec<RankView>, notices: &mpsc::Sender<Liveness>) -> bool {
    let now_ranks = ranks_of(run_dir);
    let key = |views: &[RankView]| -> Vec<String> {
        views
            .iter()
            .map(|v| {
                let b = &v.beat;
                format!(
                    "{} {:?} {:?} {} {}",
                    b.rank, v.verdict, b.phase, b.step, b.beat
                )
            })
            .collect()
    };
    if key(&now_ranks) == key(ranks) {
        return true;
    }
    ranks.clone_from(&now_ranks);
    notices.send(Liveness::Ranks(now_ranks)).is_ok()
}

/// The job's processes on this machine: its ranks here, and the job this
/// process started with every process under it.
fn job_processes(
    meter: &mut ProcessMeter,
    ranks: &[RankView],
    job: Option<&JobPid>,
) -> Vec<crate::tui::process::JobProcess> {
    let host = ranks::this_host();
    let mut pids: Vec<u32> = ranks
        .iter()
        .filter(|view| host.as_deref() == Some(view.beat.host.as_str()))
        .map(|view| view.beat.pid)
        .collect();
    let root = job.map(|pid| pid());
    pids.extend(root);
    meter.read(&pids, root)
}

/// Whether the run in `run_dir` has a process, read from its status file
/// and its lock, and why the status file cannot be read if it cannot. A
/// run that ended with a final state is not gone: it is over; one without
/// a status file yet is starting; one whose status file cannot be read is
/// judged by its lock alone.
fn liveness(run_dir: &Path) -> (Liveness, Option<String>) {
    let resume = crate::remote::resume_command(run_dir);
    let status = match rundir::read_status(run_dir) {
        Ok(status) => status,
        Err(_) if std::fs::symlink_metadata(run_dir.join(rundir::STATUS_FILE)).is_err() => {
            return (Liveness::Alive, None);
        }
        Err(err) => {
            let notice = if runlock::lock_held(run_dir) == Some(false) {
                Liveness::Gone(GoneRun {
                    pid: 0,
                    since: "? (its status file cannot be read)".into(),
                    last_checkpoint: None,
                    resume,
                })
            } else {
                Liveness::Alive
            };
            return (notice, Some(err.to_string()));
        }
    };
    if status.state.is_final() || crate::remote::run_alive(run_dir, status.pid) {
        return (Liveness::Alive, None);
    }
    let resume = match status.producer.as_ref().filter(|p| p.name != "trainui") {
        Some(producer) => format!("the job's own command ({} job)", producer.framework),
        None => resume,
    };
    let gone = Liveness::Gone(GoneRun {
        pid: status.pid,
        since: status.updated_at,
        last_checkpoint: status.last_checkpoint,
        resume,
    });
    (gone, None)
}

/// The ranks of a multi-process job (none for trainui's own trainer,
/// which has no rank files), judged against the run's stall timeout.
fn ranks_of(run_dir: &Path) -> Vec<RankView> {
    let stall_timeout = rundir::read_status(run_dir)
        .ok()
        .and_then(|status| status.settings)
        .map_or(300.0, |s| s.watchdog.stall_timeout_seconds);
    ranks::read(run_dir, control::unix_now(), stall_timeout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use trainui_protocol::events::{Phase, RankBeat, RunState, SCHEMA_VERSION};

    fn write_rank(run: &Path, step: u64) {
        let now = control::unix_now();
        let beat = RankBeat {
            v: SCHEMA_VERSION,
            rank: 0,
            world_size: 1,
            local_rank: 0,
            host: ranks::this_host().unwrap_or_default(),
            pid: std::process::id(),
            phase: Phase::Training,
            step,
            state: RunState::Training,
            beat: "2026-11-29T15:00:01.000Z".into(),
            beat_unix: now,
            written_unix: now,
            signal: None,
        };
        let dir = run.join(ranks::RANKS_DIR);
        std::fs::create_dir_all(&dir).unwrap();
        let temp = dir.join("rank-0.json.tmp");
        std::fs::write(&temp, serde_json::to_vec(&beat).unwrap()).unwrap();
        std::fs::rename(temp, dir.join("rank-0.json")).unwrap();
    }

    /// The next rank notice, and how long it took; other notices are
    /// passed over.
    fn next_ranks(notices: &Receiver<Liveness>) -> (Vec<RankView>, Duration) {
        let asked = Instant::now();
        loop {
            let notice = notices
                .recv_timeout(Duration::from_secs(30))
                .expect("a rank notice comes");
            if let Liveness::Ranks(views) = notice {
                return (views, asked.elapsed());
            }
        }
    }

    #[test]
    fn a_rank_that_moves_on_is_told_within_a_second_and_its_process_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path();
        write_rank(run, 0);
        let notices = watch_liveness(run).unwrap();
        let (views, _) = next_ranks(&notices);
        assert_eq!(views[0].beat.step, 0);
        // A rank's file is rewritten about once a second: the screen must
        // not show a step from seconds before (the header reads the events
        // at once). Margin for a loaded machine: a reading is due every
        // RANKS_EVERY.
        let mut slowest = Duration::ZERO;
        for step in [120, 240, 360] {
            write_rank(run, step);
            let (views, took) = next_ranks(&notices);
            assert_eq!(views[0].beat.step, step);
            slowest = slowest.max(took);
        }
        assert!(
            slowest < Duration::from_millis(1500),
            "the rank line lags: {slowest:?} after its file changed"
        );
        // The rank's process (this one, on this machine) is read.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match notices.recv_timeout(Duration::from_secs(30)) {
                Ok(Liveness::Processes(processes)) => {
                    let me = processes
                        .iter()
                        .find(|p| p.pid == std::process::id())
                        .expect("the rank's pid is read");
                    assert!(me.memory.is_some_and(|m| m > 0), "{me:?}");
                    break;
                }
                Ok(_) if Instant::now() < deadline => {}
                other => panic!("no reading of the rank's process: {other:?}"),
            }
        }
    }

    #[test]
    fn a_run_whose_status_cannot_be_read_is_judged_by_its_lock_and_the_reason_said() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path();
        std::fs::create_dir(run.join("status")).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(run.join(rundir::STATUS_FILE))
            .status()
            .unwrap();
        assert!(made.success());
        let lock = runlock::RunLock::take(run).unwrap();
        let (notice, problem) = liveness(run);
        assert!(matches!(notice, Liveness::Alive), "{notice:?}");
        let problem = problem.unwrap();
        assert!(problem.contains("is a FIFO"), "{problem}");
        drop(lock);
        let (notice, problem) = liveness(run);
        assert!(matches!(notice, Liveness::Gone(_)), "{notice:?}");
        assert!(problem.is_some());
        // No status file yet: a run that is starting.
        std::fs::remove_file(run.join(rundir::STATUS_FILE)).unwrap();
        let (notice, problem) = liveness(run);
        assert!(matches!(notice, Liveness::Alive) && problem.is_none());
    }
}
