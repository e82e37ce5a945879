//! Training loss (raw and smoothed) and validation loss against the step.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Color;
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Chart, Dataset, GraphType, Paragraph};

use super::app::App;
use super::history::{History, thin};
use super::theme::{fg, pane};

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let window = if app.chart.whole_run {
        "whole run"
    } else {
        "recent"
    };
    let scale = if app.chart.log_scale { " · log" } else { "" };
    let title = Line::from(vec![
        Span::raw(format!(" loss · {window}{scale} · ")),
        Span::styled("⠒ raw ", fg(app, Color::DarkGray)),
        Span::styled("─ smoothed ", fg(app, Color::Cyan)),
        Span::styled("• val ", fg(app, Color::Yellow)),
    ]);
    let block = pane(app, title, false);
    if app.loss_history.is_empty() {
        let waiting = Paragraph::new("waiting for the first step…").style(fg(app, Color::DarkGray));
        frame.render_widget(waiting.block(block), area);
        return;
    }
    // Braille gives two points per cell; more would not be seen.
    let max_points = usize::from(area.width.saturating_sub(10)) * 2;
    let series = |history: &History| {
        let points = if app.chart.whole_run {
            history.whole()
        } else {
            history.recent()
        };
        let mut points = thin(&points, max_points.max(2));
        if app.chart.log_scale {
            for point in &mut points {
                point.1 = point.1.max(1e-12).ln();
            }
        }
        points
    };
    let raw = series(&app.loss_history);
    let smoothed = series(&app.smoothed_history);
    let first_step = raw.first().map_or(0.0, |p| p.0);
    let last_step = raw.last().map_or(1.0, |p| p.0).max(first_step + 1.0);
    let val: Vec<(f64, f64)> = series(&app.val_history)
        .into_iter()
        .filter(|p| p.0 >= first_step)
        .collect();

    let (mut low, mut high) = (f64::INFINITY, f64::NEG_INFINITY);
    for &(_, y) in raw.iter().chain(&smoothed).chain(&val) {
        low = low.min(y);
        high = high.max(y);
    }
    let margin = ((high - low) * 0.05).max(1e-6);
    let (low, high) = (low - margin, high + margin);
    let label = |y: f64| {
        let value = if app.chart.log_scale { y.exp() } else { y };
        format!("{value:.3}")
    };
    let datasets = vec![
        Dataset::default()
            .name("raw")
            .marker(Marker::Braille)
            .graph_type(GraphType::Scatter)
            .style(fg(app, Color::DarkGray))
            .data(&raw),
        Dataset::default()
            .name("smoothed")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(fg(app, Color::Cyan))
            .data(&smoothed),
        Dataset::default()
            .name("val")
            .marker(Marker::Dot)
            .graph_type(GraphType::Scatter)
            .style(fg(app, Color::Yellow))
            .data(&val),
    ];
    let axis_style = fg(app, Color::DarkGray);
    let chart = Chart::new(datasets)
        .block(block)
        .legend_position(None)
        .x_axis(
            Axis::default()
                .style(axis_style)
                .bounds([first_step, last_step])
                .labels([
                    Line::from(format!("{first_step:.0}")),
                    Line::from("step"),
                    Line::from(format!("{last_step:.0}")),
                ]),
        )
        .y_axis(
            Axis::default()
                .style(axis_style)
                .bounds([low, high])
                .labels([
                    Line::from(label(low)),
                    Line::from(label(f64::midpoint(low, high))),
                    Line::from(label(high)),
                ]),
        );
    frame.render_widget(chart, area);
}
