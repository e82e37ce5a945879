//! Run name, state, progress, speed and device.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier};
use ratatui::text::{Line, Span};
use ratatui::widgets::{LineGauge, Paragraph};

use super::app::App;
use super::theme::{fg, state_style};
use crate::events::RunState;
use crate::lines::{duration, thousands};

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let [title_area, progress_area] =
        Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(area);
    let dim = fg(app, Color::DarkGray);
    let eta = match app.status.state {
        RunState::Finished => "done".to_owned(),
        _ if app.gone.is_some() => "-".to_owned(),
        _ => app.status.eta_secs.map_or_else(|| "-".to_owned(), duration),
    };
    let (state, look) = if app.gone.is_some() {
        (
            "GONE".to_owned(),
            fg(app, Color::Red).add_modifier(Modifier::BOLD),
        )
    } else {
        (
            app.status.state.as_str().to_uppercase(),
            state_style(app, app.status.state),
        )
    };
    let title = Line::from(vec![
        Span::styled(
            " trainui ",
            fg(app, Color::Cyan).add_modifier(Modifier::BOLD),
        ),
        Span::styled(app.status.run_name.clone(), Modifier::BOLD),
        Span::styled(producer(app), dim),
        Span::raw("  "),
        Span::styled(state, look),
        Span::styled("  elapsed ", dim),
        Span::raw(duration(app.status.elapsed_secs)),
        Span::styled("  eta ", dim),
        Span::raw(eta),
    ]);
    frame.render_widget(Paragraph::new(title), title_area);

    if let Some(gone) = &app.gone {
        let checkpoint = gone.last_checkpoint.as_deref().map_or_else(
            || " (no checkpoint yet)".to_owned(),
            |path| {
                let name = std::path::Path::new(path).file_name().unwrap_or_default();
                format!(" (from {})", name.to_string_lossy())
            },
        );
        let line = Line::from(format!(
            " GONE since {} · resume: {}{checkpoint} · process {} ended without a final state",
            since(&gone.since),
            gone.resume,
            gone.pid
        ))
        .style(fg(app, Color::Red).add_modifier(Modifier::BOLD));
        frame.render_widget(Paragraph::new(line), progress_area);
        return;
    }
    if let Some(view) = crate::ranks::first_stuck(&app.ranks) {
        let beat = &view.beat;
        let line = Line::from(format!(
            " RANK {} {} since {} · {} at step {} · {} pid {} · the other ranks wait for it",
            beat.rank,
            view.verdict.as_str(),
            since(&beat.beat),
            beat.phase.as_str(),
            beat.step,
            beat.host,
            beat.pid,
        ))
        .style(fg(app, Color::Red).add_modifier(Modifier::BOLD));
        frame.render_widget(Paragraph::new(line), progress_area);
        return;
    }
    if let Some(stall) = &app.stall {
        let line = Line::from(format!(
            " STALLED: {stall} · r restarts from the latest checkpoint"
        ))
        .style(fg(app, Color::Magenta).add_modifier(Modifier::BOLD));
        frame.render_widget(Paragraph::new(line), progress_area);
        return;
    }
    if let Some(failure) = &app.failure {
        let line = Line::from(format!(" FAILED: {failure}"))
            .style(fg(app, Color::Red).add_modifier(Modifier::BOLD));
        frame.render_widget(Paragraph::new(line), progress_area);
        return;
    }
    let speed = app
        .status
        .tokens_per_sec
        .map_or_else(|| "-".to_owned(), |t| thousands(t.round() as u64));
    let lr = app
        .status
        .learning_rate
        .map_or_else(|| "-".to_owned(), |lr| format!("{lr:.2e}"));
    let info = format!(
        "{speed} tok/s · lr {lr} · {} ",
        if app.status.device.is_empty() {
            "-"
        } else {
            &app.status.device
        }
    );
    let [gauge_area, info_area] = Layout::horizontal([
        Constraint::Fill(1),
        Constraint::Length(info.chars().count() as u16 + 1),
    ])
    .areas(progress_area);
    let ratio =
        (app.status.current_step as f64 / app.status.max_steps.max(1) as f64).clamp(0.0, 1.0);
    let gauge = LineGauge::default()
        .ratio(ratio)
        .label(format!(
            " step {}/{} {:>3.0}%",
            app.status.current_step,
            app.status.max_steps,
            100.0 * ratio
        ))
        .filled_style(fg(app, Color::Green))
        .unfilled_style(dim);
    frame.render_widget(gauge, gauge_area);
    frame.render_widget(Paragraph::new(Line::from(info).right_aligned()), info_area);
}

/// An RFC 3339 time as `HH:MM:SS UTC (N ago)`, or as it is when it does not
/// parse.
fn since(time: &str) -> String {
    let Ok(when) = humantime::parse_rfc3339_weak(time) else {
        return time.to_owned();
    };
    let clock = time.get(11..19).unwrap_or(time);
    let ago = std::time::SystemTime::now()
        .duration_since(when)
        .map_or(0.0, |d| d.as_secs_f64());
    format!("{clock} UTC ({} ago)", duration(ago))
}

/// Who writes the run, when it is not trainui's own trainer: ` transformers ×2`.
fn producer(app: &App) -> String {
    match app.status.producer.as_ref().filter(|p| p.name != "trainui") {
        Some(p) if p.world_size > 1 => format!(" {} ×{}", p.framework, p.world_size),
        Some(p) => format!(" {}", p.framework),
        None => String::new(),
    }
}
