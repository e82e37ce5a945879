//! The bench's figures, from the measurements, and its targets with their
//! verdicts: one report, which scripts read as JSON and people as a table
//! (`table.rs`).

use std::time::Duration;

use serde::Serialize;

use super::history::HistoryFigures;
use super::peer::PeerResult;
use super::plan::{
    EARLY_POSITION, LATE_POSITION, NEW_TOKENS, POSITION_WINDOW, PROMPT_LEN, TrainRun, WARMUP_STEPS,
    median, quantile,
};
use super::remote::RemoteFigures;
use super::ui_cost::UiFigures;
use super::watch_cost::WatchFigures;
use trainui_protocol::config::ModelConfig;

/// CPU `watch` may spend on an event it reads: about a frame and the
/// parsing (a frame is well under 1 ms).
const WATCH_MS_PER_EVENT: f64 = 2.0;
/// A week-long run's first screen in `watch`, and `status` on it.
const WATCH_FIRST_SCREEN_SECS: f64 = 2.0;
const STATUS_SECS: f64 = 0.2;
/// Memory `watch` may hold, whatever the length of the history.
const WATCH_PEAK_MIB: f64 = 200.0;
/// `trainui query --csv` of a week-long run's whole history.
const QUERY_CSV_SECS: f64 = 2.0;
/// `trainui runs` over a sweep's folder of a thousand runs.
const RUNS_SECS: f64 = 1.0;
/// A week-long run's first screen in `watch HOST:RUN`, over ssh.
const REMOTE_FIRST_SCREEN_SECS: f64 = 3.0;
/// Following a busy remote run, on each side, in % of a core.
const REMOTE_FOLLOW_PERCENT: f64 = 1.0;

/// Largest difference allowed between trainui's and the peer's logits.
const LOGITS_TOLERANCE: f64 = 1e-4;

/// What was measured, on what.
#[derive(Debug, Serialize)]
pub struct Setup {
    pub config: String,
    pub device: String,
    pub threads: u32,
    pub vocab_size: u32,
    pub model: ModelConfig,
    pub batch_size: u32,
    pub rounds: u32,
    pub steps_per_run: u64,
    pub parameters: u64,
    /// Square 1024 x 1024 products: the device's peak, for reference.
    pub matmul_gflops: f64,
    /// The bench model's own products (forward and backward): what MFU is
    /// measured against.
    pub model_matmul_gflops: f64,
}

/// Measurements as they come in, before medians are taken.
#[derive(Default)]
pub struct Raw {
    headless_steps: Vec<f64>,
    tui_steps: Vec<f64>,
    tokens_per_step: f64,
    /// Recorder time and steps of the headless runs.
    record_secs: f64,
    recorded_steps: usize,
    pub decode: Vec<Vec<f64>>,
    peer_steps: Vec<f64>,
    peer_tokens_per_step: f64,
    peer_decode: Vec<Vec<f64>>,
    peer_parameters: u64,
    peer_max_abs_diff: Option<f64>,
    torch: String,
    pub abort_secs: Vec<f64>,
    pub overshoot_secs: Vec<f64>,
    /// What `trainui watch` cost, when it could be measured.
    pub watch: Option<WatchFigures>,
    /// `watch` and `status` on a long history, when they could be measured.
    pub history: Option<HistoryFigures>,
}

impl Raw {
    pub fn add_train_run(&mut self, tui: bool, run: TrainRun) {
        self.tokens_per_step = run.tokens_per_step;
        if tui {
            self.tui_steps.extend(run.step_secs);
        } else {
            self.record_secs += run.record_secs;
            self.recorded_steps += run.step_secs.len() + WARMUP_STEPS as usize;
            self.headless_steps.extend(run.step_secs);
        }
    }

    pub fn add_peer_run(&mut self, result: PeerResult) {
        let warmup = WARMUP_STEPS as usize;
        self.peer_steps
            .extend(result.step_secs.iter().skip(warmup).copied());
        self.peer_tokens_per_step = result.tokens_per_step as f64;
        self.peer_decode.extend(result.decode_secs);
        self.peer_parameters = result.parameters;
        if let Some(check) = result.check {
            self.peer_max_abs_diff = Some(check.max_abs_diff);
        }
        self.torch = result.torch;
    }
}

#[derive(Debug, Serialize)]
pub struct Training {
    pub tokens_per_sec: f64,
    pub peer_tokens_per_sec: f64,
    pub ratio: f64,
    pub step_ms: f64,
    pub peer_step_ms: f64,
    /// 6 x parameters x tokens/s over the model's matmul rate.
    pub mfu: f64,
    pub peer_mfu: f64,
    /// The same over the square-matmul peak.
    pub mfu_of_peak: f64,
    pub steps: usize,
    pub peer_steps: usize,
}

#[derive(Debug, Serialize)]
pub struct Generation {
    pub prompt_tokens: u32,
    pub new_tokens: u32,
    pub tokens_per_sec: f64,
    pub peer_tokens_per_sec: f64,
    pub ratio: f64,
    pub step_ms_at_32: f64,
    pub step_ms_at_256: f64,
    pub peer_step_ms_at_32: f64,
    pub peer_step_ms_at_256: f64,
    /// Cost of a step at position 256 over one at position 32.
    pub flatness: f64,
    pub peer_flatness: f64,
    /// Median decoding step, all positions.
    pub step_ms: f64,
    pub repeats: usize,
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub generations: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// p99 in decoding steps.
    pub p99_steps: f64,
}

#[derive(Debug, Serialize)]
pub struct Ui {
    #[serde(flatten)]
    pub figures: UiFigures,
    pub tui_tokens_per_sec: f64,
    pub headless_tokens_per_sec: f64,
    /// Training tokens/s with the TUI consuming events over headless.
    pub tui_ratio: f64,
    /// Run-directory writing as a share of step time, at log_steps = 1.
    pub run_dir_share: f64,
    /// `trainui watch` on a busy and an idle run (absent when script(1),
    /// which gives it a terminal, is missing).
    pub watch: Option<WatchFigures>,
    /// `watch` and `status` on a long history (absent when tmux, which
    /// gives `watch` its terminal, is missing).
    pub history: Option<HistoryFigures>,
}

#[derive(Debug, Serialize)]
pub struct Target {
    pub name: &'static str,
    pub value: f64,
    /// e.g. ">= 1.00"
    pub limit: String,
    pub pass: bool,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub setup: Setup,
    pub torch: String,
    pub peer_parameters: u64,
    pub logits_max_abs_diff: Option<f64>,
    pub training: Training,
    pub generation: Generation,
    pub abort: Latency,
    pub timeout_overshoot: Latency,
    pub ui: Ui,
    pub targets: Vec<Target>,
    pub elapsed_secs: f64,
}

/// Median step seconds of the decoding steps that fed positions within the
/// window around `position`, over all repeats.
fn step_at(runs: &[Vec<f64>], position: u32) -> f64 {
    let first = position - POSITION_WINDOW - PROMPT_LEN + 1;
    let pooled: Vec<f64> = runs
        .iter()
        .flat_map(|run| {
            run.iter()
                .skip(first as usize)
                .take(2 * POSITION_WINDOW as usize)
                .copied()
        })
        .collect();
    median(&pooled)
}

fn generation_rate(runs: &[Vec<f64>]) -> f64 {
    let rates: Vec<f64> = runs
        .iter()
        .map(|run| run.len() as f64 / run.iter().sum::<f64>())
        .collect();
    median(&rates)
}

fn latency(secs: &[f64], step_secs: f64) -> Latency {
    let mut sorted = secs.to_vec();
    sorted.sort_by(f64::total_cmp);
    let p99 = quantile(&sorted, 0.99);
    Latency {
        generations: sorted.len(),
        p50_ms: quantile(&sorted, 0.5) * 1e3,
        p99_ms: p99 * 1e3,
        p99_steps: p99 / step_secs,
    }
}

fn at_least(name: &'static str, value: f64, limit: f64, shown: &str) -> Target {
    Target {
        name,
        value,
        limit: format!(">= {shown}"),
        pass: value >= limit,
    }
}

fn at_most(name: &'static str, value: f64, limit: f64, shown: &str) -> Target {
    Target {
        name,
        value,
        limit: format!("<= {shown}"),
        pass: value <= limit,
    }
}

pub fn build(setup: Setup, raw: Raw, ui: UiFigures, elapsed: Duration) -> Report {
    let params = setup.parameters as f64;
    let matmul = setup.model_matmul_gflops * 1e9;
    let step = median(&raw.headless_steps);
    let peer_step = median(&raw.peer_steps);
    let tokens_per_sec = raw.tokens_per_step / step;
    let peer_tokens_per_sec = raw.peer_tokens_per_step / peer_step;
    let training = Training {
        tokens_per_sec,
        peer_tokens_per_sec,
        ratio: tokens_per_sec / peer_tokens_per_sec,
        step_ms: step * 1e3,
        peer_step_ms: peer_step * 1e3,
        mfu: 6.0 * params * tokens_per_sec / matmul,
        peer_mfu: 6.0 * raw.peer_parameters as f64 * peer_tokens_per_sec / matmul,
        mfu_of_peak: 6.0 * params * tokens_per_sec / (setup.matmul_gflops * 1e9),
        steps: raw.headless_steps.len(),
        peer_steps: raw.peer_steps.len(),
    };
    let all_steps: Vec<f64> = raw
        .decode
        .iter()
        .flat_map(|run| run.iter().skip(1).copied())
        .collect();
    let decode_step = median(&all_steps);
    let (early, late) = (
        step_at(&raw.decode, EARLY_POSITION),
        step_at(&raw.decode, LATE_POSITION),
    );
    let (peer_early, peer_late) = (
        step_at(&raw.peer_decode, EARLY_POSITION),
        step_at(&raw.peer_decode, LATE_POSITION),
    );
    let generation = Generation {
        prompt_tokens: PROMPT_LEN,
        new_tokens: NEW_TOKENS,
        tokens_per_sec: generation_rate(&raw.decode),
        peer_tokens_per_sec: generation_rate(&raw.peer_decode),
        ratio: generation_rate(&raw.decode) / generation_rate(&raw.peer_decode),
        step_ms_at_32: early * 1e3,
        step_ms_at_256: late * 1e3,
        peer_step_ms_at_32: peer_early * 1e3,
        peer_step_ms_at_256: peer_late * 1e3,
        flatness: late / early,
        peer_flatness: peer_late / peer_early,
        step_ms: decode_step * 1e3,
        repeats: raw.decode.len(),
    };
    let abort = latency(&raw.abort_secs, decode_step);
    let timeout_overshoot = latency(&raw.overshoot_secs, decode_step);
    let tui_tokens_per_sec = raw.tokens_per_step / median(&raw.tui_steps);
    let ui = Ui {
        tui_tokens_per_sec,
        headless_tokens_per_sec: tokens_per_sec,
        tui_ratio: tui_tokens_per_sec / tokens_per_sec,
        run_dir_share: raw.record_secs / (raw.recorded_steps as f64 * step),
        figures: ui,
        watch: raw.watch,
        history: raw.history,
    };
    let latency_limit = decode_step * 1e3 + 10.0;
    let latency_shown = format!("{latency_limit:.1} ms (1 step + 10 ms)");
    let frame = ui
        .figures
        .frames
        .first()
        .map_or(f64::INFINITY, |f| f.median_ms);
    let targets = vec![
        Target {
            name: "parameters, trainui = peer",
            value: params,
            limit: format!("= {}", raw.peer_parameters),
            pass: setup.parameters == raw.peer_parameters,
        },
        at_most(
            "logits max |trainui - peer|",
            raw.peer_max_abs_diff.unwrap_or(f64::INFINITY),
            LOGITS_TOLERANCE,
            "1e-4",
        ),
        at_least("training tokens/s vs peer", training.ratio, 1.0, "1.00 x"),
        at_least("model FLOP utilisation", training.mfu, 0.70, "70 %"),
        at_least(
            "generation tokens/s vs peer",
            generation.ratio,
            1.10,
            "1.10 x",
        ),
        at_most(
            "decode step at 256 / at 32",
            generation.flatness,
            1.3,
            "1.3 x",
        ),
        at_most(
            "abort latency p99 (ms)",
            abort.p99_ms,
            latency_limit,
            &latency_shown,
        ),
        at_most(
            "timeout overshoot p99 (ms)",
            timeout_overshoot.p99_ms,
            latency_limit,
            &latency_shown,
        ),
        at_most("frame 120x40, median (ms)", frame, 2.0, "2 ms"),
        at_least("training with TUI / headless", ui.tui_ratio, 0.98, "0.98 x"),
        at_most(
            "memory growth, 10^6 step events (MiB)",
            ui.figures.memory_growth_bytes as f64 / f64::from(1 << 20),
            5.0,
            "5 MiB",
        ),
        at_most(
            "run-directory writing / step time",
            ui.run_dir_share,
            0.01,
            "1 %",
        ),
        at_most(
            "watch CPU, idle run",
            ui.watch
                .as_ref()
                .map_or(f64::INFINITY, |w| w.idle_cpu_share),
            0.01,
            "1 % of a core",
        ),
        at_most(
            "watch CPU per event, busy run (ms)",
            ui.watch
                .as_ref()
                .map_or(f64::INFINITY, |w| w.busy_ms_per_event),
            WATCH_MS_PER_EVENT,
            &format!("{WATCH_MS_PER_EVENT} ms"),
        ),
    ];
    let targets = targets
        .into_iter()
        .chain(history_targets(ui.history.as_ref()))
        .collect();
    Report {
        setup,
        torch: raw.torch,
        peer_parameters: raw.peer_parameters,
        logits_max_abs_diff: raw.peer_max_abs_diff,
        training,
        generation,
        abort,
        timeout_overshoot,
        ui,
        targets,
        elapsed_secs: elapsed.as_secs_f64(),
    }
}

/// The targets of a week-long history and a sweep: `watch` shows the
/// history within 2 s, `status` answers within 0.2 s, `query --csv` prints
/// it all within 2 s, `runs` lists a thousand runs within 1 s, and `watch`
/// opens two hundred within 2 s; over ssh, `watch HOST:RUN` shows the
/// history within 3 s and following a busy run costs at most 1 % of a
/// core on each side (failed when not measured).
pub(super) fn history_targets(history: Option<&HistoryFigures>) -> [Target; 9] {
    let figure = |f: fn(&HistoryFigures) -> f64| history.map_or(f64::INFINITY, f);
    let remote = |f: fn(&RemoteFigures) -> f64| {
        history
            .and_then(|h| h.remote.as_ref())
            .map_or(f64::INFINITY, f)
    };
    [
        at_most(
            "watch first screen, long history (s)",
            figure(|h| h.watch_first_screen_secs),
            WATCH_FIRST_SCREEN_SECS,
            "2 s",
        ),
        at_most(
            "watch peak memory, long history (MiB)",
            figure(|h| h.watch_peak_bytes as f64 / f64::from(1 << 20)),
            WATCH_PEAK_MIB,
            "200 MiB",
        ),
        at_most(
            "status, long history, slowest (s)",
            figure(|h| h.status_max_secs),
            STATUS_SECS,
            "0.2 s",
        ),
        at_most(
            "query --csv, long history, median (s)",
            figure(|h| h.query_csv_median_secs),
            QUERY_CSV_SECS,
            "2 s",
        ),
        at_most(
            "runs, 1,000 runs, median (s)",
            figure(|h| h.runs_median_secs),
            RUNS_SECS,
            "1 s",
        ),
        at_most(
            "watch first screen, 200 runs (s)",
            figure(|h| h.watch_sweep_first_screen_secs),
            WATCH_FIRST_SCREEN_SECS,
            "2 s",
        ),
        at_most(
            "remote watch first screen, long history (s)",
            remote(|r| r.watch_first_screen_secs),
            REMOTE_FIRST_SCREEN_SECS,
            "3 s",
        ),
        at_most(
            "remote follow cost, busy run, near side (% of a core)",
            remote(|r| 100.0 * r.follow.near_cpu_share),
            REMOTE_FOLLOW_PERCENT,
            "1 %",
        ),
        at_most(
            "remote follow cost, busy run, far side (% of a core)",
            remote(|r| 100.0 * r.follow.far_cpu_share),
            REMOTE_FOLLOW_PERCENT,
            "1 %",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::remote::FollowFigures;
    use crate::bench::table::{history_table, report_table};
    use crate::bench::ui_cost::FrameTimes;

    fn setup() -> Setup {
        Setup {
            config: "config/bench.json".into(),
            device: "cpu".into(),
            threads: 2,
            vocab_size: 2048,
            model: ModelConfig::default(),
            batch_size: 16,
            rounds: 1,
            steps_per_run: 4,
            parameters: 1000,
            matmul_gflops: 100.0,
            model_matmul_gflops: 80.0,
        }
    }

    /// Decoding steps of 1 ms (the prefill 5 ms), `late` ms from position 200 on.
    fn decode(late: f64) -> Vec<f64> {
        (0..NEW_TOKENS)
            .map(|i| match i {
                0 => 5e-3,
                i if PROMPT_LEN + i > 200 => late * 1e-3,
                _ => 1e-3,
            })
            .collect()
    }

    fn raw(trainui_step: f64, peer_step: f64, late: f64) -> Raw {
        let mut raw = Raw::default();
        for tui in [false, true] {
            raw.add_train_run(
                tui,
                TrainRun {
                    step_secs: vec![trainui_step; 4],
                    tokens_per_step: 2048.0,
                    record_secs: 0.001,
                },
            );
        }
        raw.add_peer_run(PeerResult {
            parameters: 1000,
            torch: "2.13.0".into(),
            check: Some(crate::bench::peer::PeerCheck { max_abs_diff: 2e-6 }),
            step_secs: vec![peer_step; 7],
            tokens_per_step: 2048,
            decode_secs: vec![decode(1.5)],
        });
        raw.decode = vec![decode(late)];
        raw.abort_secs = vec![0.002; 10];
        raw.overshoot_secs = (1..=100).map(|i| f64::from(i) * 1e-4).collect();
        raw.watch = Some(WatchFigures {
            busy_cpu_share: 0.02,
            busy_secs: 10.0,
            busy_events: 40,
            busy_ms_per_event: 5.0,
            idle_cpu_share: 0.004,
            idle_secs: 5.0,
        });
        raw.history = Some(HistoryFigures {
            steps: 1_000_000,
            events: 1_002_403,
            events_bytes: 233 << 20,
            watch_first_screen_secs: 2.5,
            watch_peak_bytes: 45 << 20,
            status_median_secs: 0.002,
            status_max_secs: 0.003,
            query_csv_median_secs: 0.8,
            query_csv_max_secs: 0.9,
            query_csv_bytes: 80 << 20,
            sweep_runs: 1000,
            runs_median_secs: 1.2,
            runs_max_secs: 1.3,
            watch_sweep_runs: 200,
            watch_sweep_first_screen_secs: 0.5,
            remote: Some(RemoteFigures {
                watch_first_screen_secs: 3.5,
                watch_peak_bytes: 50 << 20,
                follow: FollowFigures {
                    follow_events_per_sec: 99.8,
                    follow_secs: 10.0,
                    follow_events: 998,
                    near_cpu_share: 0.004,
                    near_ssh_cpu_share: 0.002,
                    far_cpu_share: 0.006,
                    far_sshd_cpu_share: 0.003,
                    copy_bytes: 400_000,
                },
            }),
        });
        raw
    }

    fn ui() -> UiFigures {
        UiFigures {
            history_steps: 1_000_000,
            frames: vec![FrameTimes {
                width: 120,
                height: 40,
                median_ms: 0.3,
                p99_ms: 0.5,
            }],
            memory_growth_bytes: 1 << 20,
            events_per_sec: 1e6,
        }
    }

    fn verdicts(report: &Report) -> Vec<(&'static str, bool)> {
        report.targets.iter().map(|t| (t.name, t.pass)).collect()
    }

    #[test]
    fn figures_and_verdicts_follow_the_measurements() {
        // trainui 10 % faster in training; generation at 1 ms vs the peer's
        // 1 ms then 1.5 ms; flat cost per position.
        let report = build(setup(), raw(0.1, 0.11, 1.0), ui(), Duration::from_secs(1));
        assert!((report.training.ratio - 1.1).abs() < 1e-9);
        assert!((report.training.tokens_per_sec - 20_480.0).abs() < 1e-6);
        // 6 x 1000 x 20480 over 80 GFLOP/s.
        assert!((report.training.mfu - 6.0 * 1000.0 * 20_480.0 / 80e9).abs() < 1e-12);
        assert!((report.generation.step_ms - 1.0).abs() < 1e-9);
        assert!((report.generation.flatness - 1.0).abs() < 1e-9);
        assert!((report.abort.p99_ms - 2.0).abs() < 1e-9);
        assert!((report.timeout_overshoot.p99_ms - 9.9).abs() < 1e-9);
        assert!((report.ui.run_dir_share - 0.001 / (7.0 * 0.1)).abs() < 1e-12);
        let verdicts = verdicts(&report);
        assert!(verdicts.contains(&("training tokens/s vs peer", true)));
        assert!(verdicts.contains(&("model FLOP utilisation", false)));
        assert!(verdicts.contains(&("generation tokens/s vs peer", true)));
        assert!(verdicts.contains(&("decode step at 256 / at 32", true)));
        assert!(verdicts.contains(&("timeout overshoot p99 (ms)", true)));
        assert!(verdicts.contains(&("watch CPU, idle run", true)));
        assert!(verdicts.contains(&("watch CPU per event, busy run (ms)", false)));
        assert!(verdicts.contains(&("watch first screen, long history (s)", false)));
        assert!(verdicts.contains(&("status, long history, slowest (s)", true)));
        assert!(verdicts.contains(&("watch peak memory, long history (MiB)", true)));
        assert!(verdicts.contains(&("query --csv, long history, median (s)", true)));
        assert!(verdicts.contains(&("runs, 1,000 runs, median (s)", false)));
        assert!(verdicts.contains(&("remote watch first screen, long history (s)", false)));
        assert!(verdicts.contains(&(
            "remote follow cost, busy run, near side (% of a core)",
            true
        )));
        assert!(verdicts.contains(&("remote follow cost, busy run, far side (% of a core)", true)));
        let near = report
            .targets
            .iter()
            .find(|t| t.name.contains("near side"))
            .unwrap();
        assert!((near.value - 0.4).abs() < 1e-9, "{near:?}");
        let table = report_table(&report);
        assert!(table.contains("5 of 23 targets missed"), "{table}");
        assert!(
            table.contains("remote follow, 100 step events/s, near")
                && table.contains("0.40 % · ssh 0.20 %")
                && table.contains("0.60 % · sshd 0.30 %"),
            "{table}"
        );
        assert!(
            table.contains("remote watch first screen, 1,000,000 steps")
                && table.contains("3.50 s · 50 MiB"),
            "{table}"
        );
        assert!(table.contains("watch CPU, idle run (5 s)"), "{table}");
        assert!(
            table.contains("watch first screen, 1,000,000 steps")
                && table.contains("2.50 s · 45 MiB"),
            "{table}"
        );
        assert!(
            table.contains("status, slowest of 10") && table.contains("3.0 ms"),
            "{table}"
        );
        assert!(
            table.contains("query --csv, 1,000,000 steps")
                && table.contains("0.80 s / 0.90 s · 80 MiB"),
            "{table}"
        );
        assert!(
            table.contains("runs, 1,000 runs") && table.contains("1200 ms / 1300 ms"),
            "{table}"
        );
        let alone = history_table(report.ui.history.as_ref().unwrap());
        assert!(alone.contains("1,002,403 events, 233 MiB"), "{alone}");
        assert!(alone.contains("query --csv, 1,000,000 steps"), "{alone}");
        assert!(alone.contains("FAIL") && alone.contains("pass"), "{alone}");
    }

    #[test]
    fn a_watch_that_could_not_be_measured_fails_its_targets() {
        let mut raw = raw(0.1, 0.11, 1.0);
        raw.watch = None;
        raw.history = None;
        let report = build(setup(), raw, ui(), Duration::from_secs(1));
        let verdicts = verdicts(&report);
        assert!(verdicts.contains(&("watch CPU, idle run", false)));
        assert!(verdicts.contains(&("watch first screen, long history (s)", false)));
        assert!(verdicts.contains(&("status, long history, slowest (s)", false)));
        assert!(verdicts.contains(&("query --csv, long history, median (s)", false)));
        assert!(verdicts.contains(&("runs, 1,000 runs, median (s)", false)));
        assert!(verdicts.contains(&(
            "remote follow cost, busy run, far side (% of a core)",
            false
        )));
    }

    #[test]
    fn remote_runs_that_could_not_be_measured_fail_their_targets() {
        let mut raw = raw(0.1, 0.11, 1.0);
        if let Some(history) = raw.history.as_mut() {
            history.remote = None;
        }
        let report = build(setup(), raw, ui(), Duration::from_secs(1));
        let verdicts = verdicts(&report);
        assert!(verdicts.contains(&("watch first screen, 200 runs (s)", true)));
        for name in [
            "remote watch first screen, long history (s)",
            "remote follow cost, busy run, near side (% of a core)",
            "remote follow cost, busy run, far side (% of a core)",
        ] {
            assert!(verdicts.contains(&(name, false)), "{name}");
        }
        let alone = history_table(report.ui.history.as_ref().unwrap());
        assert!(
            alone.contains("remote runs over ssh") && alone.contains("not measured"),
            "{alone}"
        );
    }

    #[test]
    fn a_slower_trainui_and_a_growing_decode_cost_fail_their_targets() {
        let report = build(setup(), raw(0.11, 0.1, 2.0), ui(), Duration::from_secs(1));
        let verdicts = verdicts(&report);
        assert!(verdicts.contains(&("training tokens/s vs peer", false)));
        assert!(verdicts.contains(&("decode step at 256 / at 32", false)));
        let table = report_table(&report);
        assert!(table.contains("training tokens/s vs peer"));
        assert!(table.contains("FAIL"));
    }

    #[test]
    fn quantiles_take_the_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert!((quantile(&values, 0.5) - 50.0).abs() < f64::EPSILON);
        assert!((quantile(&values, 0.99) - 99.0).abs() < f64::EPSILON);
        assert!((quantile(&[3.0], 0.99) - 3.0).abs() < f64::EPSILON);
        assert!(quantile(&[], 0.5).abs() < f64::EPSILON);
    }
}
