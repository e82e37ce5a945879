//! The one smoothing of loss curves, used by every view of them: a
//! debiased exponential moving average whose window is a number of steps,
//! not of points, so the curve means the same whether the run logs every
//! step or every hundred.
//!
//! Each point weighs `1 - d` against the average so far, where
//! `d = exp(-gap / window)` and `gap` is the steps since the previous
//! point. The first point weighs 1 (nothing comes before it), so the
//! curve starts at the first value instead of being pulled towards zero:
//! the debiasing TensorBoard does by dividing by the weights' sum.

/// `points` (step, value) smoothed over `window` steps; a window of 0
/// returns them as they are. Steps must not decrease.
#[must_use]
pub fn ema(points: &[(f64, f64)], window: f64) -> Vec<(f64, f64)> {
    if window <= 0.0 {
        return points.to_vec();
    }
    let mut sum = 0.0;
    let mut previous: Option<f64> = None;
    points
        .iter()
        .map(|&(step, value)| {
            let gap = previous.map_or(f64::INFINITY, |p| (step - p).max(0.0));
            previous = Some(step);
            let decay = (-gap / window).exp();
            sum = decay * sum + (1.0 - decay) * value;
            (step, sum)
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
        // d = exp(-1) per point for gaps of one window.
        let d = (-1.0_f64).exp();
        let got = ema(&[(0.0, 4.0), (10.0, 1.0), (20.0, 1.0)], 10.0);
        // The first point weighs 1 (nothing before it), so the weights
        // always sum to 1.
        let second = d * 4.0 + (1.0 - d);
        let third = d * second + (1.0 - d);
        assert!(
            close(&got, &[(0.0, 4.0), (10.0, second), (20.0, third)]),
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
        // steps: 300 steps later a 100-step window has kept e^-3 of the old
        // level (a weight of 0.1 a point kept 0.9^12 of it: 1.67).
        let points: Vec<_> = (1..=14)
            .map(|i| {
                let step = f64::from(i) * 25.0;
                (step, if step <= 50.0 { 4.0 } else { 0.75 })
            })
            .collect();
        let smoothed = ema(&points, 100.0);
        let last = smoothed.last().unwrap().1;
        let kept = (last - 0.75) / 3.25;
        assert!((kept - (-3.0_f64).exp()).abs() < 1e-9, "{last}");
        assert_eq!(ema(&points, 0.0), points);
    }
}
