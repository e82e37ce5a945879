//! The keys, and the latest command sent or acknowledged.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::app::App;
use super::render::fg;
use crate::events::RunState;

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let pause = if app.status.state == RunState::Paused {
        "resume"
    } else {
        "pause"
    };
    let mut keys = vec![
        ("e", "eval"),
        ("a", "abort"),
        ("p", pause),
        ("s", "save"),
        ("q", "quit"),
        ("?", "help"),
    ];
    if app.status.state == RunState::Stalled {
        keys.insert(0, ("r", "restart"));
    }
    let mut spans = vec![Span::raw(" ")];
    for (key, what) in keys {
        spans.push(Span::styled(
            key,
            fg(app, Color::Cyan).add_modifier(Modifier::BOLD),
        ));
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
