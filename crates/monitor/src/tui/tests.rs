//! Whole-screen tests: the app fed with events and keys, drawn on a
//! `TestBackend` and compared with snapshots in `src/tui/snapshots/`.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::time::Duration;

use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::app::{App, Exit, Msg};
use super::sampler::{GpuSample, HostSample, SystemSample};
use super::*;
use trainui_protocol::events::{
    Command, EvalSummary, Event, GenerationCounters, GenerationOutcome, GenerationStart, RunState,
    SampleResult, StepMetrics, Summary,
};

fn started() -> Event {
    trainui_protocol::events::examples::started("demo-run", 3000)
}

fn step(step: u64) -> Event {
    let progress = step as f64 / 3000.0;
    Event::Step(StepMetrics {
        step,
        max_steps: 3000,
        loss: 0.2 + 4.5 * (-6.0 * progress).exp() + 0.05 * ((step as f64) * 0.7).sin(),
        learning_rate: 1e-3 * (1.0 - progress).max(0.1),
        tokens_per_sec: 15_234.0,
        elapsed_secs: step as f64 * 0.045,
        eta_secs: (3000 - step) as f64 * 0.045,
        grad_norm: None,
        tokens_seen: None,
    })
}

fn counters(generations: u64, timed_out: u64) -> GenerationCounters {
    GenerationCounters {
        generations,
        completed: generations - timed_out,
        timed_out,
        aborted: 0,
        errors: 0,
    }
}

fn sample(
    step: u64,
    n: u32,
    outcome: GenerationOutcome,
    output: &str,
    counters: GenerationCounters,
) -> Event {
    Event::Sample(SampleResult {
        step,
        sample: n,
        of: 4,
        example: u64::from(n) + 40,
        origin: format!("val.jsonl:{}", n + 41),
        prompt: "47+38=".into(),
        golden: "85".into(),
        output: output.into(),
        golden_tokens: 2,
        output_tokens: output.len() as u64,
        exact_match: outcome == GenerationOutcome::Completed && output == "85",
        outcome,
        loss: Some(0.123_4),
        elapsed_secs: 0.004,
        tokens_per_sec: 500.0,
        timeout_secs: 60.0,
        counters,
    })
}

fn host() -> SystemSample {
    SystemSample {
        gpus: Vec::new(),
        host: HostSample {
            cpu: Some(87.0),
            process_memory: Some(612 * 1024 * 1024),
            memory_used: Some(6 * 1024 * 1024 * 1024),
            memory_total: Some(24 * 1024 * 1024 * 1024),
        },
        note: Some("no GPU".into()),
    }
}

/// A run 1500 steps in, with one evaluation done.
fn training_app() -> App {
    let mut app = App::new(String::new(), 0, true);
    app.apply(&started());
    app.apply(&Event::State {
        step: 0,
        state: RunState::Training,
    });
    for s in (25..=1500).step_by(25) {
        app.apply(&step(s));
        if s == 1000 {
            app.apply(&Event::EvalStarted {
                step: 1000,
                eval: 1,
                samples: 2,
            });
            app.apply(&Event::ValLoss {
                step: 1000,
                loss: Some(0.31),
                batches: 8,
                timed_out: false,
            });
            app.apply(&sample(
                1000,
                1,
                GenerationOutcome::Completed,
                "85",
                counters(1, 0),
            ));
            app.apply(&sample(
                1000,
                2,
                GenerationOutcome::Completed,
                "84",
                counters(2, 0),
            ));
            app.apply(&Event::EvalFinished(EvalSummary {
                step: 1000,
                eval: 1,
                val_loss: Some(0.31),
                train_loss: Some(0.35),
                gap: Some(-0.04),
                samples: 2,
                matches: 1,
                exact_match: 0.5,
                counters: counters(2, 0),
            }));
            app.apply(&Event::State {
                step: 1000,
                state: RunState::Training,
            });
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

#[test]
fn training() {
    let app = training_app();
    insta::assert_snapshot!(screen(&app, 80, 24));
    insta::assert_snapshot!("training_120x40", screen(&app, 120, 40));
}

#[test]
fn evaluating_with_a_half_written_sample() {
    let mut app = training_app();
    app.apply(&Event::State {
        step: 1500,
        state: RunState::Evaluating,
    });
    app.apply(&Event::EvalStarted {
        step: 1500,
        eval: 2,
        samples: 4,
    });
    app.apply(&Event::GenerationStarted(GenerationStart {
        step: 1500,
        sample: 3,
        of: 4,
        example: 57,
        origin: "val.jsonl:58".into(),
        prompt: "rev 40721=".into(),
        golden: "12704".into(),
        golden_tokens: 5,
        timeout_secs: 60.0,
    }));
    app.apply(&Event::GenerationProgress {
        step: 1500,
        sample: 3,
        text: "127".into(),
        tokens: 3,
        elapsed_secs: 42.5,
    });
    insta::assert_snapshot!(screen(&app, 80, 24));
}

#[test]
fn timeout_rate_warning() {
    let mut app = training_app();
    app.apply(&sample(
        1500,
        1,
        GenerationOutcome::TimedOut,
        "1111111111",
        counters(3, 1),
    ));
    app.apply(&Event::Warning {
        step: 1500,
        message: "timeout rate 33.3% (1 of 3 generations) is above eval.timeout_warn_rate 10.0%"
            .into(),
    });
    insta::assert_snapshot!(screen(&app, 80, 24));
}

#[test]
fn the_warning_threshold_follows_the_settings_in_force() {
    let mut app = training_app();
    app.apply(&sample(
        1500,
        1,
        GenerationOutcome::TimedOut,
        "1111111111",
        counters(3, 1),
    ));
    let text = |app: &App| screen(app, 120, 40).to_string();
    assert!(text(&app).contains("timeout rate 33.3% > 10% !"));
    // `ctl set eval.timeout_warn_rate=0.5`, as the trainer reports it.
    let mut settings =
        trainui_protocol::config::live_settings(&trainui_protocol::config::Config::default());
    settings.eval.timeout_warn_rate = 0.5;
    app.apply(&Event::Settings {
        step: 1500,
        settings,
    });
    let after = text(&app);
    assert!(after.contains("timeout rate 33.3% (warn 50%)"), "{after}");
    assert!(!app.run.status.timeout_warning());
}

#[test]
fn a_loss_that_is_not_a_number_leaves_the_curves_as_they_were() {
    let mut app = training_app();
    let before = screen(&app, 80, 24);
    let mut nan = step(1525);
    if let Event::Step(m) = &mut nan {
        m.loss = f64::NAN;
    }
    app.apply(&nan);
    assert_eq!(app.run.status.loss.map(f64::is_nan), Some(true));
    let after = screen(&app, 80, 24).to_string();
    // The chart is the same (the step counter moved on).
    let chart = |text: &str| text.lines().skip(3).take(10).collect::<Vec<_>>().join("\n");
    assert_eq!(chart(&before.to_string()), chart(&after));
    app.apply(&step(1550));
    assert!(app.run.curves.loss.last().unwrap().1.is_finite());
    let legend = screen(&app, 80, 24).to_string();
    assert!(legend.contains("ema 100 steps 0."), "{legend}");
}

#[test]
fn paused() {
    let mut app = training_app();
    app.apply(&Event::State {
        step: 1500,
        state: RunState::Paused,
    });
    app.apply(&Event::CommandAck {
        step: 1500,
        command: Command::Pause,
        message: "paused at step 1500".into(),
    });
    insta::assert_snapshot!(screen(&app, 80, 24));
}

#[test]
fn finished() {
    let mut app = training_app();
    app.apply(&Event::Checkpoint {
        step: 1500,
        path: "runs/demo-run/checkpoints/checkpoint-1500".into(),
    });
    app.apply(&Event::Finished(Summary {
        step: 1500,
        max_steps: 3000,
        state: RunState::Finished,
        loss: Some(0.25),
        elapsed_secs: 67.5,
    }));
    insta::assert_snapshot!(screen(&app, 80, 24));
}

#[test]
fn failed() {
    let mut app = training_app();
    app.apply(&Event::Failed {
        step: 1500,
        message: "trainer panicked: CUDA out of memory".into(),
    });
    insta::assert_snapshot!(screen(&app, 80, 24));
}

#[test]
fn stalled() {
    let mut app = training_app();
    app.apply(&Event::Stalled {
        step: 1500,
        phase: trainui_protocol::events::Phase::Generating,
        silent_secs: 301.0,
        timeout_secs: 300.0,
    });
    insta::assert_snapshot!(screen(&app, 80, 24));
}

fn press(app: &mut App, code: KeyCode) -> Option<Command> {
    app.update(Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)))
}

fn text(app: &App, width: u16, height: u16) -> String {
    screen(app, width, height)
        .buffer()
        .content()
        .iter()
        .map(ratatui::buffer::Cell::symbol)
        .collect()
}

/// Every line the help shows, scrolled from top to bottom on a screen of
/// `width` x `height`.
fn help_text(app: &mut App, width: u16, height: u16) -> String {
    press(app, KeyCode::Char('?'));
    let mut all = String::new();
    for _ in 0..20 {
        all.push_str(&screen(app, width, height).to_string());
        press(app, KeyCode::PageDown);
    }
    press(app, KeyCode::Esc);
    all
}

#[test]
fn the_help_is_the_key_map_in_force_and_scrolls_on_the_smallest_screen() {
    let mut app = training_app();
    let (width, height) = (render::MIN_WIDTH, render::MIN_HEIGHT);
    let all = help_text(&mut app, width, height);
    for &(_, context) in keys::SECTIONS {
        if context == keys::Context::Runs {
            continue;
        }
        for binding in keys::map(context) {
            let line = format!("{}  {}", binding.label, binding.help);
            assert!(all.contains(&line), "{line}: {all}");
        }
    }
    for (kind, how) in keys::WITHOUT_KEY {
        assert!(all.contains(&format!("{}  {how}", kind.word())), "{all}");
    }
    assert!(all.contains("Esc or ? closes"), "{all}");
    assert!(!all.contains("any key closes"), "{all}");
    // watch: q leaves the run alone, r does nothing (no supervisor is
    // promised), no quit dialog.
    let mut watching = training_app();
    watching.owner = app::Owner::Watcher;
    let all = help_text(&mut watching, 100, 40);
    assert!(
        all.contains("q Ctrl-C  quit watching; the run goes on"),
        "{all}"
    );
    assert!(
        !all.contains(RESTART_ROW) && !all.contains("supervisor"),
        "{all}"
    );
    assert!(!all.contains("stop and save"), "{all}");
    assert!(!all.contains("without saving"), "{all}");
    assert!(!all.contains("several runs"), "one run: {all}");
    // Several runs: their keys too.
    watching.compared = true;
    let all = help_text(&mut watching, 100, 60);
    for binding in keys::RUNS {
        let line = format!("{}  {}", binding.label, binding.help);
        assert!(all.contains(&line), "{line}: {all}");
    }
}

/// The restart row of the help, where `r` restarts a stalled run.
const RESTART_ROW: &str = "r  restart a stalled run from its checkpoint";

#[test]
fn help_overlay() {
    let mut app = training_app();
    app.update(Msg::Key(KeyEvent::new(
        KeyCode::Char('?'),
        KeyModifiers::NONE,
    )));
    insta::assert_snapshot!(screen(&app, 80, 24));
}

#[test]
fn quit_confirmation() {
    let mut app = training_app();
    app.update(Msg::Key(KeyEvent::new(
        KeyCode::Char('q'),
        KeyModifiers::NONE,
    )));
    insta::assert_snapshot!(screen(&app, 80, 24));
}

#[test]
fn too_small_terminal() {
    let app = training_app();
    insta::assert_snapshot!(screen(&app, 40, 10));
}

#[test]
fn gpus_with_their_load() {
    let mut app = training_app();
    let gpu = |utilization| GpuSample {
        name: "NVIDIA H200".into(),
        utilization,
        memory_used: 40 * 1024 * 1024 * 1024,
        memory_total: 141 * 1024 * 1024 * 1024,
        temperature: Some(61),
        power: Some(412.4),
    };
    for utilization in [10, 50, 90, 95, 97] {
        app.update(Msg::System(SystemSample {
            gpus: vec![gpu(utilization), gpu(utilization / 2)],
            host: HostSample::default(),
            note: None,
        }));
    }
    insta::assert_snapshot!(screen(&app, 80, 24));
}

/// `count` GPUs of one machine, GPU `i` busy at `busy(i)` percent.
fn machine_of(count: u32, busy: impl Fn(u32) -> u32) -> SystemSample {
    SystemSample {
        gpus: (0..count)
            .map(|i| GpuSample {
                name: "NVIDIA H100 80GB HBM3".into(),
                utilization: busy(i),
                memory_used: u64::from(10 + 4 * i) << 30,
                memory_total: 80 << 30,
                temperature: Some(40 + i),
                power: Some(100.0 + 20.0 * f64::from(i)),
            })
            .collect(),
        host: HostSample::default(),
        note: None,
    }
}

fn text_of(backend: &TestBackend) -> String {
    let buffer = backend.buffer();
    (0..buffer.area.height)
        .map(|y| {
            (0..buffer.area.width)
                .map(|x| buffer[(x, y)].symbol())
                .collect::<String>()
                + "\n"
        })
        .collect()
}

#[test]
fn eight_gpus_take_a_line_each() {
    let mut app = training_app();
    app.update(Msg::System(machine_of(8, |i| 10 * i + 20)));
    let backend = screen(&app, 120, 40);
    let text = text_of(&backend);
    assert!(text.contains("system · 8 x H100 80GB HBM3"), "{text}");
    for i in 0..8 {
        let line = format!("{i} ");
        let busy = format!("{:>3}%", 10 * i + 20);
        assert!(
            text.lines().any(|l| l.contains(&line) && l.contains(&busy)),
            "GPU {i} at {busy}: {text}"
        );
    }
    insta::assert_snapshot!("eight_gpus_120x40", backend);
}

#[test]
fn sixteen_gpus_show_the_busiest_first_when_they_do_not_fit() {
    let mut app = training_app();
    // GPU 13 is the busiest, GPU 2 the idlest.
    let busy = |i: u32| match i {
        13 => 99,
        2 => 0,
        i => 30 + 3 * i,
    };
    app.update(Msg::System(machine_of(16, busy)));
    let backend = screen(&app, 120, 40);
    let text = text_of(&backend);
    let system: Vec<&str> = text.lines().filter_map(|l| l.split('│').nth(3)).collect();
    let first = system.iter().find(|l| l.contains('%')).unwrap();
    assert!(first.trim_start().starts_with("13 "), "{text}");
    assert!(text.contains("more, at most"), "{text}");
    assert!(
        !system.iter().any(|l| l.trim_start().starts_with(" 2 ")),
        "{text}"
    );
    insta::assert_snapshot!("sixteen_gpus_120x40", backend);
    // The plain look says the same in ASCII.
    app.view.ascii = true;
    let plain = text_of(&screen(&app, 120, 40));
    assert!(plain.is_ascii() && plain.contains("13 #"), "{plain}");
}

/// Keys from a script; when it runs out, nothing more happens.
struct Script(VecDeque<Input>);

impl InputSource for Script {
    fn next(&mut self, _timeout: std::time::Duration) -> io::Result<Option<Input>> {
        Ok(self.0.pop_front())
    }
}

fn keys(codes: &[KeyCode]) -> Script {
    Script(
        codes
            .iter()
            .map(|&c| Input::Key(KeyEvent::new(c, KeyModifiers::NONE)))
            .collect(),
    )
}

#[test]
fn the_loop_sends_each_keys_command_and_exits_once_the_run_stopped() {
    let (event_tx, event_rx) = mpsc::channel();
    let (_system_tx, system_rx) = mpsc::channel();
    for event in [
        started(),
        Event::State {
            step: 0,
            state: RunState::Training,
        },
        step(25),
    ] {
        event_tx.send(event).unwrap();
    }
    let mut recorded = Vec::new();
    let mut commands_sent = Vec::new();
    let mut record = |event: &Event| {
        recorded.push(event.clone());
        None
    };
    // The trainer's side: a stop ends the run.
    let mut to_trainer = |command: Command| {
        let stop = command == Command::Stop;
        commands_sent.push(command);
        if stop {
            let summary = Summary {
                step: 25,
                max_steps: 3000,
                state: RunState::Stopped,
                loss: None,
                elapsed_secs: 1.0,
            };
            event_tx.send(Event::Finished(summary)).unwrap();
        }
        None
    };
    let mut app = App::new(String::new(), 0, false);
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let mut input = keys(&[
        KeyCode::Char('e'),
        KeyCode::Char('a'),
        KeyCode::Char('p'),
        KeyCode::Char('s'),
        KeyCode::Char('q'),
        KeyCode::Char('y'),
    ]);
    let mut channels = Channels {
        events: &event_rx,
        system: &system_rx,
        liveness: None,
        record: &mut record,
        send: &mut to_trainer,
    };
    run(&mut terminal, &mut app, &mut input, &mut channels).unwrap();
    assert_eq!(
        commands_sent,
        [
            Command::EvalNow,
            Command::AbortGeneration,
            Command::Pause,
            Command::Save,
            Command::Stop
        ]
    );
    assert_eq!(app.exit, Some(Exit::Done));
    assert_eq!(recorded.len(), 4, "every event reaches the run directory");
    let screen = terminal.backend().to_string();
    assert!(screen.contains("STOPPED"), "{screen}");
}

/// Events read back from a run directory, each with its recorded time.
struct Recorded(std::cell::RefCell<VecDeque<(Event, std::time::SystemTime)>>);

impl crate::tui::EventSource for Recorded {
    fn try_next(&self) -> Option<(Event, Option<std::time::SystemTime>)> {
        let (event, at) = self.0.borrow_mut().pop_front()?;
        Some((event, Some(at)))
    }
}

/// Keys from a script, and the alerts the terminal was given.
struct Listening {
    keys: Script,
    alerts: Vec<crate::alerts::Alert>,
}

impl InputSource for Listening {
    fn next(&mut self, timeout: std::time::Duration) -> io::Result<Option<Input>> {
        self.keys.next(timeout)
    }

    fn alert(&mut self, alert: &crate::alerts::Alert) {
        self.alerts.push(alert.clone());
    }
}

#[test]
fn live_events_alert_the_terminal_and_a_history_read_back_does_not() {
    use crate::alerts::Kind;
    use std::time::SystemTime;
    use trainui_protocol::events::OnNonFinite;
    let now = SystemTime::now();
    let hour_ago = now - Duration::from_hours(1);
    let old_nan = Event::NonFinite {
        step: 3,
        loss: f64::NAN,
        grad_norm: f64::NAN,
        action: OnNonFinite::Skip,
        count: 1,
    };
    let nan = Event::NonFinite {
        step: 20,
        loss: f64::INFINITY,
        grad_norm: f64::NAN,
        action: OnNonFinite::Stop,
        count: 2,
    };
    let events = Recorded(std::cell::RefCell::new(VecDeque::from([
        (started(), hour_ago),
        (old_nan, hour_ago),
        (trainui_protocol::events::examples::step(10, 3000, 0.5), now),
        (nan, now),
        (
            Event::Failed {
                step: 20,
                message: "the loss is inf".into(),
            },
            now,
        ),
    ])));
    let (_system_tx, system_rx) = mpsc::channel();
    let mut record = |_: &Event| None;
    let mut send = |_: Command| None;
    let mut app = App::new(String::new(), 0, false);
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let mut input = Listening {
        keys: keys(&[KeyCode::Char('q'), KeyCode::Char('y')]),
        alerts: Vec::new(),
    };
    let mut channels = Channels {
        events: &events,
        system: &system_rx,
        liveness: None,
        record: &mut record,
        send: &mut send,
    };
    run(&mut terminal, &mut app, &mut input, &mut channels).unwrap();
    let heard: Vec<(Kind, String, String)> = input
        .alerts
        .into_iter()
        .map(|a| (a.kind, a.title, a.body))
        .collect();
    assert_eq!(
        heard,
        [
            (
                Kind::NonFinite,
                "trainui: demo-run non-finite loss".to_owned(),
                "loss inf at step 20 (stop)".to_owned()
            ),
            (
                Kind::Failed,
                "trainui: demo-run failed".to_owned(),
                "at step 20: the loss is inf".to_owned()
            ),
        ]
    );
}

#[test]
fn a_job_shows_its_ranks_and_the_one_that_went_silent() {
    use crate::tui::process::Liveness;
    use trainui_protocol::events::{Phase, Producer, RankBeat, RunInfo};
    use trainui_protocol::ranks::{RankView, Verdict};
    let mut app = training_app();
    let Event::Started(info) = started() else {
        unreachable!()
    };
    app.apply(&Event::Started(Box::new(RunInfo {
        producer: Some(Producer {
            name: "trainui-python".into(),
            version: "0.1.0".into(),
            framework: "pytorch".into(),
            world_size: 2,
        }),
        ..*info
    })));
    let view = |rank: u32, phase: Phase, verdict: Verdict| RankView {
        beat: RankBeat {
            v: 3,
            rank,
            world_size: 2,
            local_rank: rank,
            host: "node7".into(),
            pid: 4000 + rank,
            phase,
            step: 340 + u64::from(rank),
            state: RunState::Training,
            beat: "2026-11-29T15:00:01.000Z".into(),
            beat_unix: 0.0,
            written_unix: 0.0,
            signal: None,
        },
        silent_secs: 75.0,
        verdict,
    };
    app.update(Msg::Liveness(Liveness::Ranks(vec![
        view(0, Phase::Training, Verdict::Alive),
        view(1, Phase::Generating, Verdict::Gone),
    ])));
    let text: String = screen(&app, 120, 40)
        .buffer()
        .content()
        .iter()
        .map(ratatui::buffer::Cell::symbol)
        .collect();
    for shown in [
        "pytorch ×2",
        "RANK 1 GONE since 15:00:01 UTC",
        "generating at step 341",
        "node7 pid 4001",
        "r0 node7:4000 training @340",
        "r1 node7:4001 generating @341 GONE",
    ] {
        assert!(text.contains(shown), "{shown}: {text}");
    }
}

#[test]
fn the_header_says_the_current_numbers_and_its_clock_ticks_without_events() {
    let mut app = training_app();
    app.apply(&Event::ValLoss {
        step: 1500,
        loss: Some(0.42),
        batches: 8,
        timed_out: false,
    });
    let mut with_norm = step(1525);
    if let Event::Step(m) = &mut with_norm {
        m.grad_norm = Some(0.8123);
    }
    app.apply(&with_norm);
    let shown = text(&app, 120, 40);
    let loss = app.run.status.loss.unwrap();
    for expected in [
        format!("loss {loss:.3}"),
        "val 0.420 (best 0.310 @1000)".to_owned(),
        "grad 0.812".to_owned(),
        "elapsed 0:01:09".to_owned(),
        "updated 0s ago".to_owned(),
    ] {
        assert!(shown.contains(&expected), "{expected}: {shown}");
    }
    // 45 seconds without an event: the clock goes on, the age says so.
    app.update(Msg::Tick(app.now + Duration::from_secs(45)));
    let later = text(&app, 120, 40);
    assert!(later.contains("elapsed 0:01:54"), "{later}");
    assert!(later.contains("updated 45s ago"), "{later}");
}

#[test]
fn before_its_first_event_the_header_says_what_it_waits_for_with_a_clock_that_ticks() {
    let mut app = App::new("job".into(), 0, false);
    app.update(Msg::Tick(app.since + Duration::from_secs(12)));
    let waiting = text(&app, 120, 40);
    assert!(
        waiting.contains("waiting for its first event 0:00:12"),
        "{waiting}"
    );
    app.update(Msg::Tick(app.since + Duration::from_secs(75)));
    let later = text(&app, 120, 40);
    assert!(
        later.contains("waiting for its first event 0:01:15"),
        "{later}"
    );
    app.apply(&trainui_protocol::events::examples::started("job", 100));
    let started = text(&app, 120, 40);
    assert!(
        !started.contains("waiting for its first event"),
        "{started}"
    );
}

#[test]
fn a_paused_run_counts_its_pause_and_shows_no_rate_or_eta() {
    let mut app = training_app();
    assert!(text(&app, 120, 40).contains("eta 0:01:08"));
    app.apply(&Event::State {
        step: 1500,
        state: RunState::Paused,
    });
    app.update(Msg::Tick(app.now + Duration::from_secs(45)));
    let paused = text(&app, 120, 40);
    assert!(paused.contains("PAUSED 0:00:45"), "{paused}");
    assert!(
        !paused.contains("eta") && !paused.contains("tok/s"),
        "{paused}"
    );
    app.apply(&Event::Finished(Summary {
        step: 1500,
        max_steps: 3000,
        state: RunState::Stopped,
        loss: Some(0.25),
        elapsed_secs: 67.5,
    }));
    let stopped = text(&app, 120, 40);
    assert!(!stopped.contains("eta"), "{stopped}");
    assert!(stopped.contains("ended 0s ago"), "{stopped}");
}

#[test]
fn one_point_gives_distinct_axis_labels() {
    let mut app = App::new(String::new(), 0, false);
    app.apply(&started());
    app.apply(&step(25));
    let shown = screen(&app, 120, 40).to_string();
    let labels: Vec<&str> = shown
        .lines()
        .filter_map(|l| l.split('│').nth(1))
        .map(str::trim)
        .filter(|l| l.parse::<f64>().is_ok())
        .collect();
    let mut distinct = labels.clone();
    distinct.dedup();
    assert!(
        labels.len() >= 3 && distinct.len() == labels.len(),
        "{labels:?} {shown}"
    );
    // The x axis runs from the start of the run to the point.
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("\"│     0 ") && l.contains(" 25│")),
        "{shown}"
    );
}

#[test]
fn the_smoothing_window_is_in_the_legend_and_follows_the_keys() {
    let mut app = training_app();
    assert!(text(&app, 80, 24).contains("ema 100 steps"));
    press(&mut app, KeyCode::Char(']'));
    assert!(text(&app, 80, 24).contains("ema 250 steps"));
    for _ in 0..10 {
        press(&mut app, KeyCode::Char('['));
    }
    assert!(text(&app, 80, 24).contains("no smoothing"));
}

#[test]
fn the_time_axis_labels_wall_clock_time() {
    let mut app = training_app();
    press(&mut app, KeyCode::Char('t'));
    let shown = screen(&app, 120, 40).to_string();
    // 1500 steps at 0.045 s: the chart's x axis runs from 0:00:01 to 0:01:08.
    let axis = shown
        .lines()
        .find(|l| l.starts_with("\"│0:00:01"))
        .unwrap_or_else(|| panic!("no time axis: {shown}"));
    assert!(axis.contains("0:01:08"), "{axis}");
    assert!(shown.contains("loss · whole run · time"), "{shown}");
}

fn long_sample() -> Event {
    let mut event = sample(
        1500,
        1,
        GenerationOutcome::Completed,
        &format!("12704{}", "1".repeat(1500)),
        counters(3, 0),
    );
    if let Event::Sample(s) = &mut event {
        s.golden = "12705".into();
    }
    event
}

#[test]
fn enter_opens_a_sample_whole_with_its_first_difference() {
    let mut app = training_app();
    app.apply(&long_sample());
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.view.overlay, view_state::Overlay::Sample);
    let first = text(&app, 80, 24);
    assert!(
        first.contains("first difference at character 5: golden '5', output '4'"),
        "{first}"
    );
    assert!(
        first.contains("PROMPT") && first.contains("GOLDEN"),
        "{first}"
    );
    // Scrolled to its end, the view shows the last line of the output.
    let total: usize = app.view.geometry.get().detail_lines;
    assert!(total > 30, "1500 characters wrap over many lines");
    assert!(!first.contains(&format!("-{total}/{total}")), "{first}");
    press(&mut app, KeyCode::End);
    let last = text(&app, 80, 24);
    assert!(last.contains(&format!("-{total}/{total}")), "{last}");
    assert!(!last.contains("PROMPT"), "{last}");
    // The mark: the output from its 5th character on is underlined.
    let buffer = screen(&app, 80, 24);
    let marked = buffer
        .buffer()
        .content()
        .iter()
        .filter(|c| c.modifier.contains(ratatui::style::Modifier::UNDERLINED))
        .count();
    assert!(marked > 50, "{marked}");
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.view.overlay, view_state::Overlay::None);
}

#[test]
fn each_evaluation_has_a_summary_line_and_counts_in_the_singular() {
    let mut app = App::new(String::new(), 0, true);
    app.apply(&started());
    app.apply(&step(25));
    app.apply(&Event::EvalStarted {
        step: 25,
        eval: 1,
        samples: 1,
    });
    app.apply(&Event::ValLoss {
        step: 25,
        loss: Some(0.5),
        batches: 1,
        timed_out: false,
    });
    app.apply(&sample(
        25,
        1,
        GenerationOutcome::TimedOut,
        "111",
        counters(1, 1),
    ));
    app.apply(&Event::EvalFinished(EvalSummary {
        step: 25,
        eval: 1,
        val_loss: Some(0.5),
        train_loss: None,
        gap: None,
        samples: 1,
        matches: 0,
        exact_match: 0.0,
        counters: counters(1, 1),
    }));
    let shown = text(&app, 120, 40);
    assert!(shown.contains("1/1 sample "), "{shown}");
    assert!(!shown.contains("1 samples"), "{shown}");
    assert!(
        shown.contains("eval 1 @25 · val 0.500 · 0/1 matched · 1 timeout"),
        "{shown}"
    );
    // 0% is a bar, on a stated scale.
    assert!(shown.contains("match   0% ▁ of 0-100%"), "{shown}");
}

#[test]
fn timeouts_are_red_and_aborts_yellow() {
    let mut app = training_app();
    app.apply(&sample(
        1500,
        1,
        GenerationOutcome::TimedOut,
        "1",
        counters(3, 1),
    ));
    app.apply(&sample(
        1500,
        2,
        GenerationOutcome::Aborted,
        "1",
        counters(4, 1),
    ));
    let buffer = screen(&app, 120, 40);
    let color_of = |word: &str| {
        let text = buffer.to_string();
        let row = text.lines().position(|l| l.contains(word)).unwrap();
        let line: Vec<&ratatui::buffer::Cell> = (0..120)
            .map(|x| &buffer.buffer()[(x, row as u16)])
            .collect();
        let line_text: String = line.iter().map(|c| c.symbol()).collect();
        let column = line_text.find(word).unwrap();
        line[line_text[..column].chars().count()].fg
    };
    assert_eq!(color_of("TIMEOUT"), ratatui::style::Color::Red);
    assert_eq!(color_of("ABORTED"), ratatui::style::Color::Yellow);
}

#[test]
fn the_events_wrap_whole_and_scrolling_stays_in_range() {
    let mut app = training_app();
    app.apply(&Event::Control {
        id: "0001-set".into(),
        command: "set".into(),
        accepted: false,
        message: "model.n_layer cannot change while the run trains; restart with --set".into(),
    });
    let shown = text(&app, 120, 40);
    // Wrapped, not cut: the message's end is on screen.
    assert!(
        shown.contains("control set REJECTED: model.n_layer cannot")
            && shown.contains("restart with")
            && shown.contains("--set "),
        "{shown}"
    );
    // Everything fits: scrolling up does not hide the newest line.
    press(&mut app, KeyCode::Tab);
    let before = screen(&app, 120, 40).to_string();
    press(&mut app, KeyCode::Up);
    press(&mut app, KeyCode::PageUp);
    assert_eq!(app.view.log_scroll, 0);
    assert_eq!(screen(&app, 120, 40).to_string(), before);
    // Many lines: PgUp goes back, Home to the oldest, End to the newest,
    // PgDn never past it, and the title says where the view is.
    for n in 0..60 {
        app.apply(&Event::Checkpoint {
            step: n,
            path: format!("runs/x/checkpoints/checkpoint-{n}"),
        });
    }
    let total = app.run.log.len();
    screen(&app, 120, 40);
    press(&mut app, KeyCode::Home);
    let top = text(&app, 120, 40);
    assert!(top.contains("events 1-"), "{top}");
    assert!(top.contains("started on cpu"), "{top}");
    press(&mut app, KeyCode::End);
    let bottom = text(&app, 120, 40);
    assert!(bottom.contains(&format!("/{total} ")), "{bottom}");
    assert!(bottom.contains("checkpoint-59"), "{bottom}");
    press(&mut app, KeyCode::PageUp);
    assert!(app.view.log_scroll > 0);
    for _ in 0..5 {
        press(&mut app, KeyCode::PageDown);
    }
    assert_eq!(app.view.log_scroll, 0);
    // Scrolled back, new lines do not move what is being read.
    press(&mut app, KeyCode::PageUp);
    let reading = screen(&app, 120, 40).to_string();
    app.apply(&Event::Checkpoint {
        step: 99,
        path: "runs/x/checkpoints/checkpoint-99".into(),
    });
    let events = |text: &str| -> Vec<String> {
        text.lines()
            .skip(21)
            .filter(|l| !l.contains(" events "))
            .map(|l| l.chars().skip(76).collect())
            .collect()
    };
    assert_eq!(events(&reading), events(&screen(&app, 120, 40).to_string()));
}

#[test]
fn the_log_view_is_full_screen_timestamped_searchable_and_filtered() {
    let mut app = training_app();
    for n in 0..80 {
        app.apply(&Event::Checkpoint {
            step: n,
            path: format!("runs/x/checkpoints/checkpoint-{n}"),
        });
    }
    app.apply(&Event::Warning {
        step: 80,
        message: "timeout rate 100.0% (1 of 1 generations) is above eval.timeout_warn_rate".into(),
    });
    press(&mut app, KeyCode::Char('L'));
    let shown = text(&app, 120, 40);
    let clock = humantime::format_rfc3339_seconds(app.now).to_string()[11..19].to_owned();
    assert!(
        shown.contains(&format!("{clock} WARNING at step 80")),
        "{shown}"
    );
    let total = app.run.log.len();
    assert!(shown.contains(&format!("/{total} · Esc closes")), "{shown}");
    // Search: / types, Enter jumps to the first match at or below the top.
    press(&mut app, KeyCode::Char('/'));
    for c in "checkpoint-7".chars() {
        press(&mut app, KeyCode::Char(c));
    }
    assert!(text(&app, 120, 40).contains("/checkpoint-7_"));
    press(&mut app, KeyCode::Enter);
    let found = text(&app, 120, 40);
    assert!(found.contains("search \"checkpoint-7\""), "{found}");
    // From the bottom of the log, the first match in view is the 2nd.
    assert!(
        app.ack_text().unwrap().starts_with("match 2 of 11"),
        "{:?}",
        app.ack
    );
    press(&mut app, KeyCode::Char('n'));
    assert!(
        app.ack_text().unwrap().starts_with("match 3 of 11"),
        "{:?}",
        app.ack
    );
    press(&mut app, KeyCode::Char('N'));
    press(&mut app, KeyCode::Char('N'));
    assert!(
        app.ack_text().unwrap().starts_with("match 1 of 11"),
        "{:?}",
        app.ack
    );
    assert!(text(&app, 120, 40).contains("checkpoint at step 7: runs/x/checkpoints/checkpoint-7"));
    // f: warnings and errors only.
    press(&mut app, KeyCode::Char('f'));
    let filtered = text(&app, 120, 40);
    assert!(filtered.contains("WARNING at step 80"), "{filtered}");
    assert!(!filtered.contains("checkpoint-79"), "{filtered}");
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.view.overlay, view_state::Overlay::None);
}

#[test]
fn the_plain_look_is_ascii_with_progress_and_focus_by_shape() {
    let mut app = training_app();
    app.view.color = false;
    app.view.ascii = true;
    app.apply(&sample(
        1500,
        1,
        GenerationOutcome::TimedOut,
        "1",
        counters(3, 1),
    ));
    for (width, height) in [(80, 24), (120, 40)] {
        let buffer = screen(&app, width, height);
        let shown = buffer.to_string();
        assert!(
            buffer
                .buffer()
                .content()
                .iter()
                .all(|c| c.symbol().is_ascii()),
            "{shown}"
        );
        assert!(
            buffer
                .buffer()
                .content()
                .iter()
                .all(|c| c.fg == ratatui::style::Color::Reset),
            "no colour"
        );
        assert!(
            shown.contains("50% ####") && shown.contains("#....."),
            "{shown}"
        );
        // The focused pane (eval) has a = border, the others -.
        assert!(
            shown.contains("+ eval") && shown.contains("===="),
            "{shown}"
        );
        assert!(shown.contains("+ loss"), "{shown}");
    }
    insta::assert_snapshot!("plain", screen(&app, 80, 24));
}

#[test]
fn the_stall_banner_counts_up_and_restart_needs_a_checkpoint() {
    let mut app = training_app();
    app.apply(&Event::Stalled {
        step: 1500,
        phase: trainui_protocol::events::Phase::Generating,
        silent_secs: 10.0,
        timeout_secs: 10.0,
    });
    let first = text(&app, 120, 40);
    assert!(first.contains("STALLED for 0:00:10"), "{first}");
    assert!(first.contains("no checkpoint yet; q stops it"), "{first}");
    assert!(!first.contains("r restart"), "{first}");
    app.update(Msg::Tick(app.now + Duration::from_secs(15)));
    assert!(text(&app, 120, 40).contains("STALLED for 0:00:25"));
    app.apply(&Event::Checkpoint {
        step: 1488,
        path: "runs/demo-run/checkpoints/checkpoint-1488".into(),
    });
    let offered = text(&app, 120, 40);
    assert!(
        offered.contains("r restarts from checkpoint-1488"),
        "{offered}"
    );
    press(&mut app, KeyCode::Char('r'));
    let asked = text(&app, 120, 40);
    assert!(
        asked.contains("Restart the stalled run?")
            && asked.contains("from runs/demo-run/checkpoints/checkpoint-1488"),
        "{asked}"
    );
}

#[test]
fn the_farewell_says_how_the_run_ended_and_how_to_go_on() {
    let mut app = training_app();
    app.resume = Some("trainui train --run-dir runs/demo-run --resume latest".into());
    app.apply(&Event::Checkpoint {
        step: 1500,
        path: "runs/demo-run/checkpoints/checkpoint-1500".into(),
    });
    assert_eq!(
        app.farewell(),
        "demo-run quit at once at step 1500/3000 without saving; last checkpoint \
         runs/demo-run/checkpoints/checkpoint-1500; resume: trainui train --run-dir \
         runs/demo-run --resume latest"
    );
    app.apply(&Event::Finished(Summary {
        step: 1500,
        max_steps: 3000,
        state: RunState::Stopped,
        loss: Some(0.25),
        elapsed_secs: 67.5,
    }));
    assert!(
        app.farewell()
            .starts_with("demo-run stopped at step 1500/3000; last checkpoint")
    );
    let mut watching = training_app();
    watching.owner = app::Owner::Watcher;
    assert!(
        watching
            .farewell()
            .starts_with("left demo-run training at step 1500/3000; the run goes on"),
        "{}",
        watching.farewell()
    );
    watching.update(Msg::Liveness(process::Liveness::Gone(process::GoneRun {
        pid: 7,
        since: "2026-11-29T15:00:01.000Z".into(),
        last_checkpoint: None,
        resume: "trainui train --run-dir runs/demo-run --resume latest".into(),
    })));
    assert!(
        watching
            .farewell()
            .starts_with("demo-run: its process is gone at step 1500/3000"),
        "{}",
        watching.farewell()
    );
    let mut job = training_app();
    job.owner = app::Owner::Job;
    // `q` `q` under trainui run: the job is asked to end, and may save.
    assert!(
        job.farewell()
            .starts_with("demo-run: the job is asked to end at once at step 1500/3000 (SIGTERM"),
        "{}",
        job.farewell()
    );
    assert!(!job.farewell().contains("without saving"));
    job.update(Msg::Liveness(process::Liveness::JobEnded(3)));
    assert!(
        job.farewell().contains("the job exited with status 3"),
        "{}",
        job.farewell()
    );
}

/// A run for comparison: its loss falls as `scale` says, logged every 25
/// steps up to `last` of 3000 at `at`, with an evaluation at 500 when it
/// got there.
fn compared_run(name: &str, last: u64, scale: f64, at: std::time::SystemTime) -> App {
    let mut app = App::new(name.into(), 3000, true);
    app.now = at;
    app.owner = app::Owner::Watcher;
    let Event::Started(mut info) = started() else {
        unreachable!()
    };
    info.run_name = name.into();
    app.apply(&Event::Started(info));
    app.apply(&Event::State {
        step: 0,
        state: RunState::Training,
    });
    for s in (25..=last).step_by(25) {
        let Event::Step(mut metrics) = step(s) else {
            unreachable!()
        };
        metrics.loss *= scale;
        app.apply(&Event::Step(metrics));
        if s == 500 {
            app.apply(&Event::ValLoss {
                step: 500,
                loss: Some(0.9 * scale),
                batches: 8,
                timed_out: false,
            });
            app.apply(&Event::EvalFinished(EvalSummary {
                step: 500,
                eval: 1,
                val_loss: Some(0.9 * scale),
                train_loss: Some(0.8 * scale),
                gap: Some(0.1 * scale),
                samples: 4,
                matches: 1,
                exact_match: 0.25,
                counters: counters(4, 1),
            }));
            app.apply(&Event::State {
                step: 500,
                state: RunState::Training,
            });
        }
    }
    app
}

/// Four runs: training, finished, gone and silent for five minutes.
fn four_runs(color: bool) -> Vec<App> {
    let now = std::time::SystemTime::UNIX_EPOCH + Duration::from_hours(500_000);
    let mut runs = vec![
        compared_run("lr-3e-4", 1500, 1.0, now),
        compared_run("lr-1e-3", 3000, 0.7, now),
        compared_run("lr-3e-3", 800, 1.5, now),
        compared_run("lr-1e-2", 600, 2.2, now - Duration::from_mins(5)),
    ];
    runs[1].apply(&Event::Finished(Summary {
        step: 3000,
        max_steps: 3000,
        state: RunState::Finished,
        loss: Some(0.14),
        elapsed_secs: 135.0,
    }));
    runs[2].update(Msg::Liveness(process::Liveness::Gone(process::GoneRun {
        pid: 7,
        since: "2027-01-15T08:00:00.000Z".into(),
        last_checkpoint: None,
        resume: "trainui train --run-dir runs/lr-3e-3 --resume latest".into(),
    })));
    for run in &mut runs {
        run.update(Msg::Tick(now));
        run.view.color = color;
        run.view.ascii = !color;
    }
    runs
}

fn board_screen(board: &board::Board, width: u16, height: u16) -> TestBackend {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal
        .draw(|frame| render::render_board(frame, board))
        .unwrap();
    terminal.backend().clone()
}

/// The rows of the chart pane: from its title to the runs table's
/// header.
fn chart_rows(screen: &TestBackend) -> std::ops::Range<u16> {
    let buffer = screen.buffer();
    let row_of = |text: &str| {
        (0..buffer.area.height)
            .find(|&y| {
                let line: String = (0..buffer.area.width)
                    .map(|x| buffer[(x, y)].symbol())
                    .collect();
                line.contains(text)
            })
            .unwrap_or_else(|| panic!("{text} is on the screen"))
    };
    row_of(" loss · ")..row_of("# run")
}

/// Cells of the chart pane drawn in `color`.
fn chart_cells_in(screen: &TestBackend, color: ratatui::style::Color) -> usize {
    let buffer = screen.buffer();
    chart_rows(screen)
        .flat_map(|y| (0..buffer.area.width).map(move |x| (x, y)))
        .filter(|&(x, y)| buffer[(x, y)].fg == color && buffer[(x, y)].symbol() != " ")
        .count()
}

#[test]
fn compare_four_runs_120x40() {
    use ratatui::style::Color;
    let mut runs = four_runs(true);
    let mut board = board::Board::new(&mut runs);
    board.key(KeyEvent::from(KeyCode::Right));
    let screen = board_screen(&board, 120, 40);
    let text = screen.to_string();
    for shown in [
        "loss · 4 of 4 runs · ema 100 steps · whole run · steps",
        "FINISHED",
        "GONE",
        "training · silent",
        "3,000/3,000",
        "▶ lr-1e-3 2/4",
        "following lr-1e-3 (2/4)",
        "←→ run",
    ] {
        assert!(text.contains(shown), "{shown}: {text}");
    }
    // Each run's curve in its own colour.
    for color in [Color::Cyan, Color::Yellow, Color::Magenta, Color::Green] {
        assert!(chart_cells_in(&screen, color) > 10, "{color:?}: {text}");
    }
    insta::assert_snapshot!(text);

    // Hidden: its curve and its legend leave the chart; its row stays.
    board.key(KeyEvent::from(KeyCode::Char('1')));
    board.key(KeyEvent::from(KeyCode::Char('v')));
    let screen = board_screen(&board, 120, 40);
    assert_eq!(chart_cells_in(&screen, Color::Cyan), 0);
    assert!(chart_cells_in(&screen, Color::Yellow) > 10);
    let text = screen.to_string();
    assert!(text.contains("loss · 3 of 4 runs"), "{text}");
    assert!(text.contains("lr-3e-4"), "{text}");
}

#[test]
fn compare_plain_100x30() {
    let mut runs = four_runs(false);
    let mut board = board::Board::new(&mut runs);
    board.key(KeyEvent::from(KeyCode::Char('3')));
    let text = board_screen(&board, 100, 30).to_string();
    assert!(text.is_ascii(), "{text}");
    // Without colour each run has its own shape: `.`, `o`, `#`, `-`.
    for legend in [". lr-3e-4", "o lr-1e-3", "# lr-3e-3", "- lr-1e-2"] {
        assert!(text.contains(legend), "{legend}: {text}");
    }
    assert!(text.contains("> lr-3e-3 3/4"), "{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn the_loop_feeds_each_run_its_events_and_sends_the_followed_runs_commands_to_it() {
    let (_system_tx, system_rx) = mpsc::channel();
    let (first_tx, first_rx) = mpsc::channel();
    let (second_tx, second_rx) = mpsc::channel();
    for (events, name) in [(&first_tx, "first"), (&second_tx, "second")] {
        let Event::Started(mut info) = started() else {
            unreachable!()
        };
        info.run_name = name.into();
        events.send(Event::Started(info)).unwrap();
        events
            .send(Event::State {
                step: 0,
                state: RunState::Training,
            })
            .unwrap();
    }
    second_tx.send(step(50)).unwrap();
    let (mut to_first, mut to_second) = (Vec::new(), Vec::new());
    let mut send_first = |command: Command| {
        to_first.push(command);
        None
    };
    let mut send_second = |command: Command| {
        to_second.push(command);
        None
    };
    let (mut record_first, mut record_second) = (|_: &Event| None, |_: &Event| None);
    let mut feeds = [
        Feed {
            events: &first_rx,
            liveness: None,
            record: &mut record_first,
            send: &mut send_first,
        },
        Feed {
            events: &second_rx,
            liveness: None,
            record: &mut record_second,
            send: &mut send_second,
        },
    ];
    let mut runs = vec![
        App::new(String::new(), 0, false),
        App::new(String::new(), 0, false),
    ];
    for run in &mut runs {
        run.owner = app::Owner::Watcher;
    }
    let mut board = board::Board::new(&mut runs);
    let mut terminal = Terminal::new(TestBackend::new(100, 30)).unwrap();
    let mut input = keys(&[
        KeyCode::Char('p'),
        KeyCode::Right,
        KeyCode::Char('e'),
        KeyCode::Char('s'),
        KeyCode::Char('q'),
    ]);
    run_board(
        &mut terminal,
        &mut board,
        &mut input,
        &system_rx,
        &mut feeds,
    )
    .unwrap();
    assert_eq!(to_first, [Command::Pause]);
    assert_eq!(to_second, [Command::EvalNow, Command::Save]);
    assert_eq!(board.runs[0].run.status.run_name, "first");
    assert_eq!(board.runs[0].run.status.current_step, 0);
    assert_eq!(board.runs[1].run.status.current_step, 50);
    assert_eq!(board.runs[1].ack_text(), Some("sent: save to second"));
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

/// A run whose every text tries to drive the terminal: a title change, a
/// screen clear, OSC 52 (writes the clipboard), bells, concealed red, an
/// 8-bit CSI, a hyperlink, a right-to-left override, a line separator.
fn hostile_app() -> App {
    use trainui_protocol::events::{Phase, Producer, RankBeat};
    use trainui_protocol::ranks::{RankView, Verdict};
    let mut app = App::new("folder\x1b]2;TITLE\x07".into(), 0, true);
    app.owner = app::Owner::Watcher;
    let Event::Started(mut info) = started() else {
        unreachable!()
    };
    info.run_name = "evil\x1b]2;PWNED\x07run".into();
    info.device = "cpu\x1b[2J".into();
    info.producer = Some(Producer {
        name: "trainui-python".into(),
        version: "0.1\x1b[8;31m".into(),
        framework: "torch\u{202e}gnp.exe".into(),
        world_size: 2,
    });
    info.resumed_from = Some("ckpt\u{9b}2J".into());
    app.apply(&Event::Started(info));
    app.apply(&step(25));
    app.apply(&Event::Warning {
        step: 25,
        message: "paste \x1b]52;c;cm0gLXJmIH4K\x07 now".into(),
    });
    app.apply(&Event::CommandAck {
        step: 25,
        command: Command::Save,
        message: "saving\x07\x07".into(),
    });
    app.apply(&Event::Control {
        id: "id\x1b[1A".into(),
        command: "set\u{2066}x".into(),
        accepted: false,
        message: "line\u{2028}break".into(),
    });
    app.apply(&Event::Checkpoint {
        step: 25,
        path: "ckpt\x1b]8;;http://x/\x1b\\link\x1b]8;;\x1b\\".into(),
    });
    app.apply(&Event::EvalStarted {
        step: 25,
        eval: 1,
        samples: 2,
    });
    if let Event::Sample(mut s) = sample(25, 1, GenerationOutcome::Completed, "", counters(1, 0)) {
        s.prompt = "2+2=\x1b[31m".into();
        s.golden = "4\u{202e}".into();
        s.output = "4\u{202e}x\n\x1b]0;t\x07".into();
        s.origin = "val\x1b[2K.jsonl:3".into();
        app.apply(&Event::Sample(s));
    }
    app.apply(&Event::GenerationStarted(GenerationStart {
        step: 25,
        sample: 2,
        of: 2,
        example: 7,
        origin: "val.jsonl:8\x07".into(),
        prompt: "say \x1b[6n".into(),
        golden: "ok\u{202d}".into(),
        golden_tokens: 1,
        timeout_secs: 60.0,
    }));
    app.apply(&Event::GenerationProgress {
        step: 25,
        sample: 2,
        text: "typing \x1bP+q\x1b\\".into(),
        tokens: 2,
        elapsed_secs: 1.0,
    });
    let beat = RankBeat {
        v: 3,
        rank: 1,
        world_size: 2,
        local_rank: 1,
        host: "node\x1b]2;HOST\x07".into(),
        pid: 4242,
        phase: Phase::Training,
        step: 25,
        state: RunState::Training,
        beat: "2026-11-29T15:00:01\x1b[2J".into(),
        beat_unix: 0.0,
        written_unix: 0.0,
        signal: None,
    };
    app.update(Msg::Liveness(process::Liveness::Ranks(vec![RankView {
        beat,
        silent_secs: 400.0,
        verdict: Verdict::Silent,
    }])));
    app
}

#[test]
fn texts_from_a_run_are_shown_escaped_and_no_cell_holds_a_control_character() {
    let mut app = hostile_app();
    let mut shown = String::new();
    let mut screens = Vec::new();
    // The panes, the full-screen log, the sample whole, the help; then the
    // run failed and gone.
    for keys in [
        &[][..],
        &[KeyCode::Char('L')],
        &[KeyCode::Esc, KeyCode::Enter],
    ] {
        for &code in keys {
            press(&mut app, code);
        }
        screens.push(screen(&app, 140, 45));
    }
    press(&mut app, KeyCode::Esc);
    app.apply(&Event::Failed {
        step: 25,
        message: "boom\x1b[?1049l\x1bc".into(),
    });
    app.update(Msg::Liveness(process::Liveness::Gone(process::GoneRun {
        pid: 7,
        since: "2026\x1b[2J".into(),
        last_checkpoint: Some("c\x1b]2;GONE\x07".into()),
        resume: "trainui train --run-dir r\u{202e} --resume latest".into(),
    })));
    screens.push(screen(&app, 140, 45));
    press(&mut app, KeyCode::Char('L'));
    screens.push(screen(&app, 140, 45));
    for backend in &screens {
        assert_eq!(unsafe_cells(backend), Vec::<String>::new(), "{backend}");
        shown.push_str(&text_of(backend));
    }
    for escaped in [
        "evil\\x1b]2;PWNED\\x07run",
        "cpu\\x1b[2J",
        "torch\\u{202e}gnp.exe",
        "paste \\x1b]52;c;cm0gLXJmIH4K\\x07 now",
        "saving\\x07\\x07",
        "line\\u{2028}break",
        "ckpt\\x1b]8;;http://x/\\x1b\\link",
        "2+2=\\x1b[31m",
        "4\\u{202e}x",
        "\\x1b]0;t\\x07",
        "say \\x1b[6n",
        "typing \\x1bP+q\\x1b\\",
        "node\\x1b]2;HOST\\x07",
        "boom\\x1b[?1049l\\x1bc",
        "r\\u{202e} --resume",
    ] {
        assert!(
            shown.contains(escaped),
            "{escaped} is not on screen:\n{shown}"
        );
    }
    // Everything the app keeps to show is escaped, the farewell too.
    for line in &app.run.log {
        assert!(
            !line.text.chars().any(trainui_protocol::text::is_unsafe),
            "{line:?}"
        );
    }
    let farewell = app.farewell();
    assert!(
        !farewell.chars().any(trainui_protocol::text::is_unsafe),
        "{farewell}"
    );
    assert!(farewell.starts_with("evil\\x1b]2;PWNED\\x07run: its process is gone"));
}

#[test]
fn a_folder_name_and_a_label_are_escaped_and_an_answer_too() {
    let mut app = App::new("run\x1b]2;T\x07".into(), 10, false);
    assert_eq!(app.run.status.run_name, "run\\x1b]2;T\\x07");
    app.set_label("runs/a\u{202e}/exp".into());
    app.apply(&started());
    assert_eq!(app.run.status.run_name, "runs/a\\u{202e}/exp");
    app.say("cannot write control/\x1b[2J");
    assert_eq!(app.ack_text(), Some("cannot write control/\\x1b[2J"));
}

/// The rows of `backend` as text, each with its cells.
fn rows(backend: &TestBackend) -> Vec<Vec<&ratatui::buffer::Cell>> {
    let width = usize::from(backend.buffer().area.width);
    backend
        .buffer()
        .content()
        .chunks(width)
        .map(|row| row.iter().collect())
        .collect()
}

/// The row after the one that starts (inside the pane) with `title`, as
/// (symbol, underlined) per cell.
fn row_after(backend: &TestBackend, title: &str) -> Vec<(String, bool)> {
    let rows = rows(backend);
    let at = rows
        .iter()
        .position(|row| {
            let text: String = row.iter().map(|c| c.symbol()).collect();
            text.trim_start_matches(|c: char| !c.is_alphanumeric())
                .starts_with(title)
        })
        .unwrap_or_else(|| panic!("no {title} row:\n{backend}"));
    rows[at + 1]
        .iter()
        .map(|c| {
            (
                c.symbol().to_owned(),
                c.modifier.contains(ratatui::style::Modifier::UNDERLINED),
            )
        })
        .collect()
}

/// Where the mark starts in a row: the text from the first underlined
/// cell on, up to the border.
fn marked_from(row: &[(String, bool)]) -> String {
    row.iter()
        .skip_while(|(_, marked)| !marked)
        .map(|(symbol, _)| symbol.as_str())
        .collect::<String>()
        .trim_end_matches(|c: char| c == ' ' || c == '|' || ('\u{2500}'..='\u{257f}').contains(&c))
        .to_owned()
}

#[test]
fn a_samples_difference_is_found_in_the_texts_as_written_and_marked_where_it_shows() {
    for (golden, output, verdict, golden_mark, output_mark) in [
        (
            "ab\x1bXc",
            "ab\x1bYc",
            "first difference at character 4: golden 'X', output 'Y'",
            "Xc",
            "Yc",
        ),
        (
            "a\x1b",
            "a\x1c",
            "first difference at character 2: golden '\\x1b', output '\\x1c'",
            "\\x1b",
            "\\x1c",
        ),
        (
            "\u{202e}4",
            "\u{202e}",
            "the output stops after 1 characters; the golden answer goes on for 1",
            "4",
            "",
        ),
    ] {
        let mut app = training_app();
        if let Event::Sample(mut s) =
            sample(1500, 1, GenerationOutcome::Completed, "", counters(3, 0))
        {
            s.golden = golden.into();
            s.output = output.into();
            s.exact_match = false;
            app.apply(&Event::Sample(s));
        }
        press(&mut app, KeyCode::Enter);
        let backend = screen(&app, 80, 24);
        assert_eq!(unsafe_cells(&backend), Vec::<String>::new());
        assert!(text_of(&backend).contains(verdict), "{backend}");
        assert_eq!(
            marked_from(&row_after(&backend, "GOLDEN")),
            golden_mark,
            "{backend}"
        );
        if output_mark.is_empty() {
            assert!(text_of(&backend).contains("(ends here)"), "{backend}");
        } else {
            assert_eq!(
                marked_from(&row_after(&backend, "OUTPUT")),
                output_mark,
                "{backend}"
            );
        }
    }
}
