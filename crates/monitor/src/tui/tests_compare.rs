//! Whole-screen tests of compared runs (`watch A B C`, a folder of runs):
//! the chart's room at every size, the settings that differ as columns and
//! full screen, and the chart's choice of curves among many runs.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use serde_json::{Value, json};

use super::app::{App, Msg, Owner};
use super::board::{Board, MAX_CURVES};
use super::render::{self, CURVE_ROWS};
use crate::diff::Settings;
use trainui_protocol::events::{Event, RunState, StepMetrics};

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_hours(500_000)
}

/// A watched run whose loss falls as `scale` says, logged every 25 steps up
/// to `last` of 3000.
fn sweep_run(name: &str, last: u64, scale: f64, color: bool) -> App {
    let mut app = App::new(name.into(), 3000, true);
    app.now = now();
    app.owner = Owner::Watcher;
    let Event::Started(mut info) = trainui_protocol::events::examples::started(name, 3000) else {
        unreachable!("the example is a start")
    };
    info.run_name = name.into();
    app.apply(&Event::Started(info));
    app.apply(&Event::State {
        step: 0,
        state: RunState::Training,
    });
    for step in (25..=last).step_by(25) {
        let progress = step as f64 / 3000.0;
        app.apply(&Event::Step(StepMetrics {
            step,
            max_steps: 3000,
            loss: scale * (0.2 + 4.5 * (-6.0 * progress).exp()),
            learning_rate: 1e-3,
            tokens_per_sec: 15_000.0,
            elapsed_secs: step as f64 * 0.05,
            eta_secs: (3000 - step) as f64 * 0.05,
            grad_norm: None,
            tokens_seen: None,
        }));
    }
    app.update(Msg::Tick(now()));
    app.view.color = color;
    app.view.ascii = !color;
    app
}

/// A learning-rate sweep: three runs whose learning rate and device
/// differ and whose other settings agree.
fn sweep(color: bool) -> (Vec<App>, Vec<Settings>) {
    let runs = [
        ("lr-3e-4", 3e-4, "cuda:0", 1.0),
        ("lr-1e-3", 1e-3, "cuda:0", 0.8),
        ("lr-3e-3", 3e-3, "cpu", 1.3),
    ];
    let apps = runs
        .iter()
        .map(|&(name, _, _, scale)| sweep_run(name, 1500, scale, color))
        .collect();
    let settings = runs
        .iter()
        .map(|&(name, lr, device, _)| settings(name, lr, device))
        .collect();
    (apps, settings)
}

fn settings(name: &str, learning_rate: f64, device: &str) -> Settings {
    let config: BTreeMap<String, Value> = [
        ("train.learning_rate", json!(learning_rate)),
        ("train.batch_size", json!(32)),
        ("model.layers", json!(4)),
        ("run_dir", json!(format!("runs/{name}"))),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect();
    let details: BTreeMap<String, Value> = [
        ("framework", json!("trainui")),
        ("device", json!(device)),
        ("world_size", json!(1)),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect();
    Settings {
        details: Some(details),
        config: Some(config),
    }
}

/// `count` runs, the later ones of higher loss, without settings.
fn many(count: usize) -> Vec<App> {
    (1..=count)
        .map(|n| sweep_run(&format!("run-{n:02}"), 600, 1.0 + n as f64 / 10.0, true))
        .collect()
}

fn screen(board: &Board, width: u16, height: u16) -> TestBackend {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal
        .draw(|frame| render::render_board(frame, board))
        .unwrap();
    terminal.backend().clone()
}

fn lines(screen: &TestBackend) -> Vec<String> {
    let buffer = screen.buffer();
    (0..buffer.area.height)
        .map(|y| {
            (0..buffer.area.width)
                .map(|x| buffer[(x, y)].symbol())
                .collect()
        })
        .collect()
}

/// The rows the chart pane draws curves in: its height less its borders,
/// its legend and its x axis (line and labels). The pane runs from its
/// title to the border above the runs table's header.
fn curve_rows(screen: &TestBackend) -> u16 {
    let lines = lines(screen);
    let row_of = |text: &str| {
        lines
            .iter()
            .position(|line| line.contains(text))
            .unwrap_or_else(|| panic!("{text} is on the screen: {}", lines.join("\n")))
    };
    let pane = row_of("# run") - 1 - row_of(" loss · ");
    u16::try_from(pane).unwrap().saturating_sub(5)
}

fn press(board: &mut Board, code: KeyCode) {
    board.key(KeyEvent::from(code));
}

#[test]
fn compare_sweep_80x24_keeps_the_chart_and_shows_what_differs() {
    let (mut runs, settings) = sweep(true);
    let mut board = Board::new(&mut runs);
    board.set_settings(&settings);
    let screen = screen(&board, 80, 24);
    let text = screen.to_string();
    assert!(curve_rows(&screen) >= CURVE_ROWS, "{text}");
    // The keys that differ are columns of their own, with each run's value;
    // the ones all runs share (and the run's own path) are not.
    for shown in ["learning_rate", "0.0003", "0.001", "0.003"] {
        assert!(text.contains(shown), "{shown}: {text}");
    }
    for absent in ["batch_size", "layers", "run_dir", "world_size"] {
        assert!(!text.contains(absent), "{absent}: {text}");
    }
    insta::assert_snapshot!(text);
}

#[test]
fn compare_sweep_120x40() {
    let (mut runs, settings) = sweep(true);
    let mut board = Board::new(&mut runs);
    board.set_settings(&settings);
    press(&mut board, KeyCode::Right);
    let screen = screen(&board, 120, 40);
    let text = screen.to_string();
    assert!(curve_rows(&screen) >= CURVE_ROWS, "{text}");
    for shown in ["learning_rate", "device", "0.001", "d diff"] {
        assert!(text.contains(shown), "{shown}: {text}");
    }
    insta::assert_snapshot!(text);
}

#[test]
fn d_shows_every_differing_key_with_a_column_per_run_and_esc_closes_it() {
    let (mut runs, settings) = sweep(false);
    let mut board = Board::new(&mut runs);
    board.set_settings(&settings);
    press(&mut board, KeyCode::Char('d'));
    assert!(board.diff_open());
    let text = screen(&board, 80, 24).to_string();
    assert!(text.contains("settings that differ"), "{text}");
    let row_of = |key: &str| {
        text.lines()
            .find(|line| line.contains(key))
            .unwrap_or_else(|| panic!("{key}: {text}"))
            .to_owned()
    };
    let lr = row_of("train.learning_rate");
    let (a, b, c) = (
        lr.find("0.0003").unwrap(),
        lr.find("0.001").unwrap(),
        lr.find("0.003").unwrap(),
    );
    assert!(a < b && b < c, "one column per run, in order: {lr}");
    assert!(row_of("device").contains("cpu"), "{text}");
    assert!(!text.contains("batch_size"), "{text}");
    insta::assert_snapshot!(text);

    // The run keys still move through the runs; Esc closes the view.
    press(&mut board, KeyCode::Right);
    assert_eq!(board.selected(), 1);
    press(&mut board, KeyCode::Esc);
    assert!(!board.diff_open());
    let text = screen(&board, 80, 24).to_string();
    assert!(!text.contains("settings that differ"), "{text}");
    assert!(text.contains("# run"), "{text}");
}

#[test]
fn the_chart_keeps_its_rows_at_80x24_with_3_and_with_30_runs() {
    for count in [3, 30] {
        let mut runs = many(count);
        let mut board = Board::new(&mut runs);
        // The followed run far down the table stays in view.
        for _ in 1..count {
            press(&mut board, KeyCode::Right);
        }
        let screen = screen(&board, 80, 24);
        let text = screen.to_string();
        assert!(
            curve_rows(&screen) >= CURVE_ROWS,
            "{count} runs: {} rows: {text}",
            curve_rows(&screen)
        );
        let last = format!("run-{count:02}");
        assert!(
            lines(&screen)
                .iter()
                .any(|line| line.contains('▶') && line.contains(&last)),
            "{last} is in the table: {text}"
        );
    }
}

#[test]
fn with_40_runs_the_chart_draws_the_followed_one_and_the_best_up_to_16() {
    let mut runs = many(40);
    let mut board = Board::new(&mut runs);
    for _ in 0..29 {
        press(&mut board, KeyCode::Right);
    }
    let flags = board.shown_flags();
    let shown: Vec<usize> = (0..40).filter(|&index| flags[index]).collect();
    // The lowest losses are the first runs'; the followed run besides.
    let mut expected: Vec<usize> = (0..MAX_CURVES - 1).collect();
    expected.push(29);
    assert_eq!(shown, expected);
    let text = screen(&board, 120, 40).to_string();
    assert!(
        text.contains(&format!("loss · {MAX_CURVES} of 40 runs")),
        "{text}"
    );
}

#[test]
fn v_toggles_a_curve_among_many_runs_and_the_chart_holds_16_at_most() {
    let mut runs = many(40);
    let mut board = Board::new(&mut runs);
    for _ in 0..29 {
        press(&mut board, KeyCode::Right);
    }
    press(&mut board, KeyCode::Char('v'));
    assert!(!board.shown(29));
    assert_eq!(board.shown_count(), MAX_CURVES - 1);
    assert_eq!(board.followed().ack_text(), Some("chart: run-30 hidden"));
    press(&mut board, KeyCode::Right);
    press(&mut board, KeyCode::Char('v'));
    assert!(board.shown(30));
    assert_eq!(board.shown_count(), MAX_CURVES);
    assert_eq!(board.followed().ack_text(), Some("chart: run-31 shown"));
    // The chart is full: one more is refused, and says how to make room.
    press(&mut board, KeyCode::Right);
    press(&mut board, KeyCode::Char('v'));
    assert_eq!(board.shown_count(), MAX_CURVES);
    assert_eq!(
        board.followed().ack_text(),
        Some("chart: 16 curves at most; v on a shown run hides it")
    );
    // o: the followed run alone, then the best again.
    press(&mut board, KeyCode::Char('o'));
    assert_eq!(board.shown_count(), 1);
    press(&mut board, KeyCode::Char('o'));
    assert_eq!(board.shown_count(), MAX_CURVES);
    assert_eq!(
        board.followed().ack_text(),
        Some("chart: the best 16 of 40 runs")
    );
}
