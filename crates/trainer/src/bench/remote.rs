//! A run on another machine, reached over ssh, against a real OpenSSH
//! server on 127.0.0.1 ([`Sshd`]) and the real far side (`trainui serve
//! --stdio`, the `trainui` program built beside the bench): how soon
//! `trainui watch HOST:RUN` shows a week-long run, and what following a
//! busy run costs on each side.
//!
//! The busy run is written by a thread of the bench through the run
//! directory's own writer, a step event every [`WRITE_EVERY`] (the status
//! file rewritten with each, as a training loop logging every step does),
//! and followed through [`Remote`] in this process. Over [`FOLLOW_FOR`]
//! the CPU time of each thread of these processes is read from /proc
//! (schedstat, in nanoseconds):
//! - near side: this process's threads but the writer and the one that
//!   measures (what is left is the connection's threads, which also write
//!   the copy); the ssh client (and the `sh` that starts it) beside it;
//! - far side: the `trainui serve --stdio` process; sshd's processes of
//!   the connection beside it.
//!
//! At the end the copy must be byte for byte the run's events.jsonl.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::sshd::{self, Sshd};
use trainui::remote::{self, Depth, Remote, Settings};
use trainui_protocol::config::Config;
use trainui_protocol::error::{Error, Result};
use trainui_protocol::events::{Event, RunState, RunStatus};
use trainui_protocol::rundir::{self, RunDir};

/// The busy run's pace: a step event every 10 ms (100 a second), as a fast
/// training loop logging every step writes them.
pub const WRITE_EVERY: Duration = Duration::from_millis(10);
/// How long the busy run is followed while CPU time is counted.
const FOLLOW_FOR: Duration = Duration::from_secs(10);
/// Steps the busy run holds before it is followed.
const EARLIER_STEPS: u64 = 1_000;
/// Steps the busy run would have: what its events say of its length.
const BUSY_STEPS: u64 = 1_000_000;
/// How long the copy may take to hold the run's last line once the writer
/// has stopped.
const CATCH_UP: Duration = Duration::from_secs(15);
/// Clock ticks a second of /proc's CPU times (USER_HZ, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

#[derive(Debug, Clone, Serialize)]
pub struct RemoteFigures {
    /// From starting `trainui watch HOST:RUN` on the long history to its
    /// screen showing the last step, and the watch process's peak memory.
    pub watch_first_screen_secs: f64,
    pub watch_peak_bytes: u64,
    #[serde(flatten)]
    pub follow: FollowFigures,
}

/// What following a busy remote run cost.
#[derive(Debug, Clone, Serialize)]
pub struct FollowFigures {
    /// Step events written a second while the busy run was followed, and
    /// the seconds it was.
    pub follow_events_per_sec: f64,
    pub follow_secs: f64,
    /// Step events written meanwhile.
    pub follow_events: u64,
    /// CPU over wall time, as a share of a core: trainui in this process
    /// (its threads but the writer's and the measuring one's), and the
    /// ssh client.
    pub near_cpu_share: f64,
    pub near_ssh_cpu_share: f64,
    /// CPU over wall time: `trainui serve --stdio`, and sshd's processes
    /// of the connection.
    pub far_cpu_share: f64,
    pub far_sshd_cpu_share: f64,
    /// Bytes of events.jsonl the copy matched at the end, byte for byte.
    pub copy_bytes: u64,
}

/// Starts a loopback sshd with its files in `dir`, follows a busy run
/// there, then times `trainui watch` on the remote path of the long
/// history at `week` (`steps` steps).
pub fn measure(program: &Path, week: &Path, steps: u64, dir: &Path) -> Result<RemoteFigures> {
    let sshd = Sshd::start(&dir.join("sshd"))?;
    let copies = dir.join("copies");
    let settings = Settings {
        ssh_command: Some(sshd.ssh_command()),
        program: program.to_string_lossy().into_owned(),
    };
    let follow = follow_cost(&sshd, &settings, &copies.join("follow"), &dir.join("busy"))?;
    let remote_week = format!("{}:{}", sshd::HOST, week.display());
    // watch, in tmux, told the same by its environment.
    let env = [
        ("TRAINUI_SSH_COMMAND", sshd.ssh_command()),
        ("TRAINUI_REMOTE_PROGRAM", settings.program.clone()),
        (
            "TRAINUI_REMOTE_CACHE",
            copies.join("watch").to_string_lossy().into_owned(),
        ),
    ];
    let (watch_first_screen_secs, watch_peak_bytes) = super::watched::first_screen_with(
        program,
        Path::new(&remote_week),
        &format!("step {steps}/{steps}"),
        &env,
    )?;
    Ok(RemoteFigures {
        watch_first_screen_secs,
        watch_peak_bytes,
        follow,
    })
}

/// The busy run, written and followed.
fn follow_cost(
    sshd: &Sshd,
    settings: &Settings,
    copies: &Path,
    run: &Path,
) -> Result<FollowFigures> {
    let mut writer = Writer::start(run)?;
    let target_text = format!("{}:{}", sshd::HOST, run.display());
    let target = remote::target(Path::new(&target_text))
        .ok_or_else(|| Error::Failed(format!("{target_text} is not read as a remote path")))?;
    let mut follower = Remote::with(settings.clone(), Some(copies.to_owned()))?;
    let copy = follower.follow(&target, Depth::Thinned)?;
    follower.wait_synced()?;
    if let Some(trouble) = remote::connection_trouble(&copy) {
        return Err(Error::Failed(trouble));
    }
    // The first copy is in; the connection settles into following.
    thread::sleep(Duration::from_secs(1));
    let before = Cpu::read(sshd.pid(), writer.tid)?;
    let (started, written) = (Instant::now(), writer.steps());
    thread::sleep(FOLLOW_FOR);
    let after = Cpu::read(sshd.pid(), writer.tid)?;
    let follow_secs = started.elapsed().as_secs_f64();
    let follow_events = writer.steps() - written;
    writer.finish()?;
    if after.serving() != before.serving() {
        return Err(Error::Failed(format!(
            "the far side's process changed while it was measured ({:?}, then {:?}): \
             the connection was made again",
            before.serving(),
            after.serving()
        )));
    }
    let copy_bytes = caught_up(run, &copy)?;
    if let Some(trouble) = remote::connection_trouble(&copy) {
        return Err(Error::Failed(trouble));
    }
    drop(follower);
    let share = |secs: f64| secs / follow_secs;
    Ok(FollowFigures {
        follow_events_per_sec: follow_events as f64 / follow_secs,
        follow_secs,
        follow_events,
        near_cpu_share: share(spent(&before.own, &after.own)),
        near_ssh_cpu_share: share(spent(&before.ssh, &after.ssh)),
        far_cpu_share: share(spent(&before.serve, &after.serve)),
        far_sshd_cpu_share: share(spent(&before.sshd, &after.sshd)),
        copy_bytes,
    })
}

/// Waits until the copy's events.jsonl is as long as the run's, then
/// checks it is the same, byte for byte; its length.
fn caught_up(run: &Path, copy: &Path) -> Result<u64> {
    let (far, near) = (
        run.join(rundir::EVENTS_FILE),
        copy.join(rundir::EVENTS_FILE),
    );
    let original = std::fs::read(&far).map_err(Error::io("cannot read", &far))?;
    let started = Instant::now();
    loop {
        let copied = std::fs::read(&near).unwrap_or_default();
        if copied.len() >= original.len() || started.elapsed() > CATCH_UP {
            if copied != original {
                let same = copied
                    .iter()
                    .zip(&original)
                    .take_while(|(a, b)| a == b)
                    .count();
                return Err(Error::Failed(format!(
                    "the copy of the followed run is not the run: {} bytes against {}, \
                     the first {same} the same",
                    copied.len(),
                    original.len()
                )));
            }
            return Ok(copied.len() as u64);
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// CPU seconds of each thread, by process and thread id, at the start or
/// the end of the measurement.
struct Cpu {
    /// This process's threads but the writer's and the one measuring.
    own: Threads,
    /// This process's children but sshd: the ssh client and its `sh`.
    ssh: Threads,
    /// The far side: `trainui serve --stdio`.
    serve: Threads,
    /// sshd's other processes (the connection's session).
    sshd: Threads,
}

type Threads = BTreeMap<(u32, u32), f64>;

impl Cpu {
    fn read(sshd: u32, writer: u32) -> Result<Self> {
        let own_pid = std::process::id();
        let mut own = threads(own_pid);
        let measuring = thread_id().unwrap_or(own_pid);
        if own.remove(&(own_pid, writer)).is_none() || own.remove(&(own_pid, measuring)).is_none() {
            return Err(Error::Failed(
                "cannot find the writer's and the bench's threads in /proc".into(),
            ));
        }
        let processes = processes();
        let far = descendants(&processes, sshd);
        let near = descendants(&processes, own_pid)
            .into_iter()
            .filter(|pid| *pid != sshd && !far.contains(pid))
            .collect::<BTreeSet<u32>>();
        let (mut serve, mut session) = (Threads::new(), Threads::new());
        for pid in far {
            let command = &processes[&pid].command;
            let serves =
                command.iter().any(|a| a == "serve") && command.iter().any(|a| a == "--stdio");
            if serves {
                serve.extend(threads(pid));
            } else {
                session.extend(threads(pid));
            }
        }
        let serving: BTreeSet<u32> = serve.keys().map(|(pid, _)| *pid).collect();
        if serving.len() != 1 {
            return Err(Error::Failed(format!(
                "found {} `trainui serve --stdio` processes under the bench's sshd, not one",
                serving.len()
            )));
        }
        Ok(Self {
            own,
            ssh: near.into_iter().flat_map(threads).collect(),
            serve,
            sshd: session,
        })
    }

    /// The far side's process.
    fn serving(&self) -> Option<u32> {
        self.serve.keys().next().map(|(pid, _)| *pid)
    }
}

/// CPU seconds spent between two readings: by the threads seen at both,
/// and all of those seen only at the second (they started meanwhile).
fn spent(before: &Threads, after: &Threads) -> f64 {
    after
        .iter()
        .map(|(id, end)| end - before.get(id).copied().unwrap_or(0.0))
        .sum()
}

/// Every process /proc shows, by pid: its parent and its command line.
fn processes() -> HashMap<u32, Process> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return HashMap::new();
    };
    entries
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let parent = stat_fields(&stat).get(1)?.parse().ok()?;
            let command = std::fs::read(format!("/proc/{pid}/cmdline"))
                .unwrap_or_default()
                .split(|b| *b == 0)
                .map(|part| String::from_utf8_lossy(part).into_owned())
                .collect();
            Some((pid, Process { parent, command }))
        })
        .collect()
}

struct Process {
    parent: u32,
    command: Vec<String>,
}

/// The processes below `root` (not itself).
fn descendants(processes: &HashMap<u32, Process>, root: u32) -> BTreeSet<u32> {
    let mut found = BTreeSet::new();
    let mut grew = true;
    while grew {
        grew = false;
        for (pid, process) in processes {
            if (process.parent == root || found.contains(&process.parent)) && found.insert(*pid) {
                grew = true;
            }
        }
    }
    found
}

/// The CPU seconds of each thread of process `pid`: its run time in
/// nanoseconds from schedstat, or (a kernel without it) utime + stime in
/// clock ticks from stat.
fn threads(pid: u32) -> Threads {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Threads::new();
    };
    entries
        .filter_map(|entry| {
            let tid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let task = format!("/proc/{pid}/task/{tid}");
            let nanos = std::fs::read_to_string(format!("{task}/schedstat"))
                .ok()
                .and_then(|text| text.split_whitespace().next()?.parse::<f64>().ok());
            let secs = if let Some(nanos) = nanos {
                nanos / 1e9
            } else {
                let stat = std::fs::read_to_string(format!("{task}/stat")).ok()?;
                let fields = stat_fields(&stat);
                let field = |n: usize| fields.get(n).and_then(|f| f.parse::<f64>().ok());
                // utime and stime: the 14th and 15th fields.
                (field(11)? + field(12)?) / TICKS_PER_SEC
            };
            Some(((pid, tid), secs))
        })
        .collect()
}

/// The fields of a /proc stat line after the command name (which may hold
/// spaces) in brackets: the state first, then the parent.
fn stat_fields(stat: &str) -> Vec<&str> {
    stat.rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect()
}

/// The thread that writes the busy run.
struct Writer {
    stop: Arc<AtomicBool>,
    steps: Arc<AtomicU64>,
    thread: Option<thread::JoinHandle<Result<()>>>,
    /// Its thread id, for its /proc stat.
    tid: u32,
}

impl Writer {
    /// Writes the start of the run and [`EARLIER_STEPS`] steps in `run`,
    /// then starts writing a step every [`WRITE_EVERY`] on a thread.
    fn start(run: &Path) -> Result<Self> {
        let mut run_dir = RunDir::open(
            run,
            &Config::default(),
            RunStatus::new("busy".into(), BUSY_STEPS),
        )?;
        record(&mut run_dir, run, &super::watched::started(BUSY_STEPS))?;
        let training = Event::State {
            step: 0,
            state: RunState::Training,
        };
        record(&mut run_dir, run, &training)?;
        for step in 1..=EARLIER_STEPS {
            record(
                &mut run_dir,
                run,
                &super::watched::step_event(step, BUSY_STEPS),
            )?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let steps = Arc::new(AtomicU64::new(0));
        let (tid_sender, tid) = mpsc::channel();
        let thread = {
            let (stop, steps, run) = (Arc::clone(&stop), Arc::clone(&steps), run.to_owned());
            thread::Builder::new()
                .name("bench-writer".into())
                .spawn(move || {
                    let _ = tid_sender.send(thread_id());
                    let mut next = Instant::now();
                    let mut last = EARLIER_STEPS;
                    while !stop.load(Ordering::Relaxed) {
                        last += 1;
                        let event = super::watched::step_event(last, BUSY_STEPS);
                        record(&mut run_dir, &run, &event)?;
                        steps.fetch_add(1, Ordering::Relaxed);
                        next += WRITE_EVERY;
                        thread::sleep(next.saturating_duration_since(Instant::now()));
                    }
                    Ok(())
                })
                .map_err(|e| Error::Failed(format!("cannot start the bench's writer: {e}")))?
        };
        let tid = tid
            .recv()
            .ok()
            .flatten()
            .ok_or_else(|| Error::Failed("cannot find the writer thread in /proc".into()))?;
        Ok(Self {
            stop,
            steps,
            thread: Some(thread),
            tid,
        })
    }

    fn steps(&self) -> u64 {
        self.steps.load(Ordering::Relaxed)
    }

    /// Stops the writer; its error, if it met one.
    fn finish(&mut self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(thread::JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(Error::Failed("the bench's writer panicked".into())),
            None => Ok(()),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

fn record(run_dir: &mut RunDir, run: &Path, event: &Event) -> Result<()> {
    run_dir
        .record(event)
        .map_err(Error::io("cannot write", run))
}

/// The calling thread's id, from /proc/thread-self (`PID/task/TID`).
fn thread_id() -> Option<u32> {
    let link: PathBuf = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}
