//! What the TUI costs: drawing the full layout with a long history, and the
//! memory that a long run's step events leave behind.

use std::time::Instant;

use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::plan::quantile;
use trainui::tui::app::{App, Msg};
use trainui::tui::render;
use trainui::tui::sampler::{HostSample, SystemSample};
use trainui_protocol::events::{
    Event, GenerationCounters, GenerationOutcome, GenerationStart, RunInfo, RunState, SampleResult,
    StepMetrics,
};

/// Frame times of one terminal size, milliseconds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FrameTimes {
    pub width: u16,
    pub height: u16,
    pub median_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct UiFigures {
    pub history_steps: u64,
    pub frames: Vec<FrameTimes>,
    /// Resident memory added while the app took in the step events.
    pub memory_growth_bytes: i64,
    /// How fast the app folds step events in.
    pub events_per_sec: f64,
}

fn step(step: u64) -> Event {
    let progress = step as f64 / 2e6;
    Event::Step(StepMetrics {
        step,
        max_steps: 2_000_000,
        loss: 0.2 + 4.5 * (-6.0 * progress).exp() + 0.05 * (step as f64 * 0.7).sin(),
        learning_rate: 1e-3 * (1.0 - progress).max(0.1),
        tokens_per_sec: 15_234.0,
        elapsed_secs: step as f64 * 0.045,
        eta_secs: (2_000_000 - step) as f64 * 0.045,
        grad_norm: None,
        tokens_seen: None,
    })
}

/// Resident memory of this process, from /proc (Linux).
fn resident_bytes() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// An evaluation in progress: finished samples, one being written, a warning.
pub(super) fn evaluation_events(at: u64) -> Vec<Event> {
    let counters = GenerationCounters {
        generations: 7,
        completed: 6,
        timed_out: 1,
        aborted: 0,
        errors: 0,
    };
    let mut events = vec![
        Event::EvalStarted {
            step: at,
            eval: 4000,
            samples: 8,
        },
        Event::ValLoss {
            step: at,
            loss: Some(0.31),
            batches: 8,
            timed_out: false,
        },
    ];
    for n in 1..=7 {
        let outcome = if n == 3 {
            GenerationOutcome::TimedOut
        } else {
            GenerationOutcome::Completed
        };
        events.push(Event::Sample(SampleResult {
            step: at,
            sample: n,
            of: 8,
            example: u64::from(n) + 40,
            origin: format!("val.jsonl:{}", n + 41),
            prompt: "reverse 8 3 1 9 4 7 =".into(),
            golden: "7 4 9 1 3 8".into(),
            output: "7 4 9 1 3 8".into(),
            golden_tokens: 6,
            output_tokens: 6,
            exact_match: outcome == GenerationOutcome::Completed,
            outcome,
            loss: Some(0.123),
            elapsed_secs: 0.004,
            tokens_per_sec: 1500.0,
            timeout_secs: 60.0,
            counters,
        }));
    }
    events.push(Event::GenerationStarted(GenerationStart {
        step: at,
        sample: 8,
        of: 8,
        example: 48,
        origin: "val.jsonl:49".into(),
        prompt: "sort 5 2 8 1 =".into(),
        golden: "1 2 5 8".into(),
        golden_tokens: 4,
        timeout_secs: 60.0,
    }));
    events.push(Event::GenerationProgress {
        step: at,
        sample: 8,
        text: "1 2 5".into(),
        tokens: 3,
        elapsed_secs: 0.5,
    });
    events.push(Event::Warning {
        step: at,
        message: "TIMEOUT: val.jsonl:44 exceeded 60s".into(),
    });
    events
}

/// Feeds an app `history_steps` step events and times `frames` draws of the
/// full layout at each size (a new step event arrives between draws, as in
/// a live run).
pub fn measure(history_steps: u64, frames: usize, sizes: &[(u16, u16)]) -> UiFigures {
    let mut app = App::new("bench".into(), 2_000_000, true);
    app.apply(&Event::Started(Box::new(RunInfo {
        parameters: 3_716_608,
        vocab_size: 2048,
        train_examples: 20_000,
        val_examples: 500,
        settings: Some(trainui_protocol::config::live_settings(
            &trainui_protocol::config::Config::default(),
        )),
        ..RunInfo::new("bench", 2_000_000)
    })));
    app.apply(&Event::State {
        step: 0,
        state: RunState::Training,
    });
    app.update(Msg::System(SystemSample {
        gpus: Vec::new(),
        host: HostSample {
            cpu: Some(97.0),
            process_memory: Some(612 << 20),
            memory_used: Some(6 << 30),
            memory_total: Some(24 << 30),
        },
        note: Some("no GPU".into()),
    }));
    let before = resident_bytes();
    let started = Instant::now();
    for s in 1..=history_steps {
        app.update(Msg::Trainer(step(s)));
    }
    let events_per_sec = history_steps as f64 / started.elapsed().as_secs_f64();
    let after = resident_bytes();
    for event in evaluation_events(history_steps) {
        app.apply(&event);
    }
    let mut next = history_steps;
    let frames = sizes
        .iter()
        .map(|&(width, height)| {
            let mut terminal =
                Terminal::new(TestBackend::new(width, height)).expect("a test backend");
            let mut times: Vec<f64> = (0..frames)
                .map(|_| {
                    next += 1;
                    app.apply(&step(next));
                    let started = Instant::now();
                    terminal
                        .draw(|frame| render::render(frame, &app))
                        .expect("drawing on a test backend");
                    started.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            times.sort_by(f64::total_cmp);
            FrameTimes {
                width,
                height,
                median_ms: quantile(&times, 0.5),
                p99_ms: quantile(&times, 0.99),
            }
        })
        .collect();
    UiFigures {
        history_steps,
        frames,
        memory_growth_bytes: after.zip(before).map_or(0, |(a, b)| a - b),
        events_per_sec,
    }
}
