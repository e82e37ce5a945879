//! The latest events worth reading: evaluations, checkpoints, warnings,
//! commands acknowledged.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Color;
use ratatui::text::Line;
use ratatui::widgets::Paragraph;

use super::app::{App, Focus};
use super::theme::{fg, pane};

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let block = pane(app, " events ", app.focus == Focus::Events);
    let inner = block.inner(area);
    let visible = usize::from(inner.height);
    let end = app.log.len().saturating_sub(app.log_scroll);
    let start = end.saturating_sub(visible);
    let lines: Vec<Line> = app
        .log
        .range(start..end)
        .map(|line| {
            let style = if line.starts_with("WARNING") || line.starts_with("FAILED") {
                fg(app, Color::Yellow)
            } else {
                fg(app, Color::Reset)
            };
            Line::from(line.as_str()).style(style)
        })
        .collect();
    // Long lines are cut, not wrapped, so the newest stays at the bottom.
    frame.render_widget(Paragraph::new(lines).block(block), area);
}
