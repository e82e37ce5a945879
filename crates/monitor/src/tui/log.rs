//! The latest events worth reading (evaluations, checkpoints, warnings,
//! commands acknowledged), wrapped, the newest at the bottom; scrolled
//! back, the title says where.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::Paragraph;

use super::app::App;
use super::event_log::Level;
use super::theme::{fg, pane};
use super::view_state::Focus;

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let inner = pane(app, "", false).inner(area);
    let (width, rows) = (inner.width, usize::from(inner.height));
    let mut geometry = app.view.geometry.get();
    geometry.log_width = width;
    geometry.log_rows = inner.height;
    app.view.geometry.set(geometry);
    let log = &app.run.log;
    let (lines, in_view) = log.window(width, None, app.view.log_scroll, rows);
    let shown = &lines[in_view];
    let title = match (shown.first(), shown.last()) {
        (Some((first, _)), Some((last, _))) => {
            format!(" events {}-{}/{} ", first + 1, last + 1, log.len())
        }
        _ => " events ".to_owned(),
    };
    let text: Vec<Line> = shown
        .iter()
        .map(|(index, piece)| Line::from(piece.clone()).style(level_style(app, log[*index].level)))
        .collect();
    // Without a samples pane, the arrows scroll this one whatever the focus.
    let focused = app.view.focus == Focus::Events || !super::eval::has_content(app);
    let block = pane(app, title, focused);
    frame.render_widget(Paragraph::new(text).block(block), area);
}

/// How a line of `level` looks.
#[must_use]
pub fn level_style(app: &App, level: Level) -> Style {
    match level {
        Level::Info => Style::new(),
        Level::Warning => fg(app, Color::Yellow),
        Level::Error => fg(app, Color::Red).add_modifier(Modifier::BOLD),
    }
}
