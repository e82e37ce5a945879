//! Whole-screen tests of the chart's series (`c`) and x axis (`x`), and of
//! the one smoothing rule that `watch` and `plot` share.

use std::time::{Duration, SystemTime};

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::app::{App, Msg};
use super::board::Board;
use super::render;
use crate::plot;
use trainui_protocol::events::{Event, RunState, StepMetrics};

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_hours(500_000)
}

/// Step `step` of a `max_steps` run: a falling loss, a warmup then decay
/// of the learning rate, a settling gradient norm, 2,048 tokens a step
/// (`tokens_seen` when `counted`).
fn step_event(step: u64, max_steps: u64, counted: bool) -> Event {
    let s = step as f64;
    let progress = s / max_steps as f64;
    Event::Step(StepMetrics {
        step,
        max_steps,
        loss: 2.0 + 8.5 * (-s / 12.0).exp() + 0.02 * (s * 0.7).sin(),
        learning_rate: 3e-4 * (s / 200.0).min(1.0) * (1.0 - progress).max(0.1),
        tokens_per_sec: 40_960.0 + 2_000.0 * (s * 0.3).sin(),
        elapsed_secs: s * 0.05,
        eta_secs: (max_steps - step) as f64 * 0.05,
        grad_norm: Some(0.8 + 6.0 * (-s / 80.0).exp()),
        tokens_seen: counted.then_some(step * 2048),
    })
}

/// A run of `max_steps` logged every `every` steps up to `last`.
fn run_app(max_steps: u64, last: u64, every: usize, counted: bool) -> App {
    let mut app = App::new("sweep-lr".into(), max_steps, true);
    app.now = now();
    app.apply(&trainui_protocol::events::examples::started(
        "sweep-lr", max_steps,
    ));
    app.apply(&Event::State {
        step: 0,
        state: RunState::Training,
    });
    for s in (every as u64..=last).step_by(every) {
        app.apply(&step_event(s, max_steps, counted));
    }
    app.update(Msg::Tick(now()));
    app
}

fn press(app: &mut App, code: KeyCode) {
    app.update(Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)));
}

fn screen(app: &App, width: u16, height: u16) -> TestBackend {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| render::render(frame, app)).unwrap();
    terminal.backend().clone()
}

#[test]
fn c_shows_the_learning_rate() {
    let mut app = run_app(3000, 1500, 25, true);
    press(&mut app, KeyCode::Char('c'));
    let shown = screen(&app, 120, 40).to_string();
    assert!(
        shown.contains("learning rate · whole run · steps"),
        "{shown}"
    );
    // The peak of the schedule is on the axis and the latest value in the
    // legend, unsmoothed.
    assert!(shown.contains("lr 1.50e-4"), "{shown}");
    insta::assert_snapshot!("learning_rate_80x24", screen(&app, 80, 24));
    insta::assert_snapshot!("learning_rate_120x40", screen(&app, 120, 40));
}

#[test]
fn c_twice_shows_the_gradient_norm_smoothed() {
    let mut app = run_app(3000, 1500, 25, true);
    press(&mut app, KeyCode::Char('c'));
    press(&mut app, KeyCode::Char('c'));
    let shown = screen(&app, 120, 40).to_string();
    assert!(shown.contains("grad norm · whole run · steps"), "{shown}");
    assert!(shown.contains("ema 100 steps"), "{shown}");
    insta::assert_snapshot!("grad_norm_80x24", screen(&app, 80, 24));
    insta::assert_snapshot!("grad_norm_120x40", screen(&app, 120, 40));
    // Two more: tokens/s, then the loss again.
    press(&mut app, KeyCode::Char('c'));
    assert!(
        screen(&app, 120, 40)
            .to_string()
            .contains("tokens/s · whole run")
    );
    press(&mut app, KeyCode::Char('c'));
    assert!(
        screen(&app, 120, 40)
            .to_string()
            .contains(" loss · whole run")
    );
}

#[test]
fn x_puts_the_tokens_seen_on_the_axis() {
    let mut app = run_app(3000, 1500, 25, true);
    press(&mut app, KeyCode::Char('x'));
    let shown = screen(&app, 120, 40).to_string();
    assert!(shown.contains("loss · whole run · tokens"), "{shown}");
    // 1500 steps of 2,048 tokens: the axis ends at 3.07M.
    assert!(shown.contains("3.07M"), "{shown}");
    assert!(!shown.contains("tokens estimated"), "{shown}");
    insta::assert_snapshot!("tokens_axis_120x40", screen(&app, 120, 40));
    // Then wall-clock time, then steps again.
    press(&mut app, KeyCode::Char('x'));
    assert!(
        screen(&app, 120, 40)
            .to_string()
            .contains("loss · whole run · time")
    );
    press(&mut app, KeyCode::Char('x'));
    assert!(
        screen(&app, 120, 40)
            .to_string()
            .contains("loss · whole run · steps")
    );
}

#[test]
fn a_run_without_token_counts_gets_them_estimated_from_tokens_per_second() {
    let mut app = run_app(3000, 1500, 25, false);
    press(&mut app, KeyCode::Char('x'));
    let shown = screen(&app, 120, 40).to_string();
    assert!(shown.contains("loss · tokens estimated"), "{shown}");
    // About 41k tokens/s for 75 s: some 3M tokens.
    let last = app.run.curves.tokens.whole().last().unwrap().1;
    assert!((2.9e6..3.3e6).contains(&last), "{last}");
}

/// The number after `label` on the screen.
fn number_after(shown: &str, label: &str) -> f64 {
    let at = shown
        .find(label)
        .unwrap_or_else(|| panic!("no {label:?} in {shown}"));
    shown[at + label.len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after {label:?} in {shown}"))
}

#[test]
fn a_young_run_is_not_smoothed_over_more_steps_than_it_has() {
    // Step 73 of a 2000-step run, logged every step: the chosen window is
    // 100 steps, more than the run has; the first losses (10.5) must not
    // hold the curve up where the raw loss is about 2.
    let app = run_app(2000, 73, 1, true);
    assert_eq!(app.view.chart.smoothing, 100);
    let shown = screen(&app, 120, 40).to_string();
    let raw = number_after(&shown, "raw ");
    assert!(!shown.contains("ema 100 steps"), "{shown}");
    let smoothed = number_after(&shown, "ema 18 steps ");
    assert!(
        (smoothed - raw).abs() < 0.5,
        "raw {raw}, smoothed {smoothed}"
    );
}

/// `app`'s run written as a run directory for `plot`.
fn run_dir(dir: &std::path::Path, name: &str, max_steps: u64, last: u64) -> std::path::PathBuf {
    let run = dir.join(name);
    std::fs::create_dir_all(&run).unwrap();
    let mut lines = Vec::new();
    let mut push = |event: &Event| {
        lines.extend(trainui_protocol::rundir::event_line(event, now()));
        lines.push(b'\n');
    };
    push(&trainui_protocol::events::examples::started(
        name, max_steps,
    ));
    for s in 1..=last {
        push(&step_event(s, max_steps, true));
    }
    std::fs::write(run.join("events.jsonl"), lines).unwrap();
    run
}

fn svg(runs: &[std::path::PathBuf], out: &std::path::Path) -> String {
    let curves: Vec<plot::Curves> = runs.iter().map(|r| plot::curves(r).unwrap()).collect();
    let options = plot::PlotOptions {
        runs: runs.to_vec(),
        out: out.to_path_buf(),
        width: 900,
        height: 500,
        log_scale: false,
        smoothing: None,
        title: None,
        series: plot::Series::Loss,
        x_axis: plot::XAxis::Steps,
    };
    plot::draw(&curves, &options).unwrap();
    std::fs::read_to_string(out).unwrap()
}

#[test]
fn watch_and_plot_smooth_the_same_runs_over_the_same_window() {
    let dir = tempfile::tempdir().unwrap();
    // One run at step 73: the legends agree on the window applied.
    let young = run_dir(dir.path(), "young", 2000, 73);
    let picture = svg(std::slice::from_ref(&young), &dir.path().join("a.svg"));
    assert!(picture.contains("young ema 18 steps"), "{picture}");
    let app = run_app(2000, 73, 1, true);
    assert!(screen(&app, 120, 40).to_string().contains("ema 18 steps"));

    // A short and a long run together: both choose the short run's window.
    let short = run_dir(dir.path(), "short", 300, 300);
    let long = run_dir(dir.path(), "long", 6000, 600);
    let curves = [plot::curves(&short).unwrap(), plot::curves(&long).unwrap()];
    let mut apps = [run_app(300, 300, 1, true), run_app(6000, 600, 1, true)];
    let board = Board::new(&mut apps);
    assert_eq!(plot::window(&curves, None), board.smoothing());
    let picture = svg(&[short, long], &dir.path().join("b.svg"));
    let window = board.smoothing();
    assert!(
        picture.contains(&format!("long ema {window} steps")),
        "{picture}"
    );
}

#[test]
fn the_compare_chart_draws_the_series_chosen_for_every_run() {
    let mut apps = [run_app(3000, 1500, 25, true), run_app(3000, 1000, 25, true)];
    let mut board = Board::new(&mut apps);
    board.key(KeyEvent::from(KeyCode::Char('c')));
    board.key(KeyEvent::from(KeyCode::Char('x')));
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    terminal
        .draw(|frame| render::render_board(frame, &board))
        .unwrap();
    let shown = terminal.backend().to_string();
    assert!(shown.contains("learning rate · 2 of 2 runs"), "{shown}");
    assert!(shown.contains("· tokens"), "{shown}");
    // Every run follows the chart's view.
    assert!(
        board
            .runs
            .iter()
            .all(|app| app.view.chart.series == super::view_state::Series::LearningRate)
    );
}
