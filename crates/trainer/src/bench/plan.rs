//! What the bench measures, shared by the measuring (`mod.rs`) and the
//! report: the generation's sizes, the warm-up, one training run's figures,
//! and the order statistics every figure is taken with.

/// Prompt and new tokens of the generation figure.
pub const PROMPT_LEN: u32 = 16;
pub const NEW_TOKENS: u32 = 256;
/// Decoding-step positions compared for flatness, and the window of
/// positions pooled around each.
pub const EARLY_POSITION: u32 = 32;
pub const LATE_POSITION: u32 = 256;
pub const POSITION_WINDOW: u32 = 8;
/// Training steps left out of each run's figures while caches and the
/// allocator warm up.
pub const WARMUP_STEPS: u64 = 3;

/// One training run as the run directory recorded it.
pub struct TrainRun {
    /// Step seconds after warm-up, from the trainer's own step events.
    pub step_secs: Vec<f64>,
    pub tokens_per_step: f64,
    /// Time the recorder spent writing the run directory.
    pub record_secs: f64,
}

/// The `q`-quantile of sorted `values` (nearest rank), 0 when empty.
#[must_use]
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[must_use]
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    quantile(&sorted, 0.5)
}
