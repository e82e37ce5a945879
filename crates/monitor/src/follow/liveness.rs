//! The process of a followed run, watched on a thread of its own: gone
//! without a final state (its status file says it trains, its lock is
//! free), training again, the ranks of a multi-process job as their
//! heartbeat files tell them, and why the status file cannot be read.
//! Each change reaches the screen once, as a [`Liveness`] notice.

use std::path::Path;
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::Duration;

use crate::tui::process::{GoneRun, Liveness};
use trainui_protocol::control;
use trainui_protocol::ranks::{self, RankView};
use trainui_protocol::rundir;
use trainui_protocol::runlock;

/// How often the follower checks that the run's process is still there.
const LIVENESS_EVERY: Duration = Duration::from_secs(2);

/// Watches the run's process on a thread of its own, at once and then every
/// `LIVENESS_EVERY`: a notice when it is gone without a final state (and
/// the command files this process left for it are withdrawn), another when
/// a process trains in the run again.
pub fn watch_liveness(run_dir: &Path) -> std::io::Result<Receiver<Liveness>> {
    let (notices, receiver) = mpsc::channel();
    let run_dir = run_dir.to_owned();
    thread::Builder::new()
        .name("liveness".into())
        .spawn(move || {
            let mut gone = false;
            let mut ranks = Vec::new();
            let mut told = None;
            loop {
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
                let now_ranks = ranks_of(&run_dir);
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
                if key(&now_ranks) != key(&ranks) {
                    ranks.clone_from(&now_ranks);
                    if notices.send(Liveness::Ranks(now_ranks)).is_err() {
                        return;
                    }
                }
                thread::sleep(LIVENESS_EVERY);
            }
        })?;
    Ok(receiver)
}

/// Whether the run in `run_dir` has a process, read from its status file
/// and its lock, and why the status file cannot be read if it cannot. A
/// run that ended with a final state is not gone: it is over; one without
/// a status file yet is starting; one whose status file cannot be read is
/// judged by its lock alone.
fn liveness(run_dir: &Path) -> (Liveness, Option<String>) {
    let resume = format!(
        "trainui train --run-dir {} --resume latest",
        run_dir.display()
    );
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
    if status.state.is_final() || runlock::run_alive(run_dir, status.pid) {
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
