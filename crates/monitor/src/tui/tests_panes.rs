//! Whole-screen tests of the panes a run has something for: a loop that
//! logs only its loss (no eval or counters pane), and the job's own output
//! (`job_output.log`) in a pane, full screen and in the farewell.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::app::{App, Msg, Owner};
use super::process::Liveness;
use super::sampler::{HostSample, SystemSample};
use super::view_state::Overlay;
use super::*;
use trainui_protocol::events::{
    EvalSummary, Event, GenerationCounters, GenerationOutcome, Producer, RunInfo, RunState,
    SampleResult, StepMetrics,
};

/// The start of a run of the Python package (`trainui.Run`).
fn python_started(name: &str, max_steps: u64) -> Event {
    Event::Started(Box::new(RunInfo {
        pid: 4242,
        producer: Some(Producer {
            name: "trainui-python".into(),
            version: "0.1.0".into(),
            framework: "pytorch".into(),
            world_size: 1,
        }),
        ..RunInfo::new(name, max_steps)
    }))
}

fn step(step: u64, max_steps: u64) -> Event {
    let progress = step as f64 / max_steps as f64;
    Event::Step(StepMetrics {
        step,
        max_steps,
        loss: 0.1 + 2.0 * (-5.0 * progress).exp(),
        learning_rate: 1e-3,
        tokens_per_sec: 0.0,
        elapsed_secs: step as f64 * 0.01,
        eta_secs: (max_steps - step) as f64 * 0.01,
        grad_norm: None,
        tokens_seen: None,
    })
}

/// An evaluation that computes a validation loss and generates nothing, as
/// a plain loop logs it.
fn val_loss_only(app: &mut App, at: u64, eval: u64, loss: f64) {
    app.apply(&Event::EvalStarted {
        step: at,
        eval,
        samples: 0,
    });
    app.apply(&Event::ValLoss {
        step: at,
        loss: Some(loss),
        batches: 4,
        timed_out: false,
    });
    app.apply(&Event::EvalFinished(EvalSummary {
        step: at,
        eval,
        val_loss: Some(loss),
        train_loss: None,
        gap: None,
        samples: 0,
        matches: 0,
        exact_match: 0.0,
        counters: GenerationCounters::default(),
    }));
    app.apply(&Event::State {
        step: at,
        state: RunState::Training,
    });
}

fn host() -> SystemSample {
    SystemSample {
        gpus: Vec::new(),
        host: HostSample {
            cpu: Some(40.0),
            process_memory: Some(300 * 1024 * 1024),
            memory_used: Some(6 * 1024 * 1024 * 1024),
            memory_total: Some(24 * 1024 * 1024 * 1024),
        },
        note: Some("no GPU".into()),
    }
}

/// A multilayer perceptron's loop 1200 steps into 2000: its loss logged
/// every 20 steps and a validation loss every 400, nothing generated.
fn mlp_app(owner: Owner) -> App {
    let mut app = App::new("mlp".into(), 0, true);
    app.owner = owner;
    app.apply(&python_started("mlp", 2000));
    app.apply(&Event::State {
        step: 0,
        state: RunState::Training,
    });
    for s in (20..=1200).step_by(20) {
        app.apply(&step(s, 2000));
        if s % 400 == 0 {
            val_loss_only(&mut app, s, s / 400, 0.2 + (-(s as f64) / 500.0).exp());
        }
    }
    for _ in 0..30 {
        app.update(Msg::System(host()));
    }
    app
}

fn screen(app: &App, width: u16, height: u16) -> TestBackend {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| render::render(frame, app)).unwrap();
    terminal.backend().clone()
}

fn text(app: &App, width: u16, height: u16) -> String {
    screen(app, width, height).to_string()
}

fn press(app: &mut App, code: KeyCode) {
    app.update(Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)));
}

/// The row of the screen where the pane titled `title` starts, and the one
/// where it ends (its bottom border), in the column of its title.
fn pane_rows(shown: &str, title: &str) -> Option<(usize, usize)> {
    let rows: Vec<Vec<char>> = shown
        .lines()
        .map(|line| line.trim_matches('"').chars().collect())
        .collect();
    let top = rows
        .iter()
        .position(|row| row.iter().collect::<String>().contains(title))?;
    let column = rows[top]
        .iter()
        .collect::<String>()
        .find(title)
        .map(|byte| rows[top].iter().collect::<String>()[..byte].chars().count())?;
    let bottom = (top + 1..rows.len()).find(|&r| {
        rows[r]
            .get(column)
            .is_some_and(|&c| matches!(c, '─' | '━' | '-' | '='))
            && rows[r]
                .get(column.saturating_sub(2))
                .is_some_and(|&c| matches!(c, '─' | '━' | '└' | '┗' | '-' | '+' | '='))
    })?;
    Some((top, bottom))
}

#[test]
fn a_loop_that_logs_only_its_loss_gives_the_eval_and_counters_room_to_its_chart_and_log() {
    let app = mlp_app(Owner::Watcher);
    for (width, height) in [(80, 24), (120, 40)] {
        let shown = text(&app, width, height);
        for absent in [
            "matched",
            "match ",
            "counters",
            "┌ eval",
            "┏ eval",
            "no samples yet",
            "timeout",
            "0 samples",
        ] {
            assert!(
                !shown.contains(absent),
                "{absent} at {width}x{height}:\n{shown}"
            );
        }
        // The chart takes the height the panes had: from under the header
        // to above the footer.
        let (top, bottom) = pane_rows(&shown, "loss ·").expect("a loss pane");
        assert_eq!((top, bottom), (3, usize::from(height) - 2), "{shown}");
        // The validation loss it logs is in the chart's legend and the log.
        let best = app.run.best_val.expect("a validation loss").0;
        assert!(shown.contains(&format!("• val {best:.3}")), "{shown}");
        // Both are taller than on the screen of a run that generates.
        let mut native = mlp_app(Owner::Trainer);
        native.apply(&trainui_protocol::events::examples::started("lm", 2000));
        let native_shown = text(&native, width, height);
        assert!(native_shown.contains("counters"), "{native_shown}");
        let height_of = |shown: &str, title: &str| {
            let (top, bottom) = pane_rows(shown, title).expect(title);
            bottom - top
        };
        for title in ["loss ·", "events"] {
            assert!(
                height_of(&shown, title) > height_of(&native_shown, title),
                "{title} is taller:\n{shown}\n{native_shown}"
            );
        }
    }
    insta::assert_snapshot!("mlp_80x24", screen(&app, 80, 24));
    insta::assert_snapshot!("mlp_120x40", screen(&app, 120, 40));
}

#[test]
fn an_evaluation_without_samples_counts_no_matches_where_the_samples_are_shown() {
    // trainui's own trainer, or a job that generated once: the eval pane is
    // there, and a validation-only evaluation in it says no "0/0".
    let mut app = App::new("lm".into(), 0, true);
    app.apply(&trainui_protocol::events::examples::started("lm", 2000));
    val_loss_only(&mut app, 400, 1, 0.5);
    let shown = text(&app, 80, 24);
    assert!(shown.contains("eval 1 @400 · val 0.500"), "{shown}");
    assert!(!shown.contains("0/0"), "{shown}");
    assert!(shown.contains("counters"), "{shown}");
}

fn sample(step: u64) -> Event {
    Event::Sample(SampleResult {
        step,
        sample: 1,
        of: 1,
        example: 3,
        origin: "val.jsonl:4".into(),
        prompt: "2+2=".into(),
        golden: "4".into(),
        output: "4".into(),
        golden_tokens: 1,
        output_tokens: 1,
        outcome: GenerationOutcome::Completed,
        exact_match: true,
        loss: None,
        elapsed_secs: 0.1,
        tokens_per_sec: 10.0,
        timeout_secs: 60.0,
        counters: GenerationCounters {
            generations: 1,
            completed: 1,
            timed_out: 0,
            aborted: 0,
            errors: 0,
        },
    })
}

#[test]
fn a_python_job_that_generates_gets_the_samples_and_counters_panes_once_it_does() {
    let mut app = mlp_app(Owner::Job);
    assert!(!text(&app, 80, 24).contains("counters"));
    app.apply(&Event::EvalStarted {
        step: 1200,
        eval: 4,
        samples: 1,
    });
    let shown = text(&app, 80, 24);
    assert!(shown.contains("running 0/1"), "{shown}");
    app.apply(&sample(1200));
    let shown = text(&app, 80, 24);
    assert!(shown.contains("MATCH    2+2= → 4"), "{shown}");
    assert!(shown.contains("counters"), "{shown}");
    assert!(shown.contains("gens 1"), "{shown}");
}

#[test]
fn with_no_samples_pane_the_arrows_scroll_the_log() {
    let mut app = mlp_app(Owner::Watcher);
    for n in 0..40 {
        app.apply(&Event::Warning {
            step: 1200,
            message: format!("warning number {n}"),
        });
    }
    text(&app, 80, 24);
    press(&mut app, KeyCode::Up);
    assert!(app.view.log_scroll > 0, "{:?}", app.ack_text());
    assert!(
        app.ack_text().is_none_or(|a| !a.contains("no samples")),
        "{:?}",
        app.ack_text()
    );
}

/// What a job that raised wrote: a progress bar redrawn in place, colour
/// codes, a title change, a tab, bytes that are not UTF-8, and its
/// traceback.
const FAILED_JOB_OUTPUT: &[u8] = b"loading data\n\
epoch 1:  10%|#         | 1/10\repoch 1: 100%|##########| 10/10\n\
\x1b[31mred warning\x1b[0m\x1b]2;TITLE\x07\n\
col\tumn \xff\xfe bytes\n\
Traceback (most recent call last):\n  \
File \"/home/me/mlp.py\", line 42, in <module>\n    \
loss = model(batch)\n\
ValueError: shapes (32, 10) and (20, 1) do not match\n";

fn job_dir(output: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(crate::launch::JOB_OUTPUT), output).unwrap();
    dir
}

/// The app `trainui run` shows for the job in `dir`, its output read.
fn job_app(dir: &Path) -> App {
    let mut app = crate::follow::attached_app(dir, true);
    app.owner = Owner::Job;
    app.apply(&python_started("mlp", 2000));
    for s in (20..=300).step_by(20) {
        app.apply(&step(s, 2000));
    }
    app.update(Msg::Tick(app.now + Duration::from_secs(1)));
    app
}

#[test]
fn a_jobs_output_is_shown_escaped_under_its_chart_and_its_failure_without_a_key() {
    let dir = job_dir(FAILED_JOB_OUTPUT);
    let mut app = job_app(dir.path());
    let running = screen(&app, 80, 24);
    let shown = running.to_string();
    assert!(shown.contains("output · O full screen"), "{shown}");
    // The newest lines, wrapped to the pane.
    assert!(
        shown.contains("│ValueError: shapes (32, 10) and (20, 1) do not  │"),
        "{shown}"
    );
    assert!(shown.contains("│match  "), "{shown}");
    assert!(unsafe_cells(&running).is_empty());
    // The job raises: the run fails, then the job exits 1. Its last lines
    // stay on screen, in a pane that says so, with more room.
    app.apply(&Event::Failed {
        step: 300,
        message: "ValueError: shapes (32, 10) and (20, 1) do not match".into(),
    });
    app.update(Msg::Liveness(Liveness::JobEnded(1)));
    for (width, height) in [(80, 24), (120, 40)] {
        let failed = screen(&app, width, height);
        let shown = failed.to_string();
        assert!(shown.contains("output · the job failed"), "{shown}");
        for line in [
            "Traceback (most recent call last):",
            "  File \"/home/me/mlp.py\", line 42, in <module>",
            "ValueError: shapes (32, 10) and (20, 1)",
        ] {
            assert!(shown.contains(line), "{line} at {width}x{height}:\n{shown}");
        }
        assert!(
            unsafe_cells(&failed).is_empty(),
            "{:?}",
            unsafe_cells(&failed)
        );
        let (top, bottom) = pane_rows(&shown, "output ·").unwrap();
        assert!(bottom - top >= usize::from(height) / 2 - 2, "{shown}");
    }
    insta::assert_snapshot!("job_failed_80x24", screen(&app, 80, 24));
    insta::assert_snapshot!("job_failed_120x40", screen(&app, 120, 40));
}

/// Every cell of `backend` whose symbol holds a character that could drive
/// the terminal.
fn unsafe_cells(backend: &TestBackend) -> Vec<String> {
    backend
        .buffer()
        .content()
        .iter()
        .map(ratatui::buffer::Cell::symbol)
        .filter(|symbol| symbol.chars().any(trainui_protocol::text::is_unsafe))
        .map(|symbol| format!("{symbol:?}"))
        .collect()
}

#[test]
fn the_output_full_screen_shows_every_byte_escaped_scrolls_and_follows_new_lines() {
    let dir = job_dir(FAILED_JOB_OUTPUT);
    let mut app = job_app(dir.path());
    press(&mut app, KeyCode::Char('O'));
    assert_eq!(app.view.overlay, Overlay::Output);
    let full = screen(&app, 80, 24);
    let shown = full.to_string();
    let path = dir.path().join(crate::launch::JOB_OUTPUT);
    assert!(shown.contains("job_output.log"), "{shown}");
    for line in [
        // The progress bar as a terminal shows it: its latest state.
        "epoch 1: 100%|##########| 10/10",
        // Colour codes and a title change are data, shown escaped.
        "\\x1b[31mred warning\\x1b[0m\\x1b]2;TITLE\\x07",
        "col     umn \u{fffd}\u{fffd} bytes",
        "1-8/8 · follows · Esc closes",
    ] {
        assert!(shown.contains(line), "{line}:\n{shown}");
    }
    assert!(!shown.contains("10%|#  "), "{shown}");
    assert!(unsafe_cells(&full).is_empty(), "{:?}", unsafe_cells(&full));
    // New lines come in as the file grows, at the bottom.
    let more = (1..=40).fold(String::new(), |mut more, n| {
        let _ = writeln!(more, "step {n} done");
        more
    });
    append(&path, more.as_bytes());
    app.update(Msg::Tick(app.now + Duration::from_secs(1)));
    let shown = text(&app, 80, 24);
    assert!(shown.contains("step 40 done"), "{shown}");
    assert!(shown.contains("/48 · follows"), "{shown}");
    // Scrolled back, it stays where it is as more comes.
    press(&mut app, KeyCode::Home);
    let top = text(&app, 80, 24);
    assert!(
        top.contains("loading data") && top.contains("1-21/48"),
        "{top}"
    );
    append(&path, b"step 41 done\n");
    app.update(Msg::Tick(app.now + Duration::from_secs(1)));
    press(&mut app, KeyCode::Down);
    let shown = text(&app, 80, 24);
    assert!(shown.contains("2-22/49 · End follows"), "{shown}");
    press(&mut app, KeyCode::End);
    assert!(text(&app, 80, 24).contains("step 41 done"));
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.view.overlay, Overlay::None);
}

fn append(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(bytes).unwrap();
}

#[test]
fn a_run_without_an_output_file_says_so_to_its_key_and_keeps_its_panes() {
    let mut app = App::new("lm".into(), 0, true);
    app.apply(&trainui_protocol::events::examples::started("lm", 2000));
    press(&mut app, KeyCode::Char('O'));
    assert_eq!(app.view.overlay, Overlay::None);
    assert!(
        app.ack_text().unwrap().contains("no job output"),
        "{:?}",
        app.ack_text()
    );
    // A watched run directory whose job has written nothing yet.
    let dir = tempfile::tempdir().unwrap();
    let mut watched = crate::follow::attached_app(dir.path(), false);
    press(&mut watched, KeyCode::Char('O'));
    assert!(
        watched.ack_text().unwrap().contains("no output yet in"),
        "{:?}",
        watched.ack_text()
    );
    // Once the job has ended, nothing more is to come.
    watched.update(Msg::Liveness(Liveness::JobEnded(0)));
    press(&mut watched, KeyCode::Char('O'));
    assert!(
        watched
            .ack_text()
            .unwrap()
            .contains("the job wrote no output in"),
        "{:?}",
        watched.ack_text()
    );
}

#[test]
fn the_farewell_of_a_job_that_failed_names_its_output_and_its_last_line() {
    let dir = job_dir(FAILED_JOB_OUTPUT);
    let mut app = job_app(dir.path());
    assert!(
        !app.farewell().contains("job_output.log"),
        "{}",
        app.farewell()
    );
    app.update(Msg::Liveness(Liveness::JobEnded(1)));
    let path = dir.path().join(crate::launch::JOB_OUTPUT);
    let farewell = app.farewell();
    assert!(
        farewell.contains(&format!("its output is in {}", path.display())),
        "{farewell}"
    );
    assert!(
        farewell.ends_with("(last line: ValueError: shapes (32, 10) and (20, 1) do not match)"),
        "{farewell}"
    );
    // A job that ends well is not sent to its output.
    let mut fine = job_app(dir.path());
    fine.update(Msg::Liveness(Liveness::JobEnded(0)));
    assert!(!fine.farewell().contains("output"), "{}", fine.farewell());
    // Nor is a run with no output file.
    let mut native = App::new("lm".into(), 0, true);
    native.apply(&Event::Failed {
        step: 1,
        message: "boom".into(),
    });
    assert!(
        !native.farewell().contains("output"),
        "{}",
        native.farewell()
    );
}

#[test]
fn a_watched_run_directory_with_a_job_output_shows_it() {
    let dir = job_dir(b"hello from the job\n");
    let mut app = crate::follow::attached_app(dir.path(), false);
    app.apply(&python_started("mlp", 100));
    app.update(Msg::Tick(app.now + Duration::from_secs(1)));
    let shown = text(&app, 80, 24);
    assert!(shown.contains("hello from the job"), "{shown}");
}

#[test]
fn a_job_that_logs_steps_without_a_start_event_is_not_taken_for_trainuis_trainer() {
    let mut app = App::new("job".into(), 0, true);
    app.owner = Owner::Job;
    for s in (25..=300).step_by(25) {
        app.apply(&step(s, 2000));
    }
    let shown = text(&app, 80, 24);
    assert!(
        !shown.contains("counters") && !shown.contains("no samples yet"),
        "{shown}"
    );
    // A run of the first schemas (no producer named) is trainui's own.
    let mut old = App::new("old".into(), 0, true);
    old.owner = Owner::Watcher;
    old.apply(&trainui_protocol::events::examples::started("old", 2000));
    assert!(text(&old, 80, 24).contains("counters"));
}
