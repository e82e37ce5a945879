//! Training loss (raw and smoothed) and validation loss against the step
//! or the wall clock, with the latest values in the legend.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Chart, Dataset, GraphType, Paragraph};

use super::app::App;
use super::header::loss;
use super::history::{History, thin};
use super::theme::{dim, ellipsis, fg, pane};
use crate::smooth::ema;
use trainui_protocol::lines::duration;

const RAW: Color = Color::Blue;
const SMOOTHED: Color = Color::Cyan;
const VAL: Color = Color::Yellow;

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let block = pane(app, title(app, "loss"), false);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if app.run.curves.loss.is_empty() {
        let waiting =
            Paragraph::new(format!("waiting for the first step{}", ellipsis(app))).style(dim(app));
        frame.render_widget(waiting, inner);
        return;
    }
    let [legend_area, chart_area] =
        Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(inner);

    let raw_points = window(app, &app.run.curves.loss);
    // Smoothed before thinning, so that it is the same curve at any width.
    let smoothed_points = ema(&raw_points, app.view.chart.smoothing as f64);
    let first_step = raw_points.first().map_or(0.0, |p| p.0);
    let val_points: Vec<(f64, f64)> = window(app, &app.run.curves.val)
        .into_iter()
        .filter(|p| p.0 >= first_step)
        .collect();
    render_legend(
        frame,
        legend_area,
        app,
        raw_points.last().map(|p| p.1),
        smoothed_points.last().map(|p| p.1),
        val_points.last().map(|p| p.1),
    );

    let clock = app.run.curves.clock.whole();
    let shape = |series: &[(f64, f64)]| shape(app, chart_area, &clock, series);
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
            .graph_type(GraphType::Scatter)
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
    let axis = if chart.time_axis { "time" } else { "steps" };
    format!(" {what} · {window} · {axis}{scale} ")
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
/// shows, against the run's clock (`clock`: step, seconds) on a time axis,
/// and as its logarithm on a log scale.
pub(super) fn shape(
    app: &App,
    area: Rect,
    clock: &[(f64, f64)],
    series: &[(f64, f64)],
) -> Vec<(f64, f64)> {
    // Braille gives two points per cell; more would not be seen.
    let max_points = usize::from(area.width.saturating_sub(8)) * 2;
    let mut series = thin(series, max_points.max(2));
    for point in &mut series {
        if app.view.chart.time_axis {
            point.0 = seconds_at(clock, point.0);
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
    let margin = ((high - low) * 0.05).max(high.abs().max(1.0) * 0.01);
    let (low, high) = (low - margin, high + margin);

    let rows = usize::from(area.height.saturating_sub(2));
    let y_ticks = (rows.div_ceil(2) + 1).clamp(2, 8);
    let x_ticks = (usize::from(area.width) / 14).clamp(2, 6);
    let log_scale = app.view.chart.log_scale;
    let y_label = |y: f64| loss(if log_scale { y.exp() } else { y });
    let time_axis = app.view.chart.time_axis;
    let x_label = |x: f64| {
        if time_axis {
            duration(x)
        } else {
            format!("{x:.0}")
        }
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

/// The run's wall-clock seconds at `step`, between the logged steps around
/// it.
fn seconds_at(clock: &[(f64, f64)], step: f64) -> f64 {
    let after = clock.partition_point(|p| p.0 < step);
    match (clock.get(after.wrapping_sub(1)), clock.get(after)) {
        (Some(&(s0, t0)), Some(&(s1, t1))) if s1 > s0 => t0 + (t1 - t0) * (step - s0) / (s1 - s0),
        (_, Some(&(_, t))) | (Some(&(_, t)), None) => t,
        (None, None) => step,
    }
}

fn render_legend(
    frame: &mut Frame,
    area: Rect,
    app: &App,
    raw: Option<f64>,
    smoothed: Option<f64>,
    val: Option<f64>,
) {
    let value = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), loss);
    let (raw_mark, smoothed_mark, val_mark) = if app.view.ascii {
        (".", "-", "o")
    } else {
        ("⠒", "━", "•")
    };
    let smoothing = match app.view.chart.smoothing {
        0 => "no smoothing".to_owned(),
        steps => format!("ema {steps} steps"),
    };
    let mut spans = vec![
        Span::styled(format!("{raw_mark} raw "), fg(app, RAW)),
        Span::styled(value(raw), fg(app, RAW).add_modifier(Modifier::BOLD)),
        Span::raw("  "),
        Span::styled(format!("{smoothed_mark} {smoothing} "), fg(app, SMOOTHED)),
        Span::styled(
            value(smoothed),
            fg(app, SMOOTHED).add_modifier(Modifier::BOLD),
        ),
    ];
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
        assert!((seconds_at(&clock, 15.0) - 10.0).abs() < 1e-9);
        assert!((seconds_at(&clock, 25.0) - 15.0).abs() < 1e-9);
        assert!((seconds_at(&clock, 5.0) - 5.0).abs() < 1e-9);
    }
}
