//! The loss curves of several runs in one chart (`watch RUN_A RUN_B ...`):
//! each shown run's smoothed training loss in its colour (or, without
//! colour, its shape), the followed run's on top with its validation
//! losses as dots (in colour), and a legend of the latest values.
//!
//! ```text
//! ┌ loss · 3 of 3 runs · whole run · steps ──────────────────────────┐
//! │ ━ lr-3e-4 1.204  ━ lr-1e-3 0.981  ━ lr-3e-3 2.310                │
//! │ 2.5 ⠑⠢⢄                                                           │
//! │ 1.0     ⠉⠒⠤⠤⣀⣀⣀⣀⣀⣀⣀⣀⣀⣀                                              │
//! └──────────────────────────────────────────────────────────────────┘
//! ```

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Dataset, GraphType, Paragraph};

use super::board::Board;
use super::header::loss;
use super::loss::{chart, shape, title, window};
use super::theme::{dim, ellipsis, pane, run_color, run_marker};
use crate::smooth::ema;

pub fn render(frame: &mut Frame, area: Rect, board: &Board) {
    let app = board.followed();
    let shown = board.shown_count();
    let smoothing = match board.smoothing() {
        0 => "no smoothing".to_owned(),
        steps => format!("ema {steps} steps"),
    };
    let what = format!("loss · {shown} of {} runs · {smoothing}", board.runs.len());
    let block = pane(app, title(app, &what), false);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if shown == 0 {
        let hint = "no run shown: v shows the followed run, o every run";
        frame.render_widget(Paragraph::new(hint).style(dim(app)), inner);
        return;
    }
    let [legend_area, chart_area] =
        Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(inner);

    // The followed run last, so that its curve is on top.
    let order: Vec<usize> = (0..board.runs.len())
        .filter(|&index| board.shown(index) && index != board.selected())
        .chain(board.shown(board.selected()).then_some(board.selected()))
        .collect();
    let curves: Vec<(usize, Vec<(f64, f64)>)> = order
        .iter()
        .map(|&index| {
            let other = &board.runs[index];
            let points = window(app, &other.run.curves.loss);
            (index, ema(&points, board.smoothing() as f64))
        })
        .collect();
    render_legend(frame, legend_area, board, &curves);
    if curves.iter().all(|(_, points)| points.is_empty()) {
        let waiting = format!("waiting for the first step{}", ellipsis(app));
        frame.render_widget(Paragraph::new(waiting).style(dim(app)), chart_area);
        return;
    }

    let shaped: Vec<(usize, Vec<(f64, f64)>)> = curves
        .iter()
        .map(|(index, points)| {
            let clock = board.runs[*index].run.curves.clock.whole();
            (*index, shape(app, chart_area, &clock, points))
        })
        .collect();
    // The followed run's validation losses, within its curve's steps.
    // Without colour, dots would pass for a run's shape.
    let val = if board.shown(board.selected()) && app.view.color {
        let first_step = window(app, &app.run.curves.loss)
            .first()
            .map_or(0.0, |p| p.0);
        let points: Vec<(f64, f64)> = window(app, &app.run.curves.val)
            .into_iter()
            .filter(|p| p.0 >= first_step)
            .collect();
        shape(app, chart_area, &app.run.curves.clock.whole(), &points)
    } else {
        Vec::new()
    };
    let mut datasets: Vec<Dataset> = shaped
        .iter()
        .map(|(index, points)| {
            let mut style = run_color(app, *index);
            if *index == board.selected() {
                style = style.add_modifier(Modifier::BOLD);
            }
            Dataset::default()
                .marker(run_marker(app, *index).0)
                .graph_type(GraphType::Line)
                .style(style)
                .data(points)
        })
        .collect();
    datasets.push(
        Dataset::default()
            .marker(Marker::Dot)
            .graph_type(GraphType::Scatter)
            .style(run_color(app, board.selected()).add_modifier(Modifier::BOLD))
            .data(&val),
    );
    let mut series: Vec<&[(f64, f64)]> = shaped.iter().map(|(_, p)| p.as_slice()).collect();
    series.push(&val);
    frame.render_widget(chart(app, chart_area, datasets, &series), chart_area);
}

/// The shown runs in table order: each one's mark, name and latest
/// smoothed loss; the followed one in bold.
fn render_legend(
    frame: &mut Frame,
    area: Rect,
    board: &Board,
    curves: &[(usize, Vec<(f64, f64)>)],
) {
    let app = board.followed();
    let mut listed: Vec<&(usize, Vec<(f64, f64)>)> = curves.iter().collect();
    listed.sort_by_key(|(index, _)| *index);
    let mut spans = Vec::new();
    for (index, points) in listed {
        let row = &board.runs[*index];
        let mut name = Span::raw(row.run.status.run_name.clone());
        if *index == board.selected() {
            name = name.style(Modifier::BOLD | Modifier::UNDERLINED);
        }
        spans.push(Span::styled(
            format!("{} ", run_marker(app, *index).1),
            run_color(app, *index),
        ));
        spans.push(name);
        spans.push(Span::styled(
            format!(
                " {}  ",
                points.last().map_or_else(|| "-".to_owned(), |p| loss(p.1))
            ),
            run_color(app, *index).add_modifier(Modifier::BOLD),
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}
