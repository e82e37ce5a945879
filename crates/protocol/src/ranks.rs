//! The ranks of a multi-process job, as their own heartbeat files tell it
//! (`RUN_DIR/ranks/rank-N.json`, written by the Python package): which rank
//! is where, and which went silent. Rank 0 cannot say which rank is stuck
//! (it is waiting for that rank in a collective), so each rank speaks for
//! itself.

use std::path::Path;

use crate::events::{Phase, RankBeat, RunState, SCHEMA_VERSION};
use crate::runfile;

/// Folder of the rank files in a run directory.
pub const RANKS_DIR: &str = "ranks";

/// How a rank is doing, judged from its heartbeat file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Beating.
    Alive,
    /// Its training is over (phase `done`).
    Done,
    /// It ended on a stop (state `stopped`, phase `done`): asked by a
    /// command, or by the signal it names (a launcher such as torchrun
    /// ending it after another rank failed).
    Stopped(Option<StopSignal>),
    /// It failed (state `failed`): an error of its own, or of a peer it
    /// waited for.
    Failed,
    /// No heartbeat for longer than the stall timeout.
    Silent,
    /// Its process is gone (seen on this host only).
    Gone,
}

impl Verdict {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alive => "ok",
            Self::Done => "done",
            Self::Stopped(_) => "stopped",
            Self::Failed => "FAILED",
            Self::Silent => "SILENT",
            Self::Gone => "GONE",
        }
    }

    /// The rank holds the others up: they wait for it in a collective.
    #[must_use]
    pub fn is_stuck(self) -> bool {
        matches!(self, Self::Silent | Self::Gone)
    }

    /// The rank's part of the run is over (its process may still be
    /// there, writing its last files).
    #[must_use]
    pub fn is_final(self) -> bool {
        matches!(self, Self::Done | Self::Stopped(_) | Self::Failed)
    }

    /// How the rank's end reads: `stopped by SIGTERM`, or its verdict.
    #[must_use]
    pub fn words(self) -> String {
        match self {
            Self::Stopped(Some(signal)) => format!("stopped by {}", signal.as_str()),
            other => other.as_str().to_owned(),
        }
    }
}

/// A signal that asks a process to stop, as a rank file names it
/// (`signal`: the first one the rank caught before it ended).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    Interrupt,
    Terminate,
    HangUp,
}

impl StopSignal {
    /// The name a rank file gives it, e.g. `SIGTERM`; none for another text.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "SIGINT" => Some(Self::Interrupt),
            "SIGTERM" => Some(Self::Terminate),
            "SIGHUP" => Some(Self::HangUp),
            _ => None,
        }
    }

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Interrupt => "SIGINT",
            Self::Terminate => "SIGTERM",
            Self::HangUp => "SIGHUP",
        }
    }
}

/// One rank and how it is doing.
#[derive(Debug, Clone, PartialEq)]
pub struct RankView {
    pub beat: RankBeat,
    /// Seconds since its last heartbeat.
    pub silent_secs: f64,
    pub verdict: Verdict,
}

impl RankView {
    /// `rank 1 (box, pid 4242): generating at step 40, last beat 15:00:01 UTC (75s ago), SILENT`;
    /// a rank that ended reads how (`FAILED at step 40`, `stopped by
    /// SIGTERM at step 40`) instead of its phase.
    #[must_use]
    pub fn describe(&self) -> String {
        let beat = &self.beat;
        format!(
            "rank {} ({}, pid {}): {} at step {}, last beat {} UTC ({:.0}s ago){}",
            beat.rank,
            crate::text::escape(&beat.host),
            beat.pid,
            if matches!(self.verdict, Verdict::Failed | Verdict::Stopped(_)) {
                self.verdict.words()
            } else {
                beat.phase.as_str().to_owned()
            },
            beat.step,
            crate::text::escape(
                beat.beat
                    .get(11..19)
                    .map_or(beat.beat.as_str(), |clock| clock)
            ),
            self.silent_secs,
            match self.verdict {
                Verdict::Alive | Verdict::Done | Verdict::Stopped(_) | Verdict::Failed => {
                    String::new()
                }
                Verdict::Silent => ", SILENT".into(),
                Verdict::Gone => ", GONE (its process ended)".into(),
            }
        )
    }
}

/// The rank that holds the others up: of the silent or gone ranks, one
/// whose process ended first (the others fail or wait because of it), else
/// the one silent longest.
#[must_use]
pub fn first_stuck(ranks: &[RankView]) -> Option<&RankView> {
    ranks
        .iter()
        .filter(|view| view.verdict.is_stuck())
        .min_by(|a, b| {
            (a.verdict != Verdict::Gone)
                .cmp(&(b.verdict != Verdict::Gone))
                .then(a.beat.beat_unix.total_cmp(&b.beat.beat_unix))
        })
}

/// The ranks of the run in `root`, by rank, judged at `now_unix` against
/// `stall_timeout` seconds. A run without rank files (trainui's own
/// trainer) has none; files that do not parse, are no regular files or are
/// too large, or come from a newer protocol, are left out.
#[must_use]
pub fn read(root: &Path, now_unix: f64, stall_timeout: f64) -> Vec<RankView> {
    let Ok(entries) = std::fs::read_dir(root.join(RANKS_DIR)) else {
        return Vec::new();
    };
    let host = this_host();
    let mut ranks: Vec<RankView> = entries
        .filter_map(Result::ok)
        .filter(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.starts_with("rank-") && name.ends_with(".json")
        })
        .filter_map(|entry| runfile::read(&entry.path(), runfile::RANK_LIMIT).ok())
        .filter_map(|bytes| serde_json::from_slice::<RankBeat>(&bytes).ok())
        .filter(|beat| beat.v <= SCHEMA_VERSION)
        .map(|beat| {
            let signal = beat.signal.as_deref().and_then(StopSignal::from_name);
            judge(beat, signal, now_unix, stall_timeout, host.as_deref())
        })
        .collect();
    ranks.sort_by_key(|view| view.beat.rank);
    ranks
}

fn judge(
    beat: RankBeat,
    signal: Option<StopSignal>,
    now_unix: f64,
    stall_timeout: f64,
    host: Option<&str>,
) -> RankView {
    let silent_secs = (now_unix - beat.beat_unix).max(0.0);
    let here = host.is_some_and(|h| h == beat.host);
    let verdict = if beat.state == RunState::Failed {
        Verdict::Failed
    } else if beat.phase == Phase::Done && (beat.state == RunState::Stopped || signal.is_some()) {
        // A rank a signal ended is never `done`, whatever state it wrote.
        Verdict::Stopped(signal)
    } else if beat.phase == Phase::Done {
        Verdict::Done
    } else if here && !Path::new(&format!("/proc/{}", beat.pid)).exists() {
        Verdict::Gone
    } else if silent_secs > stall_timeout {
        Verdict::Silent
    } else {
        Verdict::Alive
    };
    RankView {
        beat,
        silent_secs,
        verdict,
    }
}

/// This machine's host name, as the Python package writes it
/// (`socket.gethostname()`).
#[must_use]
pub fn this_host() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::RunState;

    fn beat(rank: u32, pid: u32, beat_unix: f64, phase: Phase) -> RankBeat {
        RankBeat {
            v: SCHEMA_VERSION,
            rank,
            world_size: 2,
            local_rank: rank,
            host: this_host().unwrap_or_default(),
            pid,
            phase,
            step: 40,
            state: RunState::Training,
            beat: "2026-11-29T15:00:01.000Z".into(),
            beat_unix,
            written_unix: beat_unix,
            signal: None,
        }
    }

    #[test]
    fn a_rank_without_beats_for_the_stall_timeout_is_silent_and_a_dead_one_gone() {
        let dir = tempfile::tempdir().unwrap();
        let ranks = dir.path().join(RANKS_DIR);
        std::fs::create_dir(&ranks).unwrap();
        let me = std::process::id();
        let files = [
            beat(0, me, 1000.0, Phase::Training),
            beat(1, me, 900.0, Phase::Generating),
            beat(2, u32::MAX - 1, 990.0, Phase::Training),
            beat(3, me, 10.0, Phase::Done),
        ];
        for file in &files {
            std::fs::write(
                ranks.join(format!("rank-{}.json", file.rank)),
                serde_json::to_vec(file).unwrap(),
            )
            .unwrap();
        }
        std::fs::write(ranks.join("rank-9.json"), "{ half a file").unwrap();
        let views = read(dir.path(), 1001.0, 60.0);
        let verdicts: Vec<(u32, Verdict)> =
            views.iter().map(|v| (v.beat.rank, v.verdict)).collect();
        assert_eq!(
            verdicts,
            [
                (0, Verdict::Alive),
                (1, Verdict::Silent),
                (2, Verdict::Gone),
                (3, Verdict::Done),
            ]
        );
        let silent = views[1].describe();
        assert!(
            silent.contains("rank 1") && silent.contains("generating at step 40"),
            "{silent}"
        );
        assert!(
            silent.contains("15:00:01")
                && silent.contains("101s ago")
                && silent.ends_with("SILENT"),
            "{silent}"
        );
        assert_eq!(
            first_stuck(&views).map(|v| v.beat.rank),
            Some(2),
            "a rank whose process ended comes before one that is only silent"
        );
        assert!(read(&dir.path().join("nothing"), 0.0, 1.0).is_empty());
    }

    #[test]
    fn a_rank_a_signal_or_a_stop_ended_reads_stopped_not_done() {
        let dir = tempfile::tempdir().unwrap();
        let ranks = dir.path().join(RANKS_DIR);
        std::fs::create_dir(&ranks).unwrap();
        let mut finished = beat(0, u32::MAX - 1, 995.0, Phase::Done);
        finished.state = RunState::Finished;
        let mut stopped = beat(1, u32::MAX - 1, 990.0, Phase::Done);
        stopped.state = RunState::Stopped;
        let mut terminated = beat(2, u32::MAX - 1, 990.0, Phase::Done);
        terminated.state = RunState::Stopped;
        // An older writer's `finished` with the signal named is stopped too.
        let mut finished_by_signal = beat(3, u32::MAX - 1, 990.0, Phase::Done);
        finished_by_signal.state = RunState::Finished;
        let signals = [None, None, Some("SIGTERM"), Some("SIGHUP")];
        for (file, signal) in [&finished, &stopped, &terminated, &finished_by_signal]
            .into_iter()
            .zip(signals)
        {
            let mut json = serde_json::to_value(file).unwrap();
            if let Some(signal) = signal {
                json["signal"] = signal.into();
            }
            std::fs::write(
                ranks.join(format!("rank-{}.json", file.rank)),
                serde_json::to_vec(&json).unwrap(),
            )
            .unwrap();
        }
        let views = read(dir.path(), 1000.0, 60.0);
        let verdicts: Vec<Verdict> = views.iter().map(|v| v.verdict).collect();
        assert_eq!(
            verdicts,
            [
                Verdict::Done,
                Verdict::Stopped(None),
                Verdict::Stopped(Some(StopSignal::Terminate)),
                Verdict::Stopped(Some(StopSignal::HangUp)),
            ]
        );
        let line = views[2].describe();
        assert!(
            line.contains("stopped by SIGTERM at step 40") && !line.contains("done"),
            "{line}"
        );
        assert_eq!(views[1].verdict.words(), "stopped");
        assert!(views.iter().all(|v| v.verdict.is_final()));
        assert!(first_stuck(&views).is_none());
    }

    #[test]
    fn a_rank_that_failed_reads_failed_not_done() {
        let dir = tempfile::tempdir().unwrap();
        let ranks = dir.path().join(RANKS_DIR);
        std::fs::create_dir(&ranks).unwrap();
        let mut finished = beat(0, u32::MAX - 1, 995.0, Phase::Done);
        finished.state = RunState::Finished;
        let mut failed = beat(1, u32::MAX - 1, 990.0, Phase::Done);
        failed.state = RunState::Failed;
        for file in [&finished, &failed] {
            std::fs::write(
                ranks.join(format!("rank-{}.json", file.rank)),
                serde_json::to_vec(file).unwrap(),
            )
            .unwrap();
        }
        let views = read(dir.path(), 1000.0, 60.0);
        let verdicts: Vec<(u32, Verdict)> =
            views.iter().map(|v| (v.beat.rank, v.verdict)).collect();
        assert_eq!(verdicts, [(0, Verdict::Done), (1, Verdict::Failed)]);
        let line = views[1].describe();
        assert!(
            line.starts_with("rank 1 (") && line.contains("FAILED at step 40"),
            "{line}"
        );
        assert!(
            !line.contains("done"),
            "a rank that failed is not done: {line}"
        );
        assert!(
            first_stuck(&views).is_none(),
            "a rank that failed holds nobody up in a collective"
        );
    }
}
