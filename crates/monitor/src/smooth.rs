//! The one smoothing of curves, used by every view of them (the TUI's
//! chart, the compare chart and `trainui plot`): a debiased exponential
//! moving average whose window is a number of steps, not of points, so the
//! curve means the same whether the run logs every step or every hundred.
//!
//! One rule decides the window: [`default_window`] for a run of a given
//! length (about a twentieth of it), [`shared_window`] for runs shown
//! together (the shortest run's), and [`applied_window`] caps it at a
//! quarter of the steps the history spans, so a young run is not smoothed
//! over more steps than it has (a 100-step window at step 73 would mostly
//! average the first, high losses). Labels show the applied window.
//!
//! Each point weighs `1 - d` against the average so far, where
//! `d = exp(-gap / window)` and `gap` is the steps since the previous
//! point (for the first point, the gap to the next). The average is
//! divided by the sum of the weights, as TensorBoard debiases: the first
//! point weighs like any other instead of standing for all the steps
//! before it, and a constant stays constant.

/// The smoothing windows `[` and `]` step through, in steps (0: none).
pub const SMOOTHING_STEPS: &[u64] = &[
    0, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 25_000, 50_000,
];

/// The smoothing window a run of `max_steps` starts with, in steps: about
/// a twentieth of the run, from [`SMOOTHING_STEPS`].
#[must_use]
pub fn default_window(max_steps: u64) -> u64 {
    SMOOTHING_STEPS
        .iter()
        .copied()
        .filter(|&s| s > 0 && s <= (max_steps / 20).max(10))
        .max()
        .unwrap_or(10)
}

/// The window of runs of these lengths shown together: the shortest run's
/// [`default_window`], so that no run is smoothed beyond recognition.
#[must_use]
pub fn shared_window(max_steps: impl IntoIterator<Item = u64>) -> u64 {
    max_steps
        .into_iter()
        .map(default_window)
        .min()
        .unwrap_or_else(|| default_window(0))
}

/// The window `window` (steps; 0: none) as applied to `points` (step,
/// value): at most a quarter of the steps they span.
#[must_use]
pub fn applied_window(window: u64, points: &[(f64, f64)]) -> u64 {
    let span = match (points.first(), points.last()) {
        (Some(first), Some(last)) => (last.0 - first.0).max(0.0),
        _ => 0.0,
    };
    // Truncation: a window of whole steps; huge spans saturate.
    let cap = (span / 4.0) as u64;
    window.min(cap)
}

/// How a legend names the smoothing `window` chosen, `applied` to a curve.
#[must_use]
pub fn label(window: u64, applied: u64) -> String {
    match (window, applied) {
        (0, _) => "no smoothing".to_owned(),
        (_, 0) => "no smoothing yet".to_owned(),
        (_, steps) => format!("ema {steps} steps"),
    }
}

/// `points` (step, value) smoothed over `window` steps, as
/// [`applied_window`] caps it; a window of 0 returns them as they are.
/// Steps must not decrease.
#[must_use]
pub fn ema(points: &[(f64, f64)], window: f64) -> Vec<(f64, f64)> {
    // Truncation: windows are whole steps.
    let window = applied_window(window.max(0.0) as u64, points) as f64;
    if window <= 0.0 {
        return points.to_vec();
    }
    let (mut sum, mut weights) = (0.0, 0.0);
    let mut previous: Option<f64> = None;
    let first_gap = match points {
        [a, b, ..] => (b.0 - a.0).max(0.0),
        _ => 1.0,
    };
    points
        .iter()
        .map(|&(step, value)| {
            let gap = previous.map_or(first_gap, |p| (step - p).max(0.0));
            previous = Some(step);
            let decay = (-gap / window).exp();
            sum = decay * sum + (1.0 - decay) * value;
            weights = decay * weights + (1.0 - decay);
            (step, if weights > 0.0 { sum / weights } else { value })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[(f64, f64)], b: &[(f64, f64)]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| (x.0 - y.0).abs() < 1e-9 && (x.1 - y.1).abs() < 1e-9)
    }

    #[test]
    fn a_constant_stays_constant_from_the_first_point() {
        let flat: Vec<_> = (1..=5).map(|s| (f64::from(s) * 25.0, 2.0)).collect();
        assert!(close(&ema(&flat, 100.0), &flat));
    }

    #[test]
    fn the_window_is_in_steps_whatever_the_logging_interval() {
        // d = exp(-1) per point for gaps of one window; the first point
        // weighs 1 - d like the others and the sum is divided by the
        // weights (a history of 40 steps allows a window of 10).
        let d = (-1.0_f64).exp();
        let points = [(0.0, 4.0), (10.0, 1.0), (40.0, 1.0)];
        let got = ema(&points, 10.0);
        let w = 1.0 - d;
        let second = (d * w * 4.0 + w) / (d * w + w);
        let d3 = (-3.0_f64).exp();
        let weights = d * w + w;
        let third = (d3 * weights * second + (1.0 - d3)) / (d3 * weights + (1.0 - d3));
        assert!(
            close(&got, &[(0.0, 4.0), (10.0, second), (40.0, third)]),
            "{got:?}"
        );
        // The same curve logged twice as often ends at nearly the same place.
        let dense: Vec<_> = (0..=40)
            .map(|s| (f64::from(s), if s < 5 { 4.0 } else { 1.0 }))
            .collect();
        let sparse: Vec<_> = dense.iter().copied().step_by(2).collect();
        let (a, b) = (ema(&dense, 10.0), ema(&sparse, 10.0));
        assert!((a.last().unwrap().1 - b.last().unwrap().1).abs() < 0.05);
    }

    #[test]
    fn a_drop_is_followed_within_a_few_windows() {
        // A loss falling from 4 to 0.75 after step 50, logged every 25
        // steps up to 450: 400 steps after the drop, a 100-step window has
        // kept e^-4 (and e^-3.75) of the old level, over the weights' sum.
        let points: Vec<_> = (2..=18)
            .map(|i| {
                let step = f64::from(i) * 25.0;
                (step, if step <= 50.0 { 4.0 } else { 0.75 })
            })
            .collect();
        let smoothed = ema(&points, 100.0);
        let last = smoothed.last().unwrap().1;
        let kept = (last - 0.75) / 3.25;
        let d = (-0.25_f64).exp();
        let expected = d.powi(16) / (1.0 - d.powi(17));
        assert!((kept - expected * (1.0 - d)).abs() < 1e-9, "{kept}");
        assert_eq!(ema(&points, 0.0), points);
    }

    #[test]
    fn a_window_never_spans_more_than_a_quarter_of_the_history() {
        // Step 73 of a run logged every step, a 100-step window chosen:
        // 18 steps are applied, and the high first losses do not hold the
        // curve up (the first point weighed 1 before: 6.3 here).
        let points: Vec<_> = (1..=73)
            .map(|s| {
                let s = f64::from(s);
                (s, 2.0 + 8.5 * (-s / 12.0).exp())
            })
            .collect();
        assert_eq!(applied_window(100, &points), 18);
        assert_eq!(label(100, 18), "ema 18 steps");
        let last = ema(&points, 100.0).last().unwrap().1;
        assert!((last - points[72].1).abs() < 0.3, "{last}");
        // Short histories: no smoothing yet, and said so.
        assert_eq!(applied_window(100, &points[..3]), 0);
        assert_eq!(ema(&points[..3], 100.0), points[..3]);
        assert_eq!(label(100, 0), "no smoothing yet");
        assert_eq!(label(0, 0), "no smoothing");
    }

    #[test]
    fn runs_shown_together_share_the_shortest_runs_window() {
        assert_eq!(default_window(3000), 100);
        assert_eq!(default_window(300), 10);
        assert_eq!(shared_window([3000, 300, 60_000]), 10);
        assert_eq!(shared_window([]), default_window(0));
    }
}
