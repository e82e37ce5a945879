//! Draws the whole screen from `&App`; nothing here changes state.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Color;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Wrap};

use super::app::{App, Overlay};
use super::keys::{KEYS, WITHOUT_KEY};
use super::theme::{fg, key, pane};
use super::{counters, eval, footer, header, log, loss, system};

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
    let [loss_area, system_area] = Layout::horizontal(columns).areas(top);
    let [eval_area, side] = Layout::horizontal(columns).areas(bottom);
    let [counters_area, log_area] =
        Layout::vertical([Constraint::Length(6), Constraint::Fill(1)]).areas(side);

    header::render(frame, header_area, app);
    loss::render(frame, loss_area, app);
    system::render(frame, system_area, app);
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

/// Every key of the table, then the commands no key sends, with how to
/// send them.
fn render_help(frame: &mut Frame, area: Rect, app: &App) {
    let row = |name: String, what: &str| {
        Line::from(vec![
            Span::styled(format!("{name:>9}  "), key(app)),
            Span::raw(what.to_owned()),
        ])
    };
    let mut lines: Vec<Line> = KEYS
        .iter()
        .map(|binding| row(binding.label.to_owned(), binding.help))
        .collect();
    for (kind, how) in WITHOUT_KEY {
        lines.push(row(kind.word().to_owned(), how));
    }
    lines.push(Line::from("any key closes this help").style(fg(app, Color::DarkGray)));
    let width = lines.iter().map(Line::width).max().unwrap_or(0) as u16 + 2;
    let area = popup(frame, area, width, lines.len() as u16 + 2);
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(pane(app, " keys ", true)),
        area,
    );
}

fn render_confirm_quit(frame: &mut Frame, area: Rect, app: &App) {
    let key = |k: &'static str| Span::styled(k, key(app));
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
