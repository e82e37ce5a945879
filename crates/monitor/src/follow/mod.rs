//! Following a run directory, for every screen that shows one (`trainui
//! watch`, `trainui run`): its events.jsonl read on a thread of its own
//! (the history first, then each append, and from the start again when the
//! file is replaced or cut shorter), handed to the screen as a
//! [`tui::EventSource`]; its process watched on another (`liveness.rs`).
//! The app for a followed run starts from its config.json.
//!
//! ```text
//! mod.rs       the app of a followed run; its events, read and handed out
//! liveness.rs  its process: gone, training again, its ranks' heartbeats
//! ```

pub mod liveness;
pub mod processes;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::thread;
use std::time::{Duration, SystemTime};

use notify::Watcher;

use crate::tui;
use crate::tui::app::{App, Owner};
use crate::tui::run_data::RunData;
use trainui_protocol::config::{self, Config};
use trainui_protocol::events::{Event, SCHEMA_VERSION};
use trainui_protocol::rundir::{self, EventTail};
use trainui_protocol::runfile;

/// Reads waiting for the screen; the reader waits when it is this far
/// ahead, so memory stays bounded however long the history.
pub const BACKLOG: usize = 4;
/// Bytes parsed per read, so a long history streams instead of loading whole.
const CHUNK: u64 = 4 << 20;
/// Longest wait between looks at the file when no notification arrives.
const POLL: Duration = Duration::from_millis(500);

/// What is known of the run in `run_dir` before any of its events: its
/// name (the folder's) and, from its config.json when it has one yet, its
/// length and live settings (a run of schema 1 has them only there; later
/// runs bring them in their events).
#[must_use]
pub fn attached_run(run_dir: &Path) -> RunData {
    let config: Option<Config> =
        runfile::read(&run_dir.join(rundir::CONFIG_FILE), runfile::CONFIG_LIMIT)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let name = run_dir.file_name().map_or_else(
        || run_dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut run = RunData::new(name, config.as_ref().map_or(0, |c| c.train.max_steps));
    run.status.settings = config.as_ref().map(config::live_settings);
    run
}

/// An app for the run in `run_dir`, watched (quitting leaves it alone),
/// starting from [`attached_run`], with the job's output if the run has
/// one (`trainui run` writes it).
#[must_use]
pub fn attached_app(run_dir: &Path, color: bool) -> App {
    let mut app = App::for_run(attached_run(run_dir), color);
    app.owner = Owner::Watcher;
    app.output = crate::tui::job_output::JobOutput::at(run_dir.join(rundir::JOB_OUTPUT_FILE));
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
            Read::StartOver => Some(tui::Aside::StartOver(Box::new(attached_run(&self.run_dir)))),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use trainui_protocol::events::RunState;

    fn step(step: u64) -> Event {
        trainui_protocol::events::examples::step(step, 100, 1.0)
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
mod screen_tests {
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
        let (mut record, mut send) = (
            |_: &Event| None,
            |_: trainui_protocol::events::Command| None,
        );
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
                app.run.log.iter().map(|l| &l.text).collect::<Vec<_>>()
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
        match trainui_protocol::events::examples::step(step, max_steps, loss) {
            Event::Step(metrics) => Event::Step(trainui_protocol::events::StepMetrics {
                grad_norm,
                ..metrics
            }),
            _ => unreachable!(),
        }
    }

    /// A long run: validation loss, gradient norm, a warning, a checkpoint.
    fn old_run() -> String {
        let mut events = vec![trainui_protocol::events::examples::started("old-run", 500)];
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
            trainui_protocol::events::examples::started("new-run", 20),
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
                    app.run.status.warnings == 1
                });
                assert_eq!(app.run.grad_norm, Some(9.75), "{how}");
                assert_eq!(app.run.best_val, Some((7.25, 300)), "{how}");
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
                app.run.status.run_name == "new-run" && app.run.status.current_step == 2
            });
            // Only the new run's values, in the view the user chose.
            assert_eq!(app.run.grad_norm, None, "{how}");
            assert_eq!(app.run.best_val, None, "{how}");
            assert_eq!(app.run.status.val_loss, None, "{how}");
            assert_eq!(app.run.status.last_checkpoint, None, "{how}");
            assert_eq!(app.run.status.max_steps, 20, "{how}");
            assert_eq!(app.run.status.warnings, 0, "{how}");
            assert_eq!(
                app.run.curves.loss.whole(),
                [(1.0, 0.5), (2.0, 0.25)],
                "{how}"
            );
            assert!(app.run.curves.val.is_empty(), "{how}");
            assert!(app.view.chart.log_scale, "{how}: the view stays");
            let log: Vec<&str> = app.run.log.iter().map(|l| l.text.as_str()).collect();
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
        feed_until(&mut app, &events, "the warning", |app| {
            !app.run.log.is_empty()
        });
        // Several looks later, still said once.
        let later = Instant::now() + 3 * POLL;
        feed_until(&mut app, &events, "a few looks", |_| Instant::now() > later);
        let said: Vec<&str> = app.run.log.iter().map(|l| l.text.as_str()).collect();
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
            app.run.status.current_step == 1
        });
        let said: Vec<&str> = app.run.log.iter().map(|l| l.text.as_str()).collect();
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
        "/../../protocol/examples/python-trainer-run.events.jsonl"
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
        let status = trainui_protocol::events::RunStatus::new("python".into(), 0);
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
            python_app.run.status.producer.as_ref().unwrap().name,
            "trainui-python"
        );
    }
}
