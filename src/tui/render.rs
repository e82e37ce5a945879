//! Draws the whole screen from `&App`; nothing here changes state.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};

use super::app::{App, Overlay};
use super::{counters, eval, footer, header, load, log, loss};
use crate::events::RunState;

/// Smallest screen the layout fits.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 18;

/// The full layout:
///
/// ```text
/// header   run · state · step gauge · elapsed/eta · tok/s · lr · device
/// ┌ loss ──────────────────────────┐┌ system ────────────┐
/// │ raw, smoothed, validation      ││ GPU or CPU load    │
/// └────────────────────────────────┘└────────────────────┘
/// ┌ eval ──────────────────────────┐┌ counters ──────────┐
/// │ live generation, countdown     │└────────────────────┘
/// │ recent samples (scrollable)    │┌ events ────────────┐
/// └────────────────────────────────┘└────────────────────┘
/// footer   keys · latest acknowledgement
/// ```
pub fn render(frame: &mut Frame, app: &App) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        render_too_small(frame, area);
        return;
    }
    let [header_area, body, footer_area] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(area);
    let [top, bottom] =
        Layout::vertical([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(body);
    let columns = [Constraint::Percentage(62), Constraint::Percentage(38)];
    let [loss_area, load_area] = Layout::horizontal(columns).areas(top);
    let [eval_area, side] = Layout::horizontal(columns).areas(bottom);
    let [counters_area, log_area] =
        Layout::vertical([Constraint::Length(6), Constraint::Fill(1)]).areas(side);

    header::render(frame, header_area, app);
    loss::render(frame, loss_area, app);
    load::render(frame, load_area, app);
    eval::render(frame, eval_area, app);
    counters::render(frame, counters_area, app);
    log::render(frame, log_area, app);
    footer::render(frame, footer_area, app);

    match app.overlay {
        Overlay::ConfirmQuit => render_confirm_quit(frame, area, app),
        Overlay::Help => render_help(frame, area, app),
        Overlay::None => {}
    }
}

/// `color` as a foreground style, or no colour at all under NO_COLOR.
#[must_use]
pub fn fg(app: &App, color: Color) -> Style {
    if app.color {
        Style::new().fg(color)
    } else {
        Style::new()
    }
}

/// A bordered pane; the focused one has a highlighted border.
#[must_use]
pub fn pane<'a>(app: &App, title: impl Into<Line<'a>>, focused: bool) -> Block<'a> {
    let block = Block::bordered().title(title);
    if focused {
        block.border_style(fg(app, Color::Cyan).add_modifier(Modifier::BOLD))
    } else {
        block.border_style(fg(app, Color::DarkGray))
    }
}

/// The colour of a run state.
#[must_use]
pub fn state_style(app: &App, state: RunState) -> Style {
    let color = match state {
        RunState::Starting => Color::Gray,
        RunState::Training | RunState::Finished => Color::Green,
        RunState::Evaluating => Color::Cyan,
        RunState::Paused | RunState::Stopping => Color::Yellow,
        RunState::Stopped => Color::Blue,
        RunState::Failed => Color::Red,
        RunState::Stalled => Color::Magenta,
    };
    fg(app, color).add_modifier(Modifier::BOLD)
}

fn render_too_small(frame: &mut Frame, area: Rect) {
    let text = vec![
        Line::from("terminal too small"),
        Line::from(format!(
            "{}x{}, need {MIN_WIDTH}x{MIN_HEIGHT}",
            area.width, area.height
        )),
        Line::from("q quits"),
    ];
    frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), area);
}

fn popup(frame: &mut Frame, area: Rect, width: u16, height: u16) -> Rect {
    let popup = area.centered(
        Constraint::Length(width.min(area.width)),
        Constraint::Length(height.min(area.height)),
    );
    frame.render_widget(Clear, popup);
    popup
}

fn render_help(frame: &mut Frame, area: Rect, app: &App) {
    let keys = [
        ("e", "evaluate now (at the next step boundary)"),
        ("a", "abort the generation in progress"),
        ("p", "pause / resume training"),
        ("s", "save a checkpoint now"),
        ("q", "quit: stop at a step boundary, save, exit"),
        ("l", "loss chart: log scale on / off"),
        ("z", "loss chart: whole run / recent window"),
        ("Tab", "focus samples / events"),
        ("↑ ↓ PgUp PgDn", "scroll the focused pane"),
        ("?", "this help"),
    ];
    let mut lines: Vec<Line> = keys
        .iter()
        .map(|(key, what)| {
            Line::from(vec![
                Span::styled(
                    format!("{key:>14}  "),
                    fg(app, Color::Cyan).add_modifier(Modifier::BOLD),
                ),
                Span::raw(*what),
            ])
        })
        .collect();
    lines.push(Line::from(""));
    lines.push(Line::from("any key closes this help").style(fg(app, Color::DarkGray)));
    let area = popup(frame, area, 62, lines.len() as u16 + 2);
    frame.render_widget(Paragraph::new(lines).block(pane(app, " keys ", true)), area);
}

fn render_confirm_quit(frame: &mut Frame, area: Rect, app: &App) {
    let key = |k: &'static str| Span::styled(k, fg(app, Color::Cyan).add_modifier(Modifier::BOLD));
    let lines = vec![
        Line::from("Stop training and quit?"),
        Line::from(""),
        Line::from(vec![
            key("y"),
            Span::raw("      stop at the next step, save a checkpoint, exit"),
        ]),
        Line::from(vec![key("n/Esc"), Span::raw("  keep training")]),
        Line::from(vec![key("q"), Span::raw("      quit now, without saving")]),
    ];
    let area = popup(frame, area, 58, 7);
    let block = pane(app, " quit ", true).border_style(fg(app, Color::Yellow));
    frame.render_widget(Paragraph::new(lines).block(block), area);
}
