//! The generation in progress with its deadline countdown, then the
//! samples: a line per evaluation and two per sample, oldest first, the
//! newest at the bottom (followed unless the user is reading older ones).

use std::fmt::Write as _;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use super::app::{App, Owner};
use super::header::loss;
use super::run_data::{EvalView, LiveGeneration};
use super::theme::{bar, dim, ellipsis, fg, pane, sep};
use super::view_state::Focus;
use trainui_protocol::events::{GenerationOutcome, SampleResult};

/// Whether the run has anything for this pane and the counters: it is
/// trainui's own trainer's (a language model that generates at each
/// evaluation, from its start), or it has generated (a sample, a
/// generation in progress or counted, an evaluation with samples). A job
/// that logs a loss and nothing more has neither pane.
#[must_use]
pub fn has_content(app: &App) -> bool {
    let run = &app.run;
    let own_trainer = match &run.status.producer {
        Some(producer) => producer.name == "trainui",
        // Runs of the first schemas name no producer: all are trainui's
        // trainer's, which names its device as it starts. A job that
        // logs steps without starting names neither.
        None => app.owner == Owner::Trainer || !run.status.device.is_empty(),
    };
    own_trainer
        || !run.samples.is_empty()
        || run.live.is_some()
        || run.status.generations > 0
        || run.evals.iter().any(|eval| eval.samples > 0)
}

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let count = app.run.samples.len();
    let title = if count == 0 {
        " eval ".to_owned()
    } else {
        let at = app.view.samples.cursor.map_or(count, |c| c + 1);
        let noun = if count == 1 { "sample" } else { "samples" };
        format!(" eval · {at}/{count} {noun} · Enter opens ")
    };
    let mut block = pane(app, title, app.view.focus == Focus::Samples);
    if app.view.samples.unseen > 0 {
        let arrow = if app.view.ascii { "v" } else { "↓" };
        block = block.title_bottom(
            Line::from(Span::styled(
                format!(" {arrow} {} new (End) ", app.view.samples.unseen),
                fg(app, Color::Yellow).add_modifier(Modifier::BOLD),
            ))
            .right_aligned(),
        );
    }
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let list_area = if let Some(live) = &app.run.live {
        let live_height = (inner.height / 2).max(4);
        let [live_area, rest] =
            Layout::vertical([Constraint::Length(live_height), Constraint::Fill(1)]).areas(inner);
        render_live(frame, live_area, app, live);
        rest
    } else {
        inner
    };
    let mut geometry = app.view.geometry.get();
    geometry.sample_rows = list_area.height;
    app.view.geometry.set(geometry);
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
            "{}/{}{}{}{}{} tokens",
            start.sample,
            start.of,
            sep(app),
            start.origin,
            sep(app),
            live.tokens
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
    let label = format!(" {:.1}s / {}s", live.elapsed_secs, start.timeout_secs);
    let width = usize::from(gauge_area.width).saturating_sub(label.len());
    let mut spans = bar(app, ratio, width, color);
    spans.push(Span::raw(label));
    frame.render_widget(Paragraph::new(Line::from(spans)), gauge_area);
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
            Span::raw(tail(app, &live.text, 2000)),
        ]),
    ];
    frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: false }), text_area);
}

fn render_samples(frame: &mut Frame, area: Rect, app: &App) {
    let (run, cursor) = (&app.run, app.view.samples.cursor);
    if run.samples.is_empty() && run.evals.is_empty() {
        let note = if run.live.is_some() {
            ""
        } else {
            "no samples yet: e evaluates now"
        };
        frame.render_widget(Paragraph::new(note).style(dim(app)), area);
        return;
    }
    let selected = cursor.or_else(|| run.samples.len().checked_sub(1));
    let mut lines = Vec::new();
    let mut selected_line = 0;
    // Every evaluation since the oldest sample kept (those without samples
    // too), each with its samples.
    let oldest = run.samples.front().map_or(0, |s| s.result.step);
    let mut steps: Vec<u64> = run
        .evals
        .iter()
        .map(|e| e.step)
        .filter(|&step| step >= oldest)
        .chain(run.samples.iter().map(|s| s.result.step))
        .collect();
    steps.sort_unstable();
    steps.dedup();
    let mut next = run.samples.iter().enumerate().peekable();
    for step in steps {
        let eval = run.evals.iter().rev().find(|e| e.step == step);
        lines.push(eval_line(app, step, eval));
        while let Some((index, sample)) = next.next_if(|(_, s)| s.result.step == step) {
            if Some(index) == selected {
                selected_line = lines.len();
            }
            lines.extend(sample_lines(app, &sample.result, Some(index) == selected));
        }
    }
    let rows = usize::from(area.height);
    let bottom = lines.len().saturating_sub(rows);
    let start = if cursor.is_none() {
        bottom
    } else {
        selected_line.saturating_sub(rows / 3).min(bottom)
    };
    let shown: Vec<Line> = lines.into_iter().skip(start).take(rows).collect();
    frame.render_widget(Paragraph::new(shown), area);
}

/// One line for an evaluation: `eval 2 @1500 · val 0.537 · 3/4 matched · 1 timeout`.
fn eval_line(app: &App, step: u64, eval: Option<&EvalView>) -> Line<'static> {
    let Some(eval) = eval else {
        return Line::from(Span::styled(format!("@{step}"), dim(app)));
    };
    let s = sep(app);
    let mut text = format!("eval {} @{}", eval.eval, eval.step);
    if let Some(val) = eval.val_loss {
        let _ = write!(text, "{s}val {}", loss(val));
    }
    let mut problems = Vec::new();
    for (count, one, many) in [
        (eval.timeouts, "timeout", "timeouts"),
        (eval.aborts, "abort", "aborts"),
        (eval.errors, "error", "errors"),
    ] {
        match count {
            0 => {}
            1 => problems.push(format!("1 {one}")),
            n => problems.push(format!("{n} {many}")),
        }
    }
    if let Some(summary) = &eval.summary {
        // An evaluation without samples (a validation loss alone) matched
        // nothing because it generated nothing: no count to show.
        if summary.samples > 0 {
            let _ = write!(text, "{s}{}/{} matched", summary.matches, summary.samples);
        }
    } else if eval.samples == 0 {
        let _ = write!(text, "{s}running");
    } else {
        let done = app
            .run
            .samples
            .iter()
            .filter(|x| x.result.step == eval.step)
            .count();
        let _ = write!(text, "{s}running {done}/{}", eval.samples);
    }
    for problem in problems {
        let _ = write!(text, "{s}{problem}");
    }
    let style = if eval.timeouts + eval.errors > 0 {
        fg(app, Color::Red).add_modifier(Modifier::BOLD)
    } else {
        fg(app, Color::Cyan).add_modifier(Modifier::BOLD)
    };
    Line::from(Span::styled(text, style))
}

/// The label and colour of a sample's outcome.
#[must_use]
pub fn outcome(sample: &SampleResult) -> (&'static str, Color) {
    match &sample.outcome {
        GenerationOutcome::Completed if sample.exact_match => ("MATCH", Color::Green),
        GenerationOutcome::Completed => ("MISMATCH", Color::Red),
        GenerationOutcome::TimedOut => ("TIMEOUT", Color::Red),
        GenerationOutcome::Aborted => ("ABORTED", Color::Yellow),
        GenerationOutcome::Error { .. } => ("ERROR", Color::Magenta),
    }
}

fn sample_lines(app: &App, s: &SampleResult, selected: bool) -> [Line<'static>; 2] {
    let (label, color) = outcome(s);
    let arrow = if app.view.ascii { " -> " } else { " → " };
    let gutter = match (selected, app.view.ascii) {
        (false, _) => "  ",
        (true, true) => "> ",
        (true, false) => "› ",
    };
    let mut label_style = fg(app, color).add_modifier(Modifier::BOLD);
    if selected && app.view.focus == Focus::Samples {
        label_style = label_style.add_modifier(Modifier::REVERSED);
    }
    let first = Line::from(vec![
        Span::raw(gutter),
        Span::styled(format!("{label:<8}"), label_style),
        Span::raw(" "),
        Span::raw(one_line(app, &s.prompt)),
        Span::styled(arrow, dim(app)),
        Span::raw(one_line(app, &s.output)),
    ]);
    let sep = sep(app);
    let detail = match &s.outcome {
        GenerationOutcome::Error { message } => format!("error: {message}"),
        _ => format!(
            "loss {}{sep}{} tok{sep}{:.3}s{sep}golden {}",
            s.loss.map_or_else(|| "-".to_owned(), loss),
            s.output_tokens,
            s.elapsed_secs,
            one_line(app, &s.golden),
        ),
    };
    [
        first,
        Line::from(Span::styled(format!("    {detail}"), dim(app))),
    ]
}

/// The start of `text` on one line.
fn one_line(app: &App, text: &str) -> String {
    let flat = text.replace('\n', if app.view.ascii { "~" } else { "⏎" });
    if flat.chars().count() <= 200 {
        return flat;
    }
    flat.chars()
        .take(200)
        .chain(ellipsis(app).chars())
        .collect()
}

/// The last `max` characters of `text`.
fn tail(app: &App, text: &str, max: usize) -> String {
    let count = text.chars().count();
    if count <= max {
        return text.to_owned();
    }
    let kept: String = text.chars().skip(count - max).collect();
    format!("{}{kept}", ellipsis(app))
}
