//! `trainui watch RUN_DIR...`: the TUI fed by run directories instead of
//! an in-process trainer. It replays each run's events.jsonl, then follows
//! what is appended; its keys write command files to the followed run's
//! control spool. Several runs share one screen: their curves in one
//! chart, their figures in a table. Quitting never affects a run.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::thread;
use std::time::{Duration, SystemTime};

use notify::Watcher;

use crate::config::{self, Config};
use crate::control;
use crate::error::{Error, Result};
use crate::events::{Command, Event, SCHEMA_VERSION};
use crate::ranks::{self, RankView};
use crate::rundir::{self, EventTail};
use crate::runfile;
use crate::runlock;
use crate::runs;
use crate::tui;
use crate::tui::app::{App, GoneRun, Liveness, Owner};
use crate::tui::board::Board;

/// Reads waiting for the screen; the reader waits when it is this far
/// ahead, so memory stays bounded however long the history.
const BACKLOG: usize = 4;
/// Bytes parsed per read, so a long history streams instead of loading whole.
const CHUNK: u64 = 4 << 20;
/// Longest wait between looks at the file when no notification arrives.
const POLL: Duration = Duration::from_millis(500);
/// The most runs one screen compares: beyond it the table and the colours
/// stop telling them apart, and each run costs two threads and its reads.
const MAX_RUNS: usize = 16;
/// How often `watch` checks that the run's process is still there.
const LIVENESS_EVERY: Duration = Duration::from_secs(2);

/// An app for the run in `run_dir`, configured from its config.json when it
/// has one yet (a run of schema 1 has its live settings only there; later
/// runs bring them in their events).
#[must_use]
pub fn attached_app(run_dir: &Path, color: bool) -> App {
    let config: Option<Config> =
        runfile::read(&run_dir.join(rundir::CONFIG_FILE), runfile::CONFIG_LIMIT)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let name = run_dir.file_name().map_or_else(
        || run_dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut app = App::new(
        name,
        config.as_ref().map_or(0, |c| c.train.max_steps),
        color,
    );
    app.status.settings = config.as_ref().map(config::live_settings);
    app.owner = Owner::Watcher;
    app
}

/// What the reader of a run's events hands the screen.
// Nearly every item is an event: boxing it would cost an allocation each
// (a week's history is a million).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
enum Read {
    /// An event, with the time written on its line.
    Event(Event, SystemTime),
    /// events.jsonl was replaced or cut shorter: the events after this come
    /// from the new file's start, and those before belong to another run.
    StartOver,
    /// Something the reader noticed about the file (it cannot be read, lines
    /// were skipped), said once when it changes.
    Warning(String),
}

/// The events of a run directory, read on a thread of their own: the
/// history first, then each append. They travel a read at a time (a week's
/// history is a million events) and are handed out one by one.
pub struct Followed {
    run_dir: PathBuf,
    reads: Receiver<Vec<Read>>,
    pending: RefCell<VecDeque<Read>>,
}

impl Followed {
    /// The next event, waiting at most `timeout` for one; what the reader
    /// says besides events (a start-over, a warning) is passed over: the
    /// screen takes those through [`tui::EventSource`].
    pub fn recv_timeout(&self, timeout: Duration) -> Result<(Event, SystemTime), RecvTimeoutError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            while let Some(read) = self.pending.borrow_mut().pop_front() {
                if let Read::Event(event, at) = read {
                    return Ok((event, at));
                }
            }
            let reads = self
                .reads
                .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))?;
            self.pending.borrow_mut().extend(reads);
        }
    }

    /// The front of the queue, filled from the reader when empty, taken
    /// when `take` says so.
    fn take_front(&self, take: impl Fn(&Read) -> bool) -> Option<Read> {
        let mut pending = self.pending.borrow_mut();
        if pending.is_empty() {
            pending.extend(self.reads.try_recv().ok()?);
        }
        if take(pending.front()?) {
            pending.pop_front()
        } else {
            None
        }
    }
}

impl tui::EventSource for Followed {
    fn try_next(&self) -> Option<(Event, Option<SystemTime>)> {
        match self.take_front(|read| matches!(read, Read::Event(..)))? {
            Read::Event(event, at) => Some((event, Some(at))),
            Read::StartOver | Read::Warning(_) => None,
        }
    }

    fn aside(&self) -> Option<tui::Aside> {
        match self.take_front(|read| !matches!(read, Read::Event(..)))? {
            Read::StartOver => Some(tui::Aside::StartOver(Box::new(attached_app(
                &self.run_dir,
                false,
            )))),
            Read::Warning(text) => Some(tui::Aside::Warning(text)),
            Read::Event(..) => None,
        }
    }
}

/// Reads the run's events on a thread of its own: the history first, then
/// each append, woken by file notifications or, where none arrive, by polling.
pub fn follow(run_dir: &Path) -> std::io::Result<Followed> {
    follow_ahead(run_dir, BACKLOG)
}

/// As [`follow`], with at most `reads_ahead` reads waiting for the screen
/// (several runs on one screen each keep fewer).
pub fn follow_ahead(run_dir: &Path, reads_ahead: usize) -> std::io::Result<Followed> {
    let (reads, receiver) = mpsc::sync_channel(reads_ahead);
    let reader_dir = run_dir.to_owned();
    thread::Builder::new()
        .name("events-reader".into())
        .spawn(move || read_forever(&reader_dir, &reads))?;
    Ok(Followed {
        run_dir: run_dir.to_owned(),
        reads: receiver,
        pending: RefCell::new(VecDeque::new()),
    })
}

/// What the reader has told of the file so far, to tell each change once.
#[derive(Default)]
struct Told {
    restarts: u64,
    newer: Option<u64>,
    problem: Option<String>,
    overlong: u64,
}

impl Told {
    /// What `tail` shows that was not told yet, in the order it happened:
    /// a start-over comes before the events of the read that found it.
    fn news(&mut self, tail: &EventTail) -> Vec<Read> {
        let mut news = Vec::new();
        if tail.restarts > self.restarts {
            self.restarts = tail.restarts;
            news.push(Read::StartOver);
        }
        if tail.problem != self.problem {
            self.problem.clone_from(&tail.problem);
            if let Some(problem) = &tail.problem {
                news.push(Read::Warning(format!(
                    "{problem}; no events can be shown from it"
                )));
            }
        }
        if tail.overlong > self.overlong {
            news.push(Read::Warning(format!(
                "{}: {} line{} longer than {} MiB skipped unread ({} in all)",
                rundir::EVENTS_FILE,
                tail.overlong - self.overlong,
                if tail.overlong - self.overlong == 1 {
                    ""
                } else {
                    "s"
                },
                runfile::MAX_EVENT_LINE >> 20,
                tail.overlong
            )));
            self.overlong = tail.overlong;
        }
        if tail.newer > self.newer {
            self.newer = tail.newer;
            if let Some(version) = tail.newer {
                news.push(Read::Warning(format!(
                    "{} holds lines of protocol {version}, newer than this trainui reads \
                     ({SCHEMA_VERSION}); they are left out: update trainui to see them",
                    rundir::EVENTS_FILE
                )));
            }
        }
        news
    }
}

fn read_forever(run_dir: &Path, reads: &SyncSender<Vec<Read>>) {
    let (wake, woken) = mpsc::channel();
    // Notifications are an optimisation: without them, polling still works.
    // Only writes wake the reader: its own reads of events.jsonl are
    // notifications too, and waking on them would spin.
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !matches!(e.kind, notify::EventKind::Access(_))) {
            let _ = wake.send(());
        }
    });
    let _watcher = watcher.ok().and_then(|mut watcher| {
        watcher
            .watch(run_dir, notify::RecursiveMode::NonRecursive)
            .ok()
            .map(|()| watcher)
    });
    let mut tail = EventTail::new(run_dir, 0);
    let mut told = Told::default();
    loop {
        loop {
            let batch = tail.read_new_timed(CHUNK);
            let mut read = told.news(&tail);
            let more = !batch.is_empty();
            read.extend(batch.into_iter().map(|(event, at)| Read::Event(event, at)));
            if !read.is_empty() && reads.send(read).is_err() {
                return;
            }
            if !more {
                break;
            }
        }
        match woken.recv_timeout(POLL) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => thread::sleep(POLL),
        }
    }
}

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

/// The run directories `paths` name, each once, in order. A path that is
/// not a run itself but holds runs stands for them (in name order). A lone
/// path that is neither is a run that has not started yet; among several
/// (a glob), files and folders that are no runs are left out.
pub fn targets(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut dirs: Vec<(PathBuf, PathBuf)> = Vec::new();
    let lone = paths.len() == 1;
    for path in paths {
        if !path.is_dir() {
            if lone {
                return Err(Error::Usage(format!(
                    "{}: no such run directory",
                    path.display()
                )));
            }
            continue;
        }
        let found = if runs::is_run(path) {
            vec![path.clone()]
        } else {
            let inside = runs::runs_in(path).map_err(|e| {
                Error::Usage(format!("{}: cannot list its runs: {e}", path.display()))
            })?;
            if inside.is_empty() && lone {
                vec![path.clone()]
            } else {
                inside
            }
        };
        for dir in found {
            // `runs/a`, `./runs/a` and a link to it are one run.
            let real = dir.canonicalize().unwrap_or_else(|_| dir.clone());
            if !dirs.iter().any(|(_, seen)| *seen == real) {
                dirs.push((dir, real));
            }
        }
    }
    if dirs.is_empty() {
        return Err(Error::Usage(format!(
            "no run directory among the {} paths given (trainui runs DIR lists runs)",
            paths.len()
        )));
    }
    if dirs.len() > MAX_RUNS {
        return Err(Error::Usage(format!(
            "{} runs: watch compares at most {MAX_RUNS} at once; name the ones to compare \
             (trainui runs DIR lists them)",
            dirs.len()
        )));
    }
    Ok(dirs.into_iter().map(|(dir, _)| dir).collect())
}

/// Two runs of one name (runs/a/exp, runs/b/exp) go by their paths, which
/// their events replayed do not undo.
fn label_namesakes(apps: &mut [App], run_dirs: &[PathBuf]) {
    let names: Vec<String> = apps.iter().map(|app| app.status.run_name.clone()).collect();
    for (app, run_dir) in apps.iter_mut().zip(run_dirs) {
        if names
            .iter()
            .filter(|&name| *name == app.status.run_name)
            .count()
            > 1
        {
            app.set_label(run_dir.display().to_string());
        }
    }
}

/// Runs the attached TUI until `q`, for one run or several side by side;
/// its keys become command files in the followed run's control spool.
/// `plain` (or NO_COLOR) turns colours off.
pub fn run(paths: &[PathBuf], plain: bool) -> Result<()> {
    if !std::io::stdout().is_terminal() {
        return Err(Error::Usage(
            "watch needs a terminal; for scripts use `trainui status` or read events.jsonl".into(),
        ));
    }
    let run_dirs = targets(paths)?;
    let color = crate::lines::colors_wanted(plain);
    let mut followed = Vec::new();
    let mut apps = Vec::new();
    for run_dir in &run_dirs {
        let reads_ahead = if run_dirs.len() > 1 { 1 } else { BACKLOG };
        let events = follow_ahead(run_dir, reads_ahead).map_err(|e| {
            Error::Failed(format!(
                "cannot read the events of {}: {e}",
                run_dir.display()
            ))
        })?;
        let liveness = watch_liveness(run_dir).map_err(|e| {
            Error::Failed(format!(
                "cannot watch the process of {}: {e}",
                run_dir.display()
            ))
        })?;
        followed.push((events, liveness));
        let mut app = attached_app(run_dir, color);
        app.ascii = !crate::lines::unicode_wanted(plain);
        app.resume = Some(
            crate::text::escape(&format!(
                "trainui train --run-dir {} --resume latest",
                run_dir.display()
            ))
            .into_owned(),
        );
        apps.push(app);
    }
    label_namesakes(&mut apps, &run_dirs);
    let mut records: Vec<fn(&Event) -> Option<String>> = vec![|_| None; run_dirs.len()];
    let mut sends: Vec<_> = run_dirs
        .iter()
        .map(|run_dir| {
            move |command: Command| {
                control::send(run_dir, &command)
                    .err()
                    .map(|e| e.to_string())
            }
        })
        .collect();
    let mut feeds: Vec<tui::Feed> = followed
        .iter()
        .zip(records.iter_mut().zip(sends.iter_mut()))
        .map(|((events, liveness), (record, send))| tui::Feed {
            events,
            liveness: Some(liveness),
            record,
            send,
        })
        .collect();
    let mut board = Board::new(&mut apps);
    tui::in_terminal(|terminal| {
        let input = &mut tui::TerminalInput::default();
        tui::run_board_sampled(terminal, &mut board, input, &mut feeds)
    })?;
    for app in board.runs.iter() {
        crate::process::say(app.farewell());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::RunState;
    use std::io::Write;

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

    fn step(step: u64) -> Event {
        crate::events::examples::step(step, 100, 1.0)
    }

    #[test]
    fn follows_a_run_that_has_not_started_then_appends_in_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let events = follow(dir.path()).unwrap();
        assert!(
            events.recv_timeout(Duration::from_millis(300)).is_err(),
            "nothing yet"
        );
        let mut file = std::fs::File::create(dir.path().join(rundir::EVENTS_FILE)).unwrap();
        let line = |e: &Event| serde_json::to_string(e).unwrap();
        writeln!(file, "{}", line(&step(1))).unwrap();
        let second = line(&Event::State {
            step: 1,
            state: RunState::Paused,
        });
        let (head, rest) = second.split_at(10);
        write!(file, "garbage that is not json\n{head}").unwrap();
        file.flush().unwrap();
        let wait = Duration::from_secs(10);
        assert_eq!(events.recv_timeout(wait).unwrap().0, step(1));
        assert!(
            events.recv_timeout(Duration::from_millis(700)).is_err(),
            "half a line waits"
        );
        writeln!(file, "{rest}").unwrap();
        assert_eq!(
            events.recv_timeout(wait).unwrap().0,
            Event::State {
                step: 1,
                state: RunState::Paused
            }
        );
    }

    #[test]
    fn a_folder_of_runs_stands_for_its_runs_in_name_order_and_each_run_comes_once() {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        for (name, file) in [
            ("b", rundir::EVENTS_FILE),
            ("a", rundir::STATUS_FILE),
            ("not-a-run", "notes.txt"),
        ] {
            let path = runs.join(name).join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "").unwrap();
        }
        std::fs::write(runs.join("notes.txt"), "").unwrap();
        let (a, b) = (runs.join("a"), runs.join("b"));
        let again = runs.join("b/../b");
        let got = targets(&[runs.clone(), again]).unwrap();
        assert_eq!(got, [a.clone(), b.clone()], "b once, however named");
        // A glob's files and folders that are no runs are left out.
        let glob = [a.clone(), runs.join("not-a-run"), runs.join("notes.txt")];
        assert_eq!(targets(&glob).unwrap(), [a]);
        // A run directory stands for itself.
        assert_eq!(targets(std::slice::from_ref(&b)).unwrap(), [b]);
        // A lone folder that holds no run is a run that has not started.
        let fresh = dir.path().join("fresh");
        std::fs::create_dir(&fresh).unwrap();
        assert_eq!(targets(std::slice::from_ref(&fresh)).unwrap(), [fresh]);
        let missing = dir.path().join("missing");
        let err = targets(std::slice::from_ref(&missing))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("{}: no such run directory", missing.display())),
            "{err}"
        );
        let err = targets(&[runs.join("notes.txt"), missing])
            .unwrap_err()
            .to_string();
        assert!(err.contains("no run directory among the 2 paths"), "{err}");
    }

    #[test]
    fn runs_of_one_name_go_by_their_paths_through_their_replayed_starts() {
        let dir = tempfile::tempdir().unwrap();
        let run_dirs = ["a/exp", "b/exp", "c/other"].map(|name| dir.path().join(name));
        let mut apps: Vec<App> = run_dirs
            .iter()
            .map(|run_dir| {
                std::fs::create_dir_all(run_dir).unwrap();
                attached_app(run_dir, false)
            })
            .collect();
        label_namesakes(&mut apps, &run_dirs);
        for app in &mut apps {
            // A run's events name it by its folder.
            app.apply(&crate::events::examples::started("exp", 100));
        }
        let names: Vec<&str> = apps.iter().map(|a| a.status.run_name.as_str()).collect();
        let (a, b) = (run_dirs[0].display(), run_dirs[1].display());
        assert_eq!(names, [a.to_string().as_str(), &b.to_string(), "exp"]);
    }

    #[test]
    fn more_runs_than_one_screen_tells_apart_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for index in 0..=MAX_RUNS {
            let run = dir.path().join(format!("run-{index:02}"));
            std::fs::create_dir(&run).unwrap();
            std::fs::write(run.join(rundir::EVENTS_FILE), "").unwrap();
        }
        let err = targets(&[dir.path().to_owned()]).unwrap_err().to_string();
        assert!(
            err.contains(&format!(
                "{} runs: watch compares at most {MAX_RUNS}",
                MAX_RUNS + 1
            )),
            "{err}"
        );
    }

    /// Threads of this process named `name`, with their read calls so far.
    fn threads_reading(name: &str) -> Vec<(String, u64)> {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|task| {
                let path = task.ok()?.path();
                let comm = std::fs::read_to_string(path.join("comm")).ok()?;
                let io = std::fs::read_to_string(path.join("io")).ok()?;
                let reads = io
                    .lines()
                    .find_map(|l| l.strip_prefix("syscr: "))?
                    .parse()
                    .ok()?;
                (comm.trim() == name).then(|| (path.display().to_string(), reads))
            })
            .collect()
    }

    #[test]
    fn following_an_idle_run_reads_a_few_times_a_second_not_in_a_loop() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(rundir::EVENTS_FILE),
            format!("{}\n", serde_json::to_string(&step(1)).unwrap()),
        )
        .unwrap();
        let before: Vec<String> = threads_reading("events-reader")
            .into_iter()
            .map(|(task, _)| task)
            .collect();
        let events = follow(dir.path()).unwrap();
        assert_eq!(
            events.recv_timeout(Duration::from_secs(10)).unwrap().0,
            step(1)
        );
        let reader = || {
            threads_reading("events-reader")
                .into_iter()
                .filter(|(task, _)| !before.contains(task))
                .map(|(_, reads)| reads)
                .sum::<u64>()
        };
        if threads_reading("events-reader").is_empty() {
            println!("skipped: /proc/self/task/*/io is not readable here");
            return;
        }
        let start = reader();
        std::thread::sleep(Duration::from_secs(3));
        let reads = reader() - start;
        // About two looks a second; a reader woken by its own reads makes
        // thousands.
        assert!(reads < 60, "{reads} reads in 3 s of an idle run");
    }
}

#[cfg(test)]
mod follow_tests {
    //! The real follow path (the reader thread, `Followed`, the screen's
    //! fold) into an app, as `watch` runs it, and what it shows.
    use super::*;
    use std::io::Write;
    use std::time::Instant;

    struct NoKeys;

    impl tui::InputSource for NoKeys {
        fn next(&mut self, _timeout: Duration) -> std::io::Result<Option<tui::Input>> {
            Ok(None)
        }
    }

    /// Feeds `app` what `events` has, as the screen's loop does, until
    /// `done` holds (fails after a generous while).
    fn feed_until(app: &mut App, events: &Followed, what: &str, done: impl Fn(&App) -> bool) {
        let (mut record, mut send) = (|_: &Event| None, |_: Command| None);
        let mut feed = tui::Feed {
            events,
            liveness: None,
            record: &mut record,
            send: &mut send,
        };
        let start = Instant::now();
        while !done(app) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "timed out waiting for {what}; log: {:?}",
                app.log.iter().map(|l| &l.text).collect::<Vec<_>>()
            );
            tui::fold_events(app, &mut feed, &mut NoKeys, SystemTime::now(), 10_000);
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn lines(events: &[Event]) -> String {
        events
            .iter()
            .map(|e| serde_json::to_string(e).unwrap() + "\n")
            .collect()
    }

    fn step(step: u64, max_steps: u64, loss: f64, grad_norm: Option<f64>) -> Event {
        match crate::events::examples::step(step, max_steps, loss) {
            Event::Step(metrics) => Event::Step(crate::events::StepMetrics {
                grad_norm,
                ..metrics
            }),
            _ => unreachable!(),
        }
    }

    /// A long run: validation loss, gradient norm, a warning, a checkpoint.
    fn old_run() -> String {
        let mut events = vec![crate::events::examples::started("old-run", 500)];
        events.extend((1..=300).map(|s| step(s, 500, 2.0, Some(9.75))));
        events.extend([
            Event::EvalStarted {
                step: 300,
                eval: 1,
                samples: 0,
            },
            Event::ValLoss {
                step: 300,
                loss: Some(7.25),
                batches: 1,
                timed_out: false,
            },
            Event::Warning {
                step: 300,
                message: "a warning of the old run".into(),
            },
            Event::Checkpoint {
                step: 300,
                path: "runs/old/checkpoints/checkpoint-300".into(),
            },
        ]);
        lines(&events)
    }

    /// A new run's first lines: shorter than the old run's file.
    fn new_run() -> String {
        lines(&[
            crate::events::examples::started("new-run", 20),
            step(1, 20, 0.5, None),
            step(2, 20, 0.25, None),
        ])
    }

    fn screen(app: &App) -> String {
        let backend = ratatui::backend::TestBackend::new(120, 40);
        let mut terminal = ratatui::Terminal::new(backend).unwrap();
        terminal
            .draw(|frame| tui::render::render(frame, app))
            .unwrap();
        terminal.backend().to_string()
    }

    #[test]
    fn a_replaced_or_truncated_events_file_starts_the_run_over_with_the_new_ones_only() {
        for how in ["replaced", "truncated", "replaced, read at once"] {
            let dir = tempfile::tempdir().unwrap();
            let run_dir = dir.path().join("exp");
            std::fs::create_dir(&run_dir).unwrap();
            let path = run_dir.join(rundir::EVENTS_FILE);
            std::fs::write(&path, old_run()).unwrap();
            let events = follow(&run_dir).unwrap();
            let mut app = attached_app(&run_dir, false);
            app.update(crate::tui::app::Msg::Key(
                ratatui::crossterm::event::KeyEvent::from(
                    ratatui::crossterm::event::KeyCode::Char('l'),
                ),
            ));
            if how != "replaced, read at once" {
                feed_until(&mut app, &events, "the old run", |app| {
                    app.status.warnings == 1
                });
                assert_eq!(app.grad_norm, Some(9.75), "{how}");
                assert_eq!(app.best_val, Some((7.25, 300)), "{how}");
            }
            if how == "truncated" {
                // Cut and rewritten in place (copytruncate): the same file.
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(&path)
                    .unwrap();
                file.write_all(new_run().as_bytes()).unwrap();
            } else {
                // Another file in its place (rotation, a folder reused).
                let fresh = run_dir.join("events.jsonl.new");
                std::fs::write(&fresh, new_run()).unwrap();
                std::fs::rename(&fresh, &path).unwrap();
            }
            feed_until(&mut app, &events, "the new run", |app| {
                app.status.run_name == "new-run" && app.status.current_step == 2
            });
            // Only the new run's values, in the view the user chose.
            assert_eq!(app.grad_norm, None, "{how}");
            assert_eq!(app.best_val, None, "{how}");
            assert_eq!(app.status.val_loss, None, "{how}");
            assert_eq!(app.status.last_checkpoint, None, "{how}");
            assert_eq!(app.status.max_steps, 20, "{how}");
            assert_eq!(app.status.warnings, 0, "{how}");
            assert_eq!(app.loss_history.whole(), [(1.0, 0.5), (2.0, 0.25)], "{how}");
            assert!(app.val_history.is_empty(), "{how}");
            assert!(app.chart.log_scale, "{how}: the view stays");
            let log: Vec<&str> = app.log.iter().map(|l| l.text.as_str()).collect();
            if how != "replaced, read at once" {
                assert!(
                    log[0].contains("events.jsonl was replaced or cut shorter"),
                    "{how}: {log:?}"
                );
            }
            assert!(
                !log.iter()
                    .any(|l| l.contains("old run") || l.contains("300")),
                "{how}: {log:?}"
            );
            let shown = screen(&app);
            for old in ["old-run", "9.75", "7.25", "checkpoint-300", "/500"] {
                assert!(!shown.contains(old), "{how}: {old} on screen:\n{shown}");
            }
            assert!(
                shown.contains("new-run") && shown.contains("2/20"),
                "{shown}"
            );
        }
    }

    #[test]
    fn an_events_file_that_cannot_be_read_is_said_once_and_skipped_lines_too() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo-run");
        std::fs::create_dir(&fifo).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(fifo.join(rundir::EVENTS_FILE))
            .status()
            .unwrap();
        assert!(made.success());
        let events = follow(&fifo).unwrap();
        let mut app = attached_app(&fifo, false);
        feed_until(&mut app, &events, "the warning", |app| !app.log.is_empty());
        // Several looks later, still said once.
        let later = Instant::now() + 3 * POLL;
        feed_until(&mut app, &events, "a few looks", |_| Instant::now() > later);
        let said: Vec<&str> = app.log.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(said[0].contains("is a FIFO"), "{said:?}");
        assert!(screen(&app).contains("is a FIFO"), "{}", screen(&app));

        // A line too long to hold is skipped unread, and said.
        let long = dir.path().join("long-run");
        std::fs::create_dir(&long).unwrap();
        let mut text = "x".repeat(runfile::MAX_EVENT_LINE + 100);
        text.push('\n');
        text.push_str(&lines(&[step(1, 10, 1.0, None)]));
        std::fs::write(long.join(rundir::EVENTS_FILE), text).unwrap();
        let events = follow(&long).unwrap();
        let mut app = attached_app(&long, false);
        feed_until(&mut app, &events, "the step", |app| {
            app.status.current_step == 1
        });
        let said: Vec<&str> = app.log.iter().map(|l| l.text.as_str()).collect();
        assert!(
            said.iter()
                .any(|l| l.contains("1 line longer than 1 MiB skipped unread")),
            "{said:?}"
        );
    }
}

#[cfg(test)]
mod python_tests {
    use super::*;

    /// events.jsonl of `examples/hf_trainer.py --max-steps 40 --eval-steps
    /// 20 --save-steps 40 --samples 2`: written by the Python package.
    const PYTHON_RUN: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/python-trainer-run.events.jsonl"
    );

    fn replay(run_dir: &Path) -> (App, Vec<Event>) {
        let mut app = attached_app(run_dir, false);
        let mut tail = EventTail::new(run_dir, 0);
        let events = tail.read_new(CHUNK);
        assert_eq!(tail.garbage, 0, "every line is an event");
        for event in &events {
            app.apply(event);
        }
        (app, events)
    }

    fn text(app: &App) -> String {
        let backend = ratatui::backend::TestBackend::new(100, 30);
        let mut terminal = ratatui::Terminal::new(backend).unwrap();
        terminal
            .draw(|frame| tui::render::render(frame, app))
            .unwrap();
        terminal
            .backend()
            .buffer()
            .content()
            .iter()
            .map(ratatui::buffer::Cell::symbol)
            .collect()
    }

    #[test]
    fn watch_shows_a_python_run_as_it_shows_the_same_events_written_by_trainui() {
        let dir = tempfile::tempdir().unwrap();
        let python_dir = dir.path().join("python");
        std::fs::create_dir(&python_dir).unwrap();
        std::fs::copy(PYTHON_RUN, python_dir.join(rundir::EVENTS_FILE)).unwrap();
        let (python_app, events) = replay(&python_dir);
        assert!(events.len() > 20, "{}", events.len());

        // The same events, written by trainui's own run directory writer.
        let rust_dir = dir.path().join("rust");
        let config = Config::default();
        let status = crate::events::RunStatus::new("python".into(), 0);
        let mut writer = rundir::RunDir::open(&rust_dir, &config, status).unwrap();
        for event in &events {
            writer.record(event).unwrap();
        }
        std::fs::remove_file(rust_dir.join(rundir::CONFIG_FILE)).unwrap();
        let (rust_app, rust_events) = replay(&rust_dir);
        assert_eq!(rust_events, events, "nothing is lost in either direction");

        let (python_screen, rust_screen) = (text(&python_app), text(&rust_app));
        assert_eq!(python_screen, rust_screen);
        for shown in ["transformers", "FINISHED", "evals 2", "step 40/40"] {
            assert!(python_screen.contains(shown), "{shown}: {python_screen}");
        }
        assert_eq!(
            python_app.status.producer.as_ref().unwrap().name,
            "trainui-python"
        );
    }
}
