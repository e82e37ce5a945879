//! The generation in progress with its deadline countdown, then the recent
//! samples, newest first.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{LineGauge, Paragraph, Wrap};

use super::app::{App, Focus, LiveGeneration};
use super::theme::{fg, pane};
use crate::events::{GenerationOutcome, SampleResult};

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let title = if app.samples.is_empty() {
        " eval ".to_owned()
    } else {
        format!(" eval · {} samples (↑↓) ", app.samples.len())
    };
    let block = pane(app, title, app.focus == Focus::Samples);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let list_area = if let Some(live) = &app.live {
        let live_height = (inner.height / 2).max(4);
        let [live_area, rest] =
            Layout::vertical([Constraint::Length(live_height), Constraint::Fill(1)]).areas(inner);
        render_live(frame, live_area, app, live);
        rest
    } else {
        inner
    };
    render_samples(frame, list_area, app);
}

fn render_live(frame: &mut Frame, area: Rect, app: &App, live: &LiveGeneration) {
    let start = &live.start;
    let [title_area, gauge_area, text_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Fill(1),
    ])
    .areas(area);
    let title = Line::from(vec![
        Span::styled(
            "generating ",
            fg(app, Color::Cyan).add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!(
            "{}/{} · {} · {} tokens",
            start.sample, start.of, start.origin, live.tokens
        )),
    ]);
    frame.render_widget(Paragraph::new(title), title_area);
    let ratio = (live.elapsed_secs / start.timeout_secs.max(1e-9)).clamp(0.0, 1.0);
    let color = if ratio > 0.8 {
        Color::Red
    } else if ratio > 0.5 {
        Color::Yellow
    } else {
        Color::Green
    };
    let gauge = LineGauge::default()
        .ratio(ratio)
        .label(format!(
            "{:.1}s / {}s ",
            live.elapsed_secs, start.timeout_secs
        ))
        .filled_style(fg(app, color))
        .unfilled_style(fg(app, Color::DarkGray));
    frame.render_widget(gauge, gauge_area);
    let text = vec![
        Line::from(vec![
            Span::styled("PROMPT ", dim(app)),
            Span::raw(start.prompt.clone()),
        ]),
        Line::from(vec![
            Span::styled("GOLDEN ", dim(app)),
            Span::raw(start.golden.clone()),
        ]),
        Line::from(vec![
            Span::styled("MODEL  ", dim(app)),
            Span::raw(tail(&live.text, 2000)),
        ]),
    ];
    frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: false }), text_area);
}

fn render_samples(frame: &mut Frame, area: Rect, app: &App) {
    if app.samples.is_empty() {
        let note = if app.live.is_some() {
            ""
        } else {
            "no samples yet: e evaluates now"
        };
        frame.render_widget(Paragraph::new(note).style(dim(app)), area);
        return;
    }
    let mut lines = Vec::new();
    for sample in app.samples.iter().skip(app.sample_scroll) {
        if lines.len() + 2 > usize::from(area.height) {
            break;
        }
        lines.extend(sample_lines(app, sample));
    }
    frame.render_widget(Paragraph::new(lines), area);
}

fn sample_lines<'a>(app: &App, s: &'a SampleResult) -> [Line<'a>; 2] {
    let (label, color) = match &s.outcome {
        GenerationOutcome::Completed if s.exact_match => ("MATCH", Color::Green),
        GenerationOutcome::Completed => ("MISMATCH", Color::Red),
        GenerationOutcome::TimedOut => ("TIMEOUT", Color::Yellow),
        GenerationOutcome::Aborted => ("ABORTED", Color::Yellow),
        GenerationOutcome::Error { .. } => ("ERROR", Color::Red),
    };
    let first = Line::from(vec![
        Span::styled(
            format!("{label:<8} "),
            fg(app, color).add_modifier(Modifier::BOLD),
        ),
        Span::styled(format!("@{} ", s.step), dim(app)),
        Span::raw(one_line(&s.prompt)),
        Span::styled(" → ", dim(app)),
        Span::raw(one_line(&s.output)),
    ]);
    let loss = s.loss.map_or_else(|| "-".to_owned(), |l| format!("{l:.3}"));
    let detail = match &s.outcome {
        GenerationOutcome::Error { message } => format!("error: {message}"),
        _ => format!(
            "golden {} · {} tok · {:.3}s · loss {loss} · {}",
            one_line(&s.golden),
            s.output_tokens,
            s.elapsed_secs,
            s.origin
        ),
    };
    [
        first,
        Line::from(Span::styled(format!("         {detail}"), dim(app))),
    ]
}

fn dim(app: &App) -> Style {
    fg(app, Color::DarkGray)
}

/// The start of `text` on one line.
fn one_line(text: &str) -> String {
    let flat = text.replace('\n', "⏎");
    if flat.chars().count() <= 200 {
        return flat;
    }
    flat.chars().take(200).chain(std::iter::once('…')).collect()
}

/// The last `max` characters of `text`.
fn tail(text: &str, max: usize) -> String {
    let count = text.chars().count();
    if count <= max {
        return text.to_owned();
    }
    let kept: String = text.chars().skip(count - max).collect();
    format!("…{kept}")
}
