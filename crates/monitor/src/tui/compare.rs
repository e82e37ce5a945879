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
//!
//! Over the screen on `d`: the settings that differ among the runs, a row
//! per key and a column per run (from the followed one on, as many as fit).
//!
//! ```text
//! ┌ settings that differ · 3 runs · Esc closes ───────────────────────┐
//! │ key                     ▶ lr-3e-4   lr-1e-3    lr-3e-3             │
//! │ train.learning_rate     0.0003      0.001      0.003               │
//! └──────────────────────────────────────────────────────────────────┘
//! ```

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Clear, Dataset, GraphType, Paragraph, Row, Table};

use super::board::Board;
use super::loss::{chart, series_history, shape, title, value_label, window, x_map};
use super::theme::{dim, ellipsis, pane, run_color, run_marker};
use super::view_state::Series;
use crate::diff::KeyDiff;
use crate::run_filter::text_of;
use crate::smooth::{self, ema};
use trainui_protocol::text::escape;

pub fn render(frame: &mut Frame, area: Rect, board: &Board) {
    let app = board.followed();
    let flags = board.shown_flags();
    let shown = flags.iter().filter(|&&shown| shown).count();
    let kind = app.view.chart.series;
    // The learning rate follows its schedule and is not smoothed; the
    // others are, each curve over the window its own history allows, and
    // the title names the widest window applied.
    let smoothing_window = if kind == Series::LearningRate {
        0
    } else {
        board.smoothing()
    };
    let applied = (0..board.runs.len())
        .filter(|&index| flags[index])
        .map(|index| {
            let points = window(app, series_history(kind, &board.runs[index].run));
            smooth::applied_window(smoothing_window, &points)
        })
        .max()
        .unwrap_or(0);
    let smoothing = smooth::label(smoothing_window, applied);
    let what = format!(
        "{} · {shown} of {} runs · {smoothing}",
        app.view.chart.series.name(),
        board.runs.len()
    );
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
        .filter(|&index| flags[index] && index != board.selected())
        .chain(flags[board.selected()].then_some(board.selected()))
        .collect();
    let curves: Vec<(usize, Vec<(f64, f64)>)> = order
        .iter()
        .map(|&index| {
            let other = &board.runs[index];
            let points = window(app, series_history(kind, &other.run));
            (index, ema(&points, smoothing_window as f64))
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
            let clock = x_map(app, &board.runs[*index].run);
            (*index, shape(app, chart_area, &clock, points))
        })
        .collect();
    // The followed run's validation losses, within its curve's steps.
    // Without colour, dots would pass for a run's shape.
    // Validation losses only beside the loss.
    let val = if flags[board.selected()] && app.view.color && app.view.chart.series == Series::Loss
    {
        let first_step = window(app, &app.run.curves.loss)
            .first()
            .map_or(0.0, |p| p.0);
        let points: Vec<(f64, f64)> = window(app, &app.run.curves.val)
            .into_iter()
            .filter(|p| p.0 >= first_step)
            .collect();
        shape(app, chart_area, &x_map(app, &app.run), &points)
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
    let kind = board.followed().view.chart.series;
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
                points
                    .last()
                    .map_or_else(|| "-".to_owned(), |p| value_label(kind, p.1))
            ),
            run_color(app, *index).add_modifier(Modifier::BOLD),
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// The widest a run's column of values (and a key's column in the table)
/// gets.
pub const VALUE_WIDTH: usize = 16;

/// A run's value of a differing key as a cell shows it: escaped, `-` when
/// the run lacks the key.
#[must_use]
pub fn value_text(diff: &KeyDiff, run: usize) -> String {
    diff.values.get(run).and_then(Option::as_ref).map_or_else(
        || "-".to_owned(),
        |value| escape(&text_of(value)).into_owned(),
    )
}

/// The settings that differ among the runs, full screen over `area`: the
/// keys down the left, a column per run from the followed run's page on.
pub fn render_diff(frame: &mut Frame, area: Rect, board: &Board) {
    let app = board.followed();
    frame.render_widget(Clear, area);
    let differences = board.differences();
    let count = board.runs.len();
    let key_width = differences
        .iter()
        .map(|diff| escape(&diff.key).chars().count())
        .max()
        .unwrap_or(0)
        .clamp(3, 40);
    let inner_width = usize::from(area.width.saturating_sub(2));
    let names: Vec<String> = board
        .runs
        .iter()
        .map(|row| row.run.status.run_name.clone())
        .collect();
    // A run's column: its values after two cells that, in the header, mark
    // the followed run.
    let column_width = |run: usize| -> usize {
        let values = differences
            .iter()
            .map(|diff| value_text(diff, run).chars().count());
        values
            .chain(std::iter::once(names[run].chars().count()))
            .max()
            .unwrap_or(1)
            .min(VALUE_WIDTH)
            + 2
    };
    // Pages of runs that fit beside the keys; the one with the followed run.
    let room = inner_width.saturating_sub(key_width + 1);
    let mut runs: Vec<usize> = Vec::new();
    let mut used = 0;
    for run in 0..count {
        let wide = column_width(run) + 1;
        if used + wide > room && !runs.is_empty() {
            if run > board.selected() {
                break;
            }
            runs.clear();
            used = 0;
        }
        runs.push(run);
        used += wide;
    }
    let span = match (runs.first(), runs.last()) {
        (Some(a), Some(b)) if runs.len() < count => format!(" · runs {}-{} ← →", a + 1, b + 1),
        _ => String::new(),
    };
    let title = format!(
        " settings that differ · {} among {count} runs{span} · Esc closes ",
        differences.len()
    );
    let block = pane(app, title, true);
    if differences.is_empty() {
        let text = "no config key or producer detail differs among these runs \
                    (a run without config.json has no say)";
        frame.render_widget(
            Paragraph::new(text)
                .style(dim(app))
                .wrap(ratatui::widgets::Wrap { trim: true })
                .block(block),
            area,
        );
        return;
    }
    let header = Row::new(std::iter::once(Cell::from("key").style(dim(app))).chain(
        runs.iter().map(|&run| {
            let mark = if run == board.selected() {
                "▶ "
            } else {
                "  "
            };
            Cell::from(format!("{mark}{}", names[run])).style(run_color(app, run).add_modifier(
                if run == board.selected() {
                    Modifier::BOLD
                } else {
                    Modifier::empty()
                },
            ))
        }),
    ));
    let rows = differences.iter().map(|diff| {
        Row::new(
            std::iter::once(Cell::from(cut(&escape(&diff.key), key_width))).chain(
                runs.iter().map(|&run| {
                    Cell::from(format!("  {}", cut(&value_text(diff, run), VALUE_WIDTH)))
                }),
            ),
        )
    });
    let widths = std::iter::once(Constraint::Length(key_width as u16)).chain(
        runs.iter()
            .map(|&run| Constraint::Length(column_width(run) as u16)),
    );
    let table = Table::new(rows, widths).header(header).block(block);
    frame.render_widget(table, area);
}

/// `text` in at most `width` characters, its end replaced by `…` when cut.
#[must_use]
pub fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}
