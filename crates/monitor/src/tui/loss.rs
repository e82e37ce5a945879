//! The chart of one run: training loss (raw and smoothed) and validation
//! loss, or the learning rate, the gradient norm or tokens/s (`c`), against
//! the step, the tokens seen or the wall clock (`x`), with the latest values
//! in the legend.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Chart, Dataset, GraphType, Paragraph};

use super::app::App;
use super::header::loss;
use super::history::{History, thin};
use super::run_data::RunData;
use super::theme::{dim, ellipsis, fg, pane};
use super::view_state::{Series, XAxis};
use crate::plot::{at_step, count_label};
use crate::smooth::{applied_window, ema};
use trainui_protocol::lines::duration;

const RAW: Color = Color::Blue;
const SMOOTHED: Color = Color::Cyan;
const VAL: Color = Color::Yellow;

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let kind = app.view.chart.series;
    let what = if app.view.chart.x_axis == XAxis::Tokens && app.run.curves.token_count.estimated {
        format!("{} · tokens estimated", kind.name())
    } else {
        kind.name().to_owned()
    };
    let block = pane(app, title(app, &what), false);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let history = series_history(kind, &app.run);
    if history.is_empty() {
        let waiting = if app.run.curves.loss.is_empty() {
            format!("waiting for the first step{}", ellipsis(app))
        } else {
            format!("no {} in this run's step events", kind.name())
        };
        frame.render_widget(Paragraph::new(waiting).style(dim(app)), inner);
        return;
    }
    let [legend_area, chart_area] =
        Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(inner);

    let raw_points = window(app, history);
    // Smoothed before thinning, so that it is the same curve at any width;
    // the learning rate follows its schedule and is not smoothed.
    let smoothing = app.view.chart.smoothing;
    let smoothed_points = if kind == Series::LearningRate {
        Vec::new()
    } else {
        ema(&raw_points, smoothing as f64)
    };
    let first_step = raw_points.first().map_or(0.0, |p| p.0);
    let val_points: Vec<(f64, f64)> = if kind == Series::Loss {
        window(app, &app.run.curves.val)
            .into_iter()
            .filter(|p| p.0 >= first_step)
            .collect()
    } else {
        Vec::new()
    };
    render_legend(
        frame,
        legend_area,
        app,
        Legend {
            raw: raw_points.last().map(|p| p.1),
            smoothed: smoothed_points.last().map(|p| p.1),
            applied: applied_window(smoothing, &raw_points),
            val: val_points.last().map(|p| p.1),
        },
    );

    let x_map = x_map(app, &app.run);
    let shape = |series: &[(f64, f64)]| shape(app, chart_area, &x_map, series);
    let raw = shape(&raw_points);
    let smoothed = shape(&smoothed_points);
    let val = shape(&val_points);
    // In ASCII, braille becomes `.`, a bar `-` and a dot `o`.
    let (raw_marker, smoothed_marker, val_marker) = if app.view.ascii {
        (Marker::Braille, Marker::Bar, Marker::Dot)
    } else {
        (Marker::Braille, Marker::Braille, Marker::Dot)
    };
    let datasets = vec![
        Dataset::default()
            .marker(raw_marker)
            // The learning rate, unsmoothed, is the chart's one line.
            .graph_type(if kind == Series::LearningRate {
                GraphType::Line
            } else {
                GraphType::Scatter
            })
            .style(fg(app, RAW))
            .data(&raw),
        Dataset::default()
            .marker(smoothed_marker)
            .graph_type(GraphType::Line)
            .style(fg(app, SMOOTHED).add_modifier(Modifier::BOLD))
            .data(&smoothed),
        Dataset::default()
            .marker(val_marker)
            .graph_type(GraphType::Scatter)
            .style(fg(app, VAL).add_modifier(Modifier::BOLD))
            .data(&val),
    ];
    let all = [raw.as_slice(), &smoothed, &val];
    frame.render_widget(chart(app, chart_area, datasets, &all), chart_area);
}

/// The pane's title: `what`, then the chart view.
pub(super) fn title(app: &App, what: &str) -> String {
    let chart = &app.view.chart;
    let window = if chart.whole_run {
        "whole run"
    } else {
        "recent"
    };
    let scale = if chart.log_scale { " · log" } else { "" };
    let axis = chart.x_axis.name();
    format!(" {what} · {window} · {axis}{scale} ")
}

/// The history of `run` that the chart draws as `kind`.
pub(super) fn series_history(kind: Series, run: &RunData) -> &History {
    match kind {
        Series::Loss => &run.curves.loss,
        Series::LearningRate => &run.curves.learning_rate,
        Series::GradNorm => &run.curves.grad_norm,
        Series::TokensPerSec => &run.curves.tokens_per_sec,
    }
}

/// `run`'s (step, x) for the chart's x axis: its wall-clock seconds or
/// tokens seen at each logged step; nothing on the steps axis.
pub(super) fn x_map(app: &App, run: &RunData) -> Vec<(f64, f64)> {
    match app.view.chart.x_axis {
        XAxis::Steps => Vec::new(),
        XAxis::Tokens => run.curves.tokens.whole(),
        XAxis::Time => run.curves.clock.whole(),
    }
}

/// The points of the chart's window (the whole run or the recent points)
/// of `history`.
pub(super) fn window(app: &App, history: &History) -> Vec<(f64, f64)> {
    if app.view.chart.whole_run {
        history.whole()
    } else {
        history.recent()
    }
}

/// `series` as the chart in `area` draws it: thinned to what the width
/// shows, against the run's `x_map` (step, seconds or tokens, see
/// [`x_map`]) on a time or tokens axis, and as its logarithm on a log
/// scale.
pub(super) fn shape(
    app: &App,
    area: Rect,
    x_map: &[(f64, f64)],
    series: &[(f64, f64)],
) -> Vec<(f64, f64)> {
    // Braille gives two points per cell; more would not be seen.
    let max_points = usize::from(area.width.saturating_sub(8)) * 2;
    let mut series = thin(series, max_points.max(2));
    for point in &mut series {
        if app.view.chart.x_axis != XAxis::Steps {
            point.0 = at_step(x_map, point.0);
        }
        if app.view.chart.log_scale {
            point.1 = point.1.max(1e-12).ln();
        }
    }
    series
}

/// A chart of `datasets` in `area`, its axes spanning every point of
/// `series` (shaped) and labelled as the chart view says.
pub(super) fn chart<'a>(
    app: &App,
    area: Rect,
    datasets: Vec<Dataset<'a>>,
    series: &[&[(f64, f64)]],
) -> Chart<'a> {
    let (mut left, mut right) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut low, mut high) = (f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in series.iter().copied().flatten() {
        (left, right) = (left.min(x), right.max(x));
        (low, high) = (low.min(y), high.max(y));
    }
    if right - left < 1.0 {
        // One point: from the start of the run to it.
        left = left.min(0.0);
        right = right.max(left + 1.0);
    }
    // Losses and norms keep a margin of at least 0.01; learning rates and
    // tokens/s one in proportion to their size.
    let unit = match app.view.chart.series {
        Series::Loss | Series::GradNorm => 1.0,
        Series::LearningRate | Series::TokensPerSec => f64::MIN_POSITIVE,
    };
    let margin = ((high - low) * 0.05).max(high.abs().max(unit) * 0.01);
    let (low, high) = (low - margin, high + margin);

    let rows = usize::from(area.height.saturating_sub(2));
    let y_ticks = (rows.div_ceil(2) + 1).clamp(2, 8);
    let x_ticks = (usize::from(area.width) / 14).clamp(2, 6);
    let log_scale = app.view.chart.log_scale;
    let kind = app.view.chart.series;
    let y_label = |y: f64| value_label(kind, if log_scale { y.exp() } else { y });
    let x_axis = app.view.chart.x_axis;
    let x_label = |x: f64| match x_axis {
        XAxis::Steps => format!("{x:.0}"),
        XAxis::Tokens => count_label(x.max(0.0)),
        XAxis::Time => duration(x),
    };
    let axis_style = dim(app);
    Chart::new(datasets)
        .legend_position(None)
        .x_axis(
            Axis::default()
                .style(axis_style)
                .bounds([left, right])
                .labels(ticks(left, right, x_ticks).map(x_label)),
        )
        .y_axis(
            Axis::default()
                .style(axis_style)
                .bounds([low, high])
                .labels(ticks(low, high, y_ticks).map(y_label)),
        )
}

/// `count` evenly spaced values from `low` to `high`.
fn ticks(low: f64, high: f64, count: usize) -> impl Iterator<Item = f64> {
    let step = (high - low) / (count.max(2) - 1) as f64;
    (0..count.max(2)).map(move |i| low + step * i as f64)
}

/// A value of `kind` as the axis and legend show it.
pub(super) fn value_label(kind: Series, value: f64) -> String {
    match kind {
        Series::Loss | Series::GradNorm => loss(value),
        Series::LearningRate => format!("{value:.2e}"),
        Series::TokensPerSec => count_label(value),
    }
}

/// The latest values the legend shows, and the smoothing window applied.
#[derive(Clone, Copy)]
struct Legend {
    raw: Option<f64>,
    smoothed: Option<f64>,
    applied: u64,
    val: Option<f64>,
}

fn render_legend(frame: &mut Frame, area: Rect, app: &App, legend: Legend) {
    let kind = app.view.chart.series;
    let value = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| value_label(kind, v));
    let (raw_mark, smoothed_mark, val_mark) = if app.view.ascii {
        (".", "-", "o")
    } else {
        ("⠒", "━", "•")
    };
    let Legend {
        raw,
        smoothed,
        applied,
        val,
    } = legend;
    let smoothing = crate::smooth::label(app.view.chart.smoothing, applied);
    let raw_name = if kind == Series::LearningRate {
        "lr"
    } else {
        "raw"
    };
    let mut spans = vec![
        Span::styled(format!("{raw_mark} {raw_name} "), fg(app, RAW)),
        Span::styled(value(raw), fg(app, RAW).add_modifier(Modifier::BOLD)),
    ];
    if kind != Series::LearningRate {
        spans.extend([
            Span::raw("  "),
            Span::styled(format!("{smoothed_mark} {smoothing} "), fg(app, SMOOTHED)),
            Span::styled(
                value(smoothed),
                fg(app, SMOOTHED).add_modifier(Modifier::BOLD),
            ),
        ]);
    }
    if val.is_some() {
        spans.push(Span::raw("  "));
        spans.push(Span::styled(format!("{val_mark} val "), fg(app, VAL)));
        spans.push(Span::styled(
            value(val),
            fg(app, VAL).add_modifier(Modifier::BOLD),
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_span_the_range_and_time_follows_the_logged_steps() {
        let got: Vec<f64> = ticks(0.0, 3.0, 4).collect();
        assert_eq!(got, [0.0, 1.0, 2.0, 3.0]);
        let clock = [(10.0, 5.0), (20.0, 15.0)];
        assert!((at_step(&clock, 15.0) - 10.0).abs() < 1e-9);
        assert!((at_step(&clock, 25.0) - 15.0).abs() < 1e-9);
        assert!((at_step(&clock, 5.0) - 5.0).abs() < 1e-9);
    }
}
