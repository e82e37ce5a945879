//! The bench's figures as a person reads them: the report's table (the
//! setup, the figures beside the peer's, the targets with their verdicts)
//! and that of `trainui bench --history-only`. Scripts read the JSON of the
//! same figures instead.

use std::fmt::Write as _;

use super::history::HistoryFigures;
use super::plan::WARMUP_STEPS;
use super::report::{Report, history_targets};

fn ms(value: f64) -> String {
    format!("{value:.2}")
}

fn rate(value: f64) -> String {
    trainui_protocol::lines::thousands(value.round() as u64)
}

/// The report as a person reads it: the setup, the figures (trainui, the
/// peer, their ratio), and the targets with their verdicts.
#[must_use]
pub fn report_table(report: &Report) -> String {
    let (s, t, g, u) = (
        &report.setup,
        &report.training,
        &report.generation,
        &report.ui,
    );
    let model = &s.model;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "trainui bench: {} ({} layers, {} heads, width {}, block {}, vocab {}, batch {}) \
             on {}, {} threads; torch {}",
        s.config,
        model.n_layer,
        model.n_head,
        model.n_embd,
        model.block_size,
        s.vocab_size,
        s.batch_size,
        s.device,
        s.threads,
        report.torch
    );
    let _ = writeln!(
        out,
        "{} rounds, trainui and the PyTorch peer alternating; {} training steps per run \
             after {} warm-up",
        s.rounds, s.steps_per_run, WARMUP_STEPS,
    );
    let _ = writeln!(
        out,
        "fp32 matmul: {:.1} GFLOP/s on the model's own products (forward and backward), \
             {:.1} GFLOP/s on 1024x1024 (peak)\n",
        s.model_matmul_gflops, s.matmul_gflops
    );
    let rows: Vec<[String; 4]> = vec![
        [
            "training tokens/s (median)".into(),
            rate(t.tokens_per_sec),
            rate(t.peer_tokens_per_sec),
            format!("{:.3}", t.ratio),
        ],
        [
            "training step (ms)".into(),
            format!("{:.1}", t.step_ms),
            format!("{:.1}", t.peer_step_ms),
            format!("{:.3}", t.step_ms / t.peer_step_ms),
        ],
        [
            "model FLOP utilisation (of model matmuls)".into(),
            format!("{:.1} %", 100.0 * t.mfu),
            format!("{:.1} %", 100.0 * t.peer_mfu),
            String::new(),
        ],
        [
            "model FLOP utilisation (of 1024x1024 peak)".into(),
            format!("{:.1} %", 100.0 * t.mfu_of_peak),
            format!(
                "{:.1} %",
                100.0 * t.peer_mfu * s.model_matmul_gflops / s.matmul_gflops
            ),
            String::new(),
        ],
        [
            format!(
                "generation tokens/s ({} + {})",
                g.prompt_tokens, g.new_tokens
            ),
            rate(g.tokens_per_sec),
            rate(g.peer_tokens_per_sec),
            format!("{:.3}", g.ratio),
        ],
        [
            "decode step at position 32 (ms)".into(),
            ms(g.step_ms_at_32),
            ms(g.peer_step_ms_at_32),
            format!("{:.3}", g.step_ms_at_32 / g.peer_step_ms_at_32),
        ],
        [
            "decode step at position 256 (ms)".into(),
            ms(g.step_ms_at_256),
            ms(g.peer_step_ms_at_256),
            format!("{:.3}", g.step_ms_at_256 / g.peer_step_ms_at_256),
        ],
        [
            "decode step 256 / 32".into(),
            format!("{:.3}", g.flatness),
            format!("{:.3}", g.peer_flatness),
            String::new(),
        ],
        [
            format!(
                "abort latency p50 / p99 (ms, {} gens)",
                report.abort.generations
            ),
            format!("{} / {}", ms(report.abort.p50_ms), ms(report.abort.p99_ms)),
            String::new(),
            String::new(),
        ],
        [
            format!(
                "timeout overshoot p50 / p99 (ms, {} gens)",
                report.timeout_overshoot.generations
            ),
            format!(
                "{} / {}",
                ms(report.timeout_overshoot.p50_ms),
                ms(report.timeout_overshoot.p99_ms)
            ),
            String::new(),
            String::new(),
        ],
    ]
    .into_iter()
    .chain(u.figures.frames.iter().map(|f| {
        [
            format!("frame {}x{}, median / p99 (ms)", f.width, f.height),
            format!("{} / {}", ms(f.median_ms), ms(f.p99_ms)),
            String::new(),
            String::new(),
        ]
    }))
    .chain([
        [
            "training tokens/s, TUI / headless".into(),
            format!(
                "{} / {}",
                rate(u.tui_tokens_per_sec),
                rate(u.headless_tokens_per_sec)
            ),
            String::new(),
            format!("{:.3}", u.tui_ratio),
        ],
        [
            format!(
                "memory growth, {} step events (MiB)",
                trainui_protocol::lines::thousands(u.figures.history_steps)
            ),
            format!(
                "{:.2}",
                u.figures.memory_growth_bytes as f64 / f64::from(1 << 20)
            ),
            String::new(),
            String::new(),
        ],
        [
            "run-directory writing / step time".into(),
            format!("{:.3} %", 100.0 * u.run_dir_share),
            String::new(),
            String::new(),
        ],
    ])
    .chain(u.history.iter().flat_map(|h| {
        history_rows(h)
            .into_iter()
            .map(|[name, value]| [name, value, String::new(), String::new()])
    }))
    .chain(u.watch.iter().flat_map(|w| {
        [
            [
                format!("watch CPU, idle run ({:.0} s)", w.idle_secs),
                format!("{:.2} %", 100.0 * w.idle_cpu_share),
                String::new(),
                String::new(),
            ],
            [
                format!("watch CPU, busy run ({} events)", w.busy_events),
                format!(
                    "{:.2} % · {:.2} ms/event",
                    100.0 * w.busy_cpu_share,
                    w.busy_ms_per_event
                ),
                String::new(),
                String::new(),
            ],
        ]
    }))
    .collect();
    let _ = writeln!(
        out,
        "{:<44} {:>17} {:>10} {:>9}",
        "figure", "trainui", "peer", "ratio"
    );
    for [name, ours, peer, ratio] in &rows {
        let _ = writeln!(out, "{name:<44} {ours:>17} {peer:>10} {ratio:>9}");
    }
    let _ = writeln!(
        out,
        "\n{:<54} {:>12}  {:<28} result",
        "target", "value", "limit"
    );
    for target in &report.targets {
        let _ = writeln!(
            out,
            "{:<54} {:>12}  {:<28} {}",
            target.name,
            format_value(target.value),
            target.limit,
            if target.pass { "pass" } else { "FAIL" }
        );
    }
    let missed = report.targets.iter().filter(|t| !t.pass).count();
    let verdict = if missed == 0 {
        "every target passes".to_owned()
    } else {
        format!("{missed} of {} targets missed", report.targets.len())
    };
    let _ = writeln!(
        out,
        "\n{verdict}; the bench took {:.0} s",
        report.elapsed_secs
    );
    out
}

/// The figures and targets of `trainui bench --history-only`.
#[must_use]
pub fn history_table(history: &HistoryFigures) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "a run of {} steps logged every step: {} events, {:.0} MiB of events.jsonl\n",
        trainui_protocol::lines::thousands(history.steps),
        trainui_protocol::lines::thousands(history.events),
        history.events_bytes as f64 / f64::from(1 << 20)
    );
    for [name, value] in history_rows(history) {
        let _ = writeln!(out, "{name:<44} {value:>17}");
    }
    let _ = writeln!(out);
    for target in history_targets(Some(history)) {
        let _ = writeln!(
            out,
            "{:<54} {:>12}  {:<28} {}",
            target.name,
            format_value(target.value),
            target.limit,
            if target.pass { "pass" } else { "FAIL" }
        );
    }
    out
}

fn history_rows(h: &HistoryFigures) -> Vec<[String; 2]> {
    let mut rows = vec![
        [
            format!(
                "watch first screen, {} steps",
                trainui_protocol::lines::thousands(h.steps)
            ),
            format!(
                "{:.2} s · {:.0} MiB",
                h.watch_first_screen_secs,
                h.watch_peak_bytes as f64 / f64::from(1 << 20)
            ),
        ],
        [
            "status, median of 10".into(),
            format!("{:.1} ms", h.status_median_secs * 1e3),
        ],
        [
            "status, slowest of 10".into(),
            format!("{:.1} ms", h.status_max_secs * 1e3),
        ],
        [
            format!(
                "query --csv, {} steps, median / max",
                trainui_protocol::lines::thousands(h.steps)
            ),
            format!(
                "{:.2} s / {:.2} s · {:.0} MiB",
                h.query_csv_median_secs,
                h.query_csv_max_secs,
                h.query_csv_bytes as f64 / f64::from(1 << 20)
            ),
        ],
        [
            format!(
                "runs, {} runs, median / max",
                trainui_protocol::lines::thousands(h.sweep_runs)
            ),
            format!(
                "{:.0} ms / {:.0} ms",
                h.runs_median_secs * 1e3,
                h.runs_max_secs * 1e3
            ),
        ],
        [
            format!("watch first screen, {} runs", h.watch_sweep_runs),
            format!("{:.2} s", h.watch_sweep_first_screen_secs),
        ],
    ];
    match &h.remote {
        Some(r) => rows.extend([
            [
                format!(
                    "remote watch first screen, {} steps",
                    trainui_protocol::lines::thousands(h.steps)
                ),
                format!(
                    "{:.2} s · {:.0} MiB",
                    r.watch_first_screen_secs,
                    r.watch_peak_bytes as f64 / f64::from(1 << 20)
                ),
            ],
            [
                format!(
                    "remote follow, {:.0} step events/s, near",
                    r.follow.follow_events_per_sec
                ),
                format!(
                    "{:.2} % · ssh {:.2} %",
                    100.0 * r.follow.near_cpu_share,
                    100.0 * r.follow.near_ssh_cpu_share
                ),
            ],
            [
                format!("remote follow, {:.0} s, far", r.follow.follow_secs),
                format!(
                    "{:.2} % · sshd {:.2} %",
                    100.0 * r.follow.far_cpu_share,
                    100.0 * r.follow.far_sshd_cpu_share
                ),
            ],
        ]),
        None => rows.push(["remote runs over ssh".into(), "not measured".into()]),
    }
    rows
}

fn format_value(value: f64) -> String {
    if value.abs() >= 1000.0 {
        format!("{value:.0}")
    } else if value.abs() >= 0.01 || value == 0.0 {
        format!("{value:.3}")
    } else {
        format!("{value:.1e}")
    }
}
