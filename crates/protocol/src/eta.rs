//! The time left of a run, as both producers estimate it for their `step`
//! events (`eta_secs`), and when readers show it.
//!
//! A logging window's time counts only its training steps (pauses,
//! evaluations, saves and commands are left out). One window is too short
//! to be steady (a collection, a slow batch, the warm-up of the first
//! steps), so the estimate rests on the latest windows that add up to at
//! least [`SPAN_SECS`] of training, the process's first window (its
//! warm-up) left out once there is another; it is given only once it rests
//! on [`MIN_SECS`] of training. Until then a `step` event says `eta_secs`
//! 0 with steps left, and readers show no ETA.

use std::collections::VecDeque;

/// Seconds of training, at least, that the estimate looks back over.
pub const SPAN_SECS: f64 = 120.0;
/// Fewest seconds of training the estimate rests on before it is given.
pub const MIN_SECS: f64 = 5.0;

/// The logging windows of a run (of this process) that the ETA rests on.
#[derive(Debug, Default)]
pub struct EtaEstimate {
    /// The process's first window: (steps, seconds of training).
    first: Option<(u64, f64)>,
    /// The windows after it, newest last, no more than make up `SPAN_SECS`.
    recent: VecDeque<(u64, f64)>,
    steps: u64,
    secs: f64,
}

impl EtaEstimate {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A logging window closed: `steps` steps in `train_secs` seconds of
    /// training.
    pub fn window(&mut self, steps: u64, train_secs: f64) {
        if self.first.is_none() {
            self.first = Some((steps, train_secs));
            return;
        }
        self.recent.push_back((steps, train_secs));
        self.steps += steps;
        self.secs += train_secs;
        while self.recent.len() > 1 && self.secs - self.recent[0].1 >= SPAN_SECS {
            let (steps, secs) = self
                .recent
                .pop_front()
                .expect("more than one window is kept");
            self.steps -= steps;
            self.secs -= secs;
        }
    }

    /// The seconds left for `steps_left` more steps, or 0 when there is no
    /// estimate yet (or no step left).
    #[must_use]
    pub fn eta_secs(&self, steps_left: u64) -> f64 {
        let (steps, secs) = if self.recent.is_empty() {
            self.first.unwrap_or((0, 0.0))
        } else {
            (self.steps, self.secs)
        };
        if steps_left == 0 || steps == 0 || secs < MIN_SECS {
            return 0.0;
        }
        secs / steps as f64 * steps_left as f64
    }
}

/// The ETA a `step` event gives, as readers show it: none while the
/// producer had no estimate yet (0 with steps left).
#[must_use]
pub fn shown(step: u64, max_steps: u64, eta_secs: f64) -> Option<f64> {
    (eta_secs != 0.0 || step >= max_steps).then_some(eta_secs)
}

#[cfg(test)]
// The answers are exact: 0 says "none", and the figures are binary fractions.
#[allow(clippy::float_cmp)]
mod tests {
    use super::{EtaEstimate, shown};

    #[test]
    fn no_estimate_before_five_seconds_of_training_then_the_first_window_is_left_out() {
        let mut eta = EtaEstimate::new();
        eta.window(10, 3.0); // the warm-up
        assert_eq!(eta.eta_secs(100), 0.0);
        eta.window(10, 1.0);
        assert_eq!(
            eta.eta_secs(100),
            0.0,
            "1 s of training after the first window"
        );
        for _ in 0..4 {
            eta.window(10, 1.0);
        }
        assert_eq!(
            eta.eta_secs(100),
            10.0,
            "0.1 s a step, the warm-up left out"
        );
        assert_eq!(eta.eta_secs(0), 0.0);
    }

    #[test]
    fn one_slow_window_moves_the_estimate_little() {
        let mut eta = EtaEstimate::new();
        for _ in 0..150 {
            eta.window(10, 1.0);
        }
        let steady = eta.eta_secs(1000);
        eta.window(10, 3.0);
        let after = eta.eta_secs(1000);
        assert!(
            after > steady && after < steady * 1.05,
            "{steady} then {after}"
        );
    }

    #[test]
    fn the_estimate_follows_a_change_of_speed_within_its_span() {
        let mut eta = EtaEstimate::new();
        for _ in 0..100 {
            eta.window(10, 1.0);
        }
        for _ in 0..100 {
            eta.window(10, 2.0);
        }
        assert!(
            (eta.eta_secs(10) - 2.0).abs() < 1e-9,
            "{}",
            eta.eta_secs(10)
        );
    }

    #[test]
    fn readers_show_no_eta_until_the_producer_has_one() {
        assert_eq!(shown(5, 10, 0.0), None);
        assert_eq!(shown(5, 10, 12.5), Some(12.5));
        assert_eq!(shown(10, 10, 0.0), Some(0.0), "the last step has none left");
    }
}
