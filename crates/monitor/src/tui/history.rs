//! Bounded metric history: a recent window at full resolution plus the whole
//! run, decimated. Memory and drawing time stay flat however long the run.

use std::collections::VecDeque;

use trainui_protocol::events::StepMetrics;

/// Points of one series, `(step, value)`.
#[derive(Debug, Clone)]
pub struct History {
    /// The latest points, every one of them.
    recent: VecDeque<(f64, f64)>,
    recent_capacity: usize,
    /// The whole run at a stride: every `stride`-th point pushed.
    whole: Vec<(f64, f64)>,
    whole_capacity: usize,
    stride: u64,
    pushed: u64,
}

impl History {
    /// `recent` points at full resolution; the whole run in at most `whole`
    /// points (an even number, at least 2).
    #[must_use]
    pub fn new(recent: usize, whole: usize) -> Self {
        Self {
            recent: VecDeque::with_capacity(recent),
            recent_capacity: recent,
            whole: Vec::with_capacity(whole),
            whole_capacity: whole.max(2),
            stride: 1,
            pushed: 0,
        }
    }

    pub fn push(&mut self, step: f64, value: f64) {
        if self.recent.len() == self.recent_capacity {
            self.recent.pop_front();
        }
        self.recent.push_back((step, value));
        if self.pushed.is_multiple_of(self.stride) {
            if self.whole.len() == self.whole_capacity {
                // Keep every other point and double the stride.
                let mut index = 0;
                self.whole.retain(|_| {
                    index += 1;
                    index % 2 == 1
                });
                self.stride *= 2;
            }
            if self.pushed.is_multiple_of(self.stride) {
                self.whole.push((step, value));
            }
        }
        self.pushed += 1;
    }

    /// Forgets points at or after `step` (a resumed run rewinds).
    pub fn truncate_from(&mut self, step: f64) {
        self.recent.retain(|&(s, _)| s < step);
        self.whole.retain(|&(s, _)| s < step);
    }

    #[must_use]
    pub fn recent(&self) -> Vec<(f64, f64)> {
        self.recent.iter().copied().collect()
    }

    /// The whole run: the decimated points, then the recent points after them.
    #[must_use]
    pub fn whole(&self) -> Vec<(f64, f64)> {
        let last = self.whole.last().map_or(f64::NEG_INFINITY, |p| p.0);
        let mut points = self.whole.clone();
        points.extend(self.recent.iter().copied().filter(|p| p.0 > last));
        points
    }

    #[cfg(test)]
    #[must_use]
    pub fn last(&self) -> Option<(f64, f64)> {
        self.recent.back().copied()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.recent.is_empty()
    }

    /// Points kept in memory.
    #[cfg(test)]
    #[must_use]
    pub fn stored(&self) -> usize {
        self.recent.len() + self.whole.len()
    }
}

/// At most `max` points of `points`, evenly spaced, keeping the last one.
#[must_use]
pub fn thin(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    if points.len() <= max || max < 2 {
        return points.to_vec();
    }
    let step = (points.len() - 1) as f64 / (max - 1) as f64;
    (0..max)
        .map(|i| points[((i as f64 * step).round() as usize).min(points.len() - 1)])
        .collect()
}

/// Tokens seen at each step event: a step event's `tokens_seen` (added to
/// the count at a resume's start step), or where a producer does not
/// record it, estimated as the previous count plus tokens/s times the
/// wall-clock seconds since the previous event.
#[derive(Debug, Clone, Default)]
pub struct TokenCount {
    /// The count at the latest resume.
    base: f64,
    last: f64,
    last_elapsed: f64,
    /// Some count was estimated rather than recorded.
    pub estimated: bool,
}

impl TokenCount {
    /// A resume, `kept` tokens seen at its start step.
    pub fn resume(&mut self, kept: f64) {
        (self.base, self.last, self.last_elapsed) = (kept, kept, 0.0);
    }

    /// The tokens seen at step event `m`.
    pub fn step(&mut self, m: &StepMetrics) -> f64 {
        let now = if let Some(seen) = m.tokens_seen {
            self.base + seen as f64
        } else {
            self.estimated = true;
            let secs = (m.elapsed_secs - self.last_elapsed).max(0.0);
            let rate = if m.tokens_per_sec.is_finite() {
                m.tokens_per_sec.max(0.0)
            } else {
                0.0
            };
            self.last + rate * secs
        };
        self.last = now;
        self.last_elapsed = m.elapsed_secs;
        now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(n: u64, recent: usize, whole: usize) -> History {
        let mut history = History::new(recent, whole);
        for i in 0..n {
            history.push(i as f64, i as f64 * 10.0);
        }
        history
    }

    fn steps(points: &[(f64, f64)]) -> Vec<u64> {
        points.iter().map(|p| p.0 as u64).collect()
    }

    #[test]
    fn keeps_everything_until_full() {
        let history = filled(4, 3, 4);
        assert_eq!(steps(&history.recent()), [1, 2, 3]);
        assert_eq!(steps(&history.whole()), [0, 1, 2, 3]);
        assert_eq!(history.last(), Some((3.0, 30.0)));
    }

    #[test]
    fn halves_and_doubles_the_stride_when_full() {
        // Capacity 4: 0,1,2,3 -> full at 4: keep 0,2, stride 2, add 4 -> 0,2,4
        // 5 skipped, 6 added -> 0,2,4,6; at 8: keep 0,4, stride 4, add 8.
        assert_eq!(steps(&filled(5, 2, 4).whole), [0, 2, 4]);
        assert_eq!(steps(&filled(7, 2, 4).whole), [0, 2, 4, 6]);
        assert_eq!(steps(&filled(9, 2, 4).whole), [0, 4, 8]);
        assert_eq!(steps(&filled(17, 2, 4).whole), [0, 8, 16]);
        // The whole-run view ends with the recent points.
        assert_eq!(steps(&filled(11, 2, 4).whole()), [0, 4, 8, 9, 10]);
    }

    #[test]
    fn memory_is_flat_over_a_million_points() {
        let mut history = History::new(500, 1000);
        let mut most = 0;
        for i in 0..1_000_000u32 {
            history.push(f64::from(i), 1.0);
            most = most.max(history.stored());
        }
        assert!(most <= 1500, "{most}");
        let whole = history.whole();
        assert_eq!(whole.first().map(|p| p.0), Some(0.0));
        assert_eq!(whole.last().map(|p| p.0), Some(999_999.0));
        assert!(whole.len() <= 1500);
    }

    #[test]
    fn truncate_forgets_a_rewound_tail() {
        let mut history = filled(6, 10, 10);
        history.truncate_from(3.0);
        assert_eq!(steps(&history.whole()), [0, 1, 2]);
    }

    #[test]
    fn thin_spaces_points_evenly_and_keeps_the_ends() {
        let points: Vec<(f64, f64)> = (0..10).map(|i| (f64::from(i), 0.0)).collect();
        assert_eq!(steps(&thin(&points, 4)), [0, 3, 6, 9]);
        assert_eq!(thin(&points, 20).len(), 10);
    }
}
