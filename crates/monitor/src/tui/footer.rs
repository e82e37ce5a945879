//! The keys of the screen in use (from the key map), and the latest answer
//! to a key or a command while it is fresh; while a search is typed, the
//! search.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::app::{App, Owner};
use super::keys::{Context, KeyAction, map};
use super::theme::{fg, key};
use trainui_protocol::events::RunState;

/// `lead`, when given, comes first: the run the keys act on, when several
/// share the screen.
pub fn render(frame: &mut Frame, area: Rect, app: &App, lead: Option<Span<'static>>) {
    if let Some(typing) = &app.view.log_view.typing {
        let line = Line::from(vec![
            Span::styled(" /", key(app)),
            Span::styled(
                typing.clone(),
                fg(app, Color::Yellow).add_modifier(Modifier::BOLD),
            ),
            Span::styled("_", key(app)),
            Span::raw("   Enter searches · Esc clears"),
        ]);
        frame.render_widget(Paragraph::new(line), area);
        return;
    }
    let state = app.run.status.state;
    let mut spans: Vec<Span> = lead.into_iter().collect();
    spans.push(Span::raw(" "));
    let before_keys = spans.len();
    // Several runs: their keys after the panes' own.
    let runs = if app.compared && app.context() == Context::Panes {
        map(Context::Runs)
    } else {
        &[]
    };
    for binding in map(app.context()).iter().chain(runs) {
        let Some(mut what) = binding.footer else {
            continue;
        };
        match binding.action() {
            Some(KeyAction::Restart)
                if state != RunState::Stalled
                    || app.owner != Owner::Trainer
                    || app.restart_point().is_none() =>
            {
                continue;
            }
            Some(KeyAction::TogglePause) if state == RunState::Paused => what = "resume",
            Some(
                KeyAction::EvalNow
                | KeyAction::AbortGeneration
                | KeyAction::TogglePause
                | KeyAction::Save,
            ) if !app.running() => {
                continue;
            }
            _ => {}
        }
        // The first key names the row (`q` of `q Ctrl-C`); a pair of
        // arrows is named whole.
        let name = if binding.label == "← →" {
            "←→"
        } else {
            binding.label.split(' ').next().unwrap_or(binding.label)
        };
        spans.push(Span::styled(name, key(app)));
        spans.push(Span::raw(format!(" {what}  ")));
    }
    // A fresh answer is read before the keys: the keys go from the right,
    // a whole key at a time, until it fits.
    let ack = app.ack_text().map(|ack| format!("{ack} "));
    let ack_width = ack
        .as_ref()
        .map_or(0, |ack| Line::from(ack.as_str()).width());
    while spans.len() > before_keys
        && spans.iter().map(Span::width).sum::<usize>() + ack_width > usize::from(area.width)
    {
        spans.truncate(spans.len() - 2);
    }
    let keys_width: usize = spans.iter().map(Span::width).sum();
    let [keys_area, ack_area] =
        Layout::horizontal([Constraint::Length(keys_width as u16), Constraint::Fill(1)])
            .areas(area);
    frame.render_widget(Paragraph::new(Line::from(spans)), keys_area);
    if let Some(ack) = ack {
        let line = Line::from(ack)
            .style(fg(app, Color::Yellow))
            .right_aligned();
        frame.render_widget(Paragraph::new(line), ack_area);
    }
}
