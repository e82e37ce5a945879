//! The whole log, full screen: each line with its time (UTC), wrapped,
//! filtered by level, with the search's matches marked.

use std::fmt::Write as _;
use std::time::SystemTime;

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};

use super::app::App;
use super::event_log::Level;
use super::log::level_style;
use super::theme::{dim, fg, pane, sep};

/// Columns of the time before each line.
const TIME: u16 = 9;

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    frame.render_widget(Clear, area);
    let view = &app.view.log_view;
    let filter = match view.filter {
        None => "all lines",
        Some(Level::Warning) => "warnings and errors",
        Some(_) => "errors",
    };
    let mut title = format!(" log (UTC){}{filter} (f)", sep(app));
    if !view.query.is_empty() {
        let _ = write!(title, "{}search \"{}\" (n N)", sep(app), view.query);
    }
    title.push(' ');
    let block = pane(app, title, true);
    let inner = block.inner(area);
    let width = inner.width.saturating_sub(TIME);
    let rows = usize::from(inner.height);
    let mut geometry = app.view.geometry.get();
    geometry.log_view_width = width;
    geometry.log_view_rows = inner.height;
    app.view.geometry.set(geometry);

    let log = &app.run.log;
    let shown_entries = log
        .iter()
        .filter(|line| view.filter.is_none_or(|f| line.level >= f))
        .count();
    let (lines, in_view) = log.window(width, view.filter, view.scroll, rows);
    let top = in_view.start;
    let shown = &lines[in_view];
    let query = view.query.to_ascii_lowercase();
    let text: Vec<Line> = shown
        .iter()
        .enumerate()
        .map(|(i, (index, piece))| {
            let entry = &log[*index];
            // The time on an entry's first line only.
            let continued = top + i > 0 && lines[top + i - 1].0 == *index;
            let time = if continued {
                " ".repeat(usize::from(TIME))
            } else {
                format!("{} ", clock(entry.at))
            };
            let mut spans = vec![Span::styled(time, dim(app))];
            spans.extend(marked(app, piece, &query, level_style(app, entry.level)));
            Line::from(spans)
        })
        .collect();
    let position = match (shown.first(), shown.last()) {
        (Some((first, _)), Some((last, _))) => {
            // Entries counted among those the filter lets through.
            let before = |index: usize| {
                log.iter()
                    .take(index)
                    .filter(|line| view.filter.is_none_or(|f| line.level >= f))
                    .count()
            };
            format!(
                " {}-{}/{shown_entries}{}Esc closes ",
                before(*first) + 1,
                before(*last) + 1,
                sep(app)
            )
        }
        _ => " nothing to show ".to_owned(),
    };
    let block = block.title_bottom(Line::from(position).right_aligned());
    frame.render_widget(Paragraph::new(text).block(block), area);
}

/// `HH:MM:SS` of `at`, UTC.
fn clock(at: SystemTime) -> String {
    let text = humantime::format_rfc3339_seconds(at).to_string();
    text.get(11..19).unwrap_or(&text).to_owned()
}

/// `piece` with every (case-insensitive) occurrence of `query` marked.
fn marked(app: &App, piece: &str, query: &str, style: ratatui::style::Style) -> Vec<Span<'static>> {
    let hit = fg(app, Color::Yellow).add_modifier(Modifier::REVERSED | Modifier::BOLD);
    // ASCII case folding keeps every byte offset, so the slices below fall
    // on character boundaries.
    let lower = piece.to_ascii_lowercase();
    if query.is_empty() {
        return vec![Span::styled(piece.to_owned(), style)];
    }
    let mut spans = Vec::new();
    let mut at = 0;
    while let Some(found) = lower[at..].find(query) {
        let start = at + found;
        spans.push(Span::styled(piece[at..start].to_owned(), style));
        spans.push(Span::styled(
            piece[start..start + query.len()].to_owned(),
            hit,
        ));
        at = start + query.len();
    }
    spans.push(Span::styled(piece[at..].to_owned(), style));
    spans
}
