//! Evaluation and generation counters, the timeout rate, exact-match history.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::app::App;
use super::theme::{fg, pane};

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let c = &app.run.status;
    let warn = c.timeout_warning();
    let block = pane(app, " counters ", false);
    let block = if warn {
        block.border_style(fg(app, Color::Red))
    } else {
        block
    };
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let rate_style = if warn {
        fg(app, Color::Red).add_modifier(Modifier::BOLD)
    } else {
        fg(app, Color::Reset)
    };
    let timeouts_style = if c.timeouts > 0 {
        fg(app, Color::Yellow)
    } else {
        fg(app, Color::Reset)
    };
    let rate = 100.0 * c.timeout_rate;
    let limit = c.settings.as_ref().map_or_else(
        || "-".to_owned(),
        |s| format!("{:.0}%", 100.0 * s.eval.timeout_warn_rate),
    );
    let lines = vec![
        Line::from(format!(
            "evals {} · gens {} · ok {}",
            c.evals, c.generations, c.completed
        )),
        Line::from(vec![
            Span::styled(format!("timeout {}", c.timeouts), timeouts_style),
            Span::raw(format!("  abort {}  err {}", c.aborts, c.errors)),
        ]),
        Line::from(Span::styled(
            if warn {
                format!("timeout rate {rate:.1}% > {limit} !")
            } else {
                format!("timeout rate {rate:.1}% (warn {limit})")
            },
            rate_style,
        )),
    ];
    let [text_area, match_area] =
        Layout::vertical([Constraint::Length(3), Constraint::Length(1)]).areas(inner);
    frame.render_widget(Paragraph::new(lines), text_area);
    let exact_match = &app.run.curves.exact_match;
    let latest = exact_match
        .back()
        .map_or_else(|| "-".to_owned(), |m| format!("{m}%"));
    // One bar per evaluation on a fixed 0-100% scale; 0% is the lowest
    // bar, not a blank.
    let width = usize::from(inner.width).saturating_sub(22);
    let bars: String = exact_match
        .iter()
        .skip(exact_match.len().saturating_sub(width))
        .map(|&m| BARS[((m.min(100) as f64 / 100.0) * 7.0).round() as usize])
        .collect();
    let line = Line::from(vec![
        Span::raw(format!("match {latest:>4} ")),
        Span::styled(bars, fg(app, Color::Green)),
        Span::styled(
            if app.run.curves.exact_match.is_empty() {
                ""
            } else {
                " of 0-100%"
            },
            fg(app, Color::DarkGray),
        ),
    ]);
    frame.render_widget(Paragraph::new(line), match_area);
}
