//! Evaluation and generation counters, the timeout rate, exact-match history.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Sparkline};

use super::app::App;
use super::theme::{fg, pane};

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let c = &app.status;
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
    let latest = app
        .exact_match_history
        .back()
        .map_or_else(|| "-".to_owned(), |m| format!("{m}%"));
    let label = format!("match {latest:>4} ");
    let [label_area, spark_area] =
        Layout::horizontal([Constraint::Length(label.len() as u16), Constraint::Fill(1)])
            .areas(match_area);
    frame.render_widget(Paragraph::new(label), label_area);
    let data: Vec<u64> = app.exact_match_history.iter().copied().collect();
    frame.render_widget(
        Sparkline::default()
            .data(&data)
            .max(100)
            .style(fg(app, Color::Green)),
        spark_area,
    );
}
