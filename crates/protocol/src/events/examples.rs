//! Events for tests, with plain values where the test does not care (for
//! this crate's tests and, with the `examples` feature, other crates').
#![allow(clippy::must_use_candidate)]

use super::{Event, RunInfo, StepMetrics};
use crate::config::{Config, live_settings};

/// A step event at `step` of `max_steps` with `loss`; one second a step.
pub fn step(step: u64, max_steps: u64, loss: f64) -> Event {
    Event::Step(StepMetrics {
        step,
        max_steps,
        loss,
        learning_rate: 1e-3,
        tokens_per_sec: 1000.0,
        elapsed_secs: step as f64,
        eta_secs: max_steps.saturating_sub(step) as f64,
        grad_norm: None,
        tokens_seen: None,
    })
}

/// The start of a fresh run of trainui's own, on the CPU, with the
/// default settings.
pub fn started(run_name: &str, max_steps: u64) -> Event {
    Event::Started(Box::new(RunInfo {
        pid: 4242,
        parameters: 830_976,
        vocab_size: 262,
        train_examples: 20_000,
        val_examples: 500,
        settings: Some(live_settings(&Config::default())),
        ..RunInfo::new(run_name, max_steps)
    }))
}
