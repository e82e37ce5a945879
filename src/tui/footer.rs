//! The keys, and the latest command sent or acknowledged.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Color;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::app::App;
use super::keys::{KEYS, KeyAction};
use super::theme::{fg, key};
use crate::events::RunState;

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let state = app.status.state;
    let mut spans = vec![Span::raw(" ")];
    for binding in KEYS {
        let Some(mut what) = binding.footer else {
            continue;
        };
        match binding.action() {
            Some(KeyAction::Restart) if state != RunState::Stalled => continue,
            Some(KeyAction::TogglePause) if state == RunState::Paused => what = "resume",
            _ => {}
        }
        let name = binding.label.split(' ').next().unwrap_or(binding.label);
        spans.push(Span::styled(name, key(app)));
        spans.push(Span::raw(format!(" {what}  ")));
    }
    let keys_width: usize = spans.iter().map(Span::width).sum();
    let [keys_area, ack_area] =
        Layout::horizontal([Constraint::Length(keys_width as u16), Constraint::Fill(1)])
            .areas(area);
    frame.render_widget(Paragraph::new(Line::from(spans)), keys_area);
    if let Some(ack) = &app.ack {
        let line = Line::from(format!("{ack} "))
            .style(fg(app, Color::Yellow))
            .right_aligned();
        frame.render_widget(Paragraph::new(line), ack_area);
    }
}
