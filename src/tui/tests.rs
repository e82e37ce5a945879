//! Whole-screen tests: the app fed with events and keys, drawn on a
//! `TestBackend` and compared with snapshots in `src/tui/snapshots/`.

use std::collections::VecDeque;
use std::sync::mpsc;

use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::app::{App, Exit, Msg};
use super::sampler::{GpuSample, HostSample, SystemSample};
use super::*;
use crate::events::{
    Command, EvalSummary, Event, GenerationCounters, GenerationOutcome, GenerationStart, RunInfo,
    RunState, SampleResult, StepMetrics, Summary,
};

fn started() -> Event {
    Event::Started(Box::new(RunInfo {
        run_name: "demo-run".into(),
        pid: 4242,
        device: "cpu".into(),
        start_step: 0,
        max_steps: 3000,
        parameters: 830_976,
        vocab_size: 262,
        train_examples: 20_000,
        val_examples: 500,
        skipped_overlong: 0,
        resumed_from: None,
        evals: 0,
        counters: GenerationCounters::default(),
        settings: Some(crate::config::live_settings(
            &crate::config::Config::default(),
        )),
        nonfinite_steps: 0,
        producer: None,
    }))
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
    let mut settings = crate::config::live_settings(&crate::config::Config::default());
    settings.eval.timeout_warn_rate = 0.5;
    app.apply(&Event::Settings {
        step: 1500,
        settings,
    });
    let after = text(&app);
    assert!(after.contains("timeout rate 33.3% (warn 50%)"), "{after}");
    assert!(!app.status.timeout_warning());
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
    assert_eq!(app.status.loss.map(f64::is_nan), Some(true));
    let after = screen(&app, 80, 24).to_string();
    // The chart is the same (the step counter moved on).
    let chart = |text: &str| text.lines().skip(2).take(10).collect::<Vec<_>>().join("\n");
    assert_eq!(chart(&before.to_string()), chart(&after));
    app.apply(&step(1550));
    assert!(app.smoothed_history.last().unwrap().1.is_finite());
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
        phase: crate::events::Phase::Generating,
        silent_secs: 301.0,
        timeout_secs: 300.0,
    });
    insta::assert_snapshot!(screen(&app, 80, 24));
}

#[test]
fn the_help_fits_the_smallest_screen_and_names_every_key() {
    let mut app = training_app();
    app.update(Msg::Key(KeyEvent::new(
        KeyCode::Char('?'),
        KeyModifiers::NONE,
    )));
    let (width, height) = (render::MIN_WIDTH, render::MIN_HEIGHT);
    let text = screen(&app, width, height).to_string();
    for binding in keys::KEYS {
        assert!(
            text.contains(&format!("{}  {}", binding.label, binding.help)),
            "{}: {text}",
            binding.label
        );
    }
    for (kind, how) in keys::WITHOUT_KEY {
        assert!(text.contains(&format!("{}  {how}", kind.word())), "{text}");
    }
    assert!(text.contains("any key closes this help"), "{text}");
}

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

#[test]
fn a_job_shows_its_ranks_and_the_one_that_went_silent() {
    use crate::events::{Phase, Producer, RankBeat, RunInfo};
    use crate::ranks::{RankView, Verdict};
    use crate::tui::app::Liveness;
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
        "r0 training @340 node7:4000",
        "r1 generating @341 node7:4001 GONE",
    ] {
        assert!(text.contains(shown), "{shown}: {text}");
    }
}
