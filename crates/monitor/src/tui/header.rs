//! Run name, state and clocks; the current numbers; progress, or the
//! banner of what needs attention.
//!
//! ```text
//!  trainui demo-run cpu  TRAINING        elapsed 0:01:08 · eta 0:01:08 · updated 3s ago
//!  loss 0.758 · val 0.537 (best 0.510 @463) · grad 0.81 · 15,234 tok/s · lr 5.00e-4
//!  step 1500/3000  50% ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━──────────────────────────────
//! ```

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::app::{App, Owner};
use super::theme::{bar, dim, fg, sep, state_style};
use trainui_protocol::events::RunState;
use trainui_protocol::lines::{ago, duration, thousands};

/// Rows the header takes.
pub const HEIGHT: u16 = 3;
/// Silence after which "updated … ago" turns yellow on a running run.
pub(super) const QUIET_SECS: f64 = 60.0;

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let [title_area, numbers_area, progress_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    render_title(frame, title_area, app);
    frame.render_widget(
        Paragraph::new(numbers(app, numbers_area.width)),
        numbers_area,
    );
    if let Some(banner) = banner(app) {
        frame.render_widget(Paragraph::new(banner), progress_area);
    } else {
        render_progress(frame, progress_area, app);
    }
}

fn render_title(frame: &mut Frame, area: Rect, app: &App) {
    let state = app.run.status.state;
    let (state_text, look) = if app.process.gone.is_some() {
        (
            "GONE".to_owned(),
            fg(app, Color::Red).add_modifier(Modifier::BOLD),
        )
    } else if let (Some(status), false) = (app.process.job_status, state.is_final()) {
        // The job ended without a final state: its state is its exit.
        let color = if status == 0 {
            Color::Reset
        } else {
            Color::Red
        };
        (
            format!("EXITED {status}"),
            fg(app, color).add_modifier(Modifier::BOLD),
        )
    } else {
        (state.as_str().to_uppercase(), state_style(app, state))
    };
    let mut left = vec![
        Span::styled(
            " trainui ",
            fg(app, Color::Cyan).add_modifier(Modifier::BOLD),
        ),
        Span::styled(app.run.status.run_name.clone(), Modifier::BOLD),
        Span::styled(producer(app), dim(app)),
        Span::raw("  "),
        Span::styled(state_text, look),
    ];
    if let (Some(since), RunState::Paused) = (app.run.paused_since, state) {
        left.push(Span::styled(
            format!(" {}", duration(app.secs_since(since))),
            look,
        ));
    }

    let running = app.running();
    let mut right = vec![
        Span::styled("elapsed ", dim(app)),
        Span::raw(duration(app.elapsed_secs())),
    ];
    let training = matches!(state, RunState::Training | RunState::Evaluating);
    if let (true, true, Some(eta)) = (running, training, app.eta_secs()) {
        right.push(Span::styled(format!("{}eta ", sep(app)), dim(app)));
        right.push(Span::raw(duration(eta)));
    }
    let waiting = app.run.last_event_at.is_none() && running;
    if waiting {
        // Nothing has come yet: say what the screen waits for, and how long
        // it has, so that a job writing elsewhere is not taken for a slow one.
        right.push(Span::styled(
            format!(
                "{}waiting for its first event {} ",
                sep(app),
                duration(app.secs_since(app.since))
            ),
            fg(app, Color::Yellow),
        ));
    }
    if let Some(at) = app.run.last_event_at {
        let quiet = app.secs_since(at);
        let word = if running { "updated" } else { "ended" };
        let style = if running && state != RunState::Paused && quiet > QUIET_SECS {
            fg(app, Color::Yellow).add_modifier(Modifier::BOLD)
        } else {
            dim(app)
        };
        right.push(Span::styled(
            format!("{}{word} {} ", sep(app), ago(quiet)),
            style,
        ));
    }
    // The run and its state come first; the clocks give way, the age of
    // the news first, when the row is too narrow for both.
    let left = Line::from(left);
    let room = usize::from(area.width).saturating_sub(left.width());
    let width = |spans: &[Span]| spans.iter().map(Span::width).sum::<usize>();
    if width(&right) > room && (app.run.last_event_at.is_some() || waiting) {
        right.pop();
    }
    if width(&right) > room && right.len() == 4 {
        // The ETA: its label and its value.
        right.truncate(2);
    }
    let right = Line::from(right).right_aligned();
    let [left_area, right_area] =
        Layout::horizontal([Constraint::Length(left.width() as u16), Constraint::Fill(1)])
            .areas(area);
    frame.render_widget(Paragraph::new(left), left_area);
    frame.render_widget(Paragraph::new(right), right_area);
}

/// A loss to four significant figures or so: `0.758`, `12.34`.
#[must_use]
pub fn loss(value: f64) -> String {
    match value.abs() {
        v if !v.is_finite() => format!("{value}"),
        v if v >= 100.0 => format!("{value:.1}"),
        v if v >= 10.0 => format!("{value:.2}"),
        _ => format!("{value:.3}"),
    }
}

/// The current numbers, each whole: those that do not fit in `width` are
/// left out from the right (learning rate first, loss last).
fn numbers(app: &App, width: u16) -> Line<'static> {
    let s = &app.run.status;
    let label = |text: &str| Span::styled(text.to_owned(), dim(app));
    let mut groups = vec![vec![
        Span::raw(" "),
        label("loss "),
        match s.loss {
            Some(value) if !value.is_finite() => Span::styled(
                loss(value),
                fg(app, Color::Red).add_modifier(Modifier::BOLD),
            ),
            Some(value) => Span::styled(loss(value), Modifier::BOLD),
            None => Span::raw("-"),
        },
    ]];
    if let Some(val) = s.val_loss {
        let mut group = vec![
            label(&format!("{}val ", sep(app))),
            Span::styled(loss(val), Modifier::BOLD),
        ];
        if let Some((best, step)) = app.run.best_val {
            group.push(label(&format!(" (best {} @{step})", loss(best))));
        }
        groups.push(group);
    }
    if let Some(norm) = app.run.grad_norm {
        groups.push(vec![
            label(&format!("{}grad ", sep(app))),
            Span::raw(loss(norm)),
        ]);
    }
    let training = matches!(s.state, RunState::Training | RunState::Evaluating);
    // A job that counts no tokens (not a language model) shows no rate.
    if let (true, true, Some(rate)) = (training, app.running(), s.tokens_per_sec)
        && rate > 0.0
    {
        groups.push(vec![
            Span::raw(format!("{}{} ", sep(app), thousands(rate.round() as u64))),
            label("tok/s"),
        ]);
    }
    if let Some(lr) = s.learning_rate {
        groups.push(vec![
            label(&format!("{}lr ", sep(app))),
            Span::raw(format!("{lr:.2e}")),
        ]);
    }
    let mut spans = Vec::new();
    let mut used = 0;
    for group in groups {
        let wide: usize = group.iter().map(Span::width).sum();
        if used + wide > usize::from(width) && !spans.is_empty() {
            break;
        }
        used += wide;
        spans.extend(group);
    }
    Line::from(spans)
}

fn render_progress(frame: &mut Frame, area: Rect, app: &App) {
    let s = &app.run.status;
    let ratio = (s.current_step as f64 / s.max_steps.max(1) as f64).clamp(0.0, 1.0);
    let label = format!(
        " step {}/{} {:>3.0}% ",
        s.current_step,
        s.max_steps,
        100.0 * ratio
    );
    let width = usize::from(area.width)
        .saturating_sub(label.chars().count() + 1)
        .max(1);
    let mut spans = vec![Span::raw(label)];
    spans.extend(bar(app, ratio, width, Color::Green));
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// What needs attention, in place of the progress bar: the process gone,
/// a rank holding the others up, a stall, a failure.
fn banner(app: &App) -> Option<Line<'static>> {
    let alarm = |text: String, color: Color| {
        Some(Line::from(text).style(fg(app, color).add_modifier(Modifier::BOLD)))
    };
    if let Some(gone) = &app.process.gone {
        let checkpoint = gone.last_checkpoint.as_deref().map_or_else(
            || " (no checkpoint yet)".to_owned(),
            |path| {
                let name = std::path::Path::new(path).file_name().unwrap_or_default();
                format!(" (from {})", name.to_string_lossy())
            },
        );
        return alarm(
            format!(
                " GONE since {}{}resume: {}{checkpoint}{}process {} ended without a final state",
                since(app, &gone.since),
                sep(app),
                gone.resume,
                sep(app),
                gone.pid
            ),
            Color::Red,
        );
    }
    if !app.running() {
        return ended_banner(app).map(|(text, color)| {
            Line::from(text).style(fg(app, color).add_modifier(Modifier::BOLD))
        });
    }
    if let Some(view) = trainui_protocol::ranks::first_stuck(&app.process.ranks) {
        let beat = &view.beat;
        return alarm(
            format!(
                " RANK {} {} since {}{}{} at step {}{}{} pid {}{}the other ranks wait for it",
                beat.rank,
                view.verdict.as_str(),
                since(app, &beat.beat),
                sep(app),
                beat.phase.as_str(),
                beat.step,
                sep(app),
                beat.host,
                beat.pid,
                sep(app),
            ),
            Color::Red,
        );
    }
    if let Some(stall) = &app.run.stall {
        let then = after_stall(app);
        return alarm(
            format!(
                " STALLED for {} at step {} ({}){}{then}",
                duration(app.secs_since(stall.since)),
                stall.step,
                stall.phase.as_str(),
                sep(app),
            ),
            Color::Magenta,
        );
    }
    if let Some(failure) = &app.run.failure {
        return alarm(format!(" FAILED: {failure}"), Color::Red);
    }
    None
}

/// What comes of a stall, for whose run it is: `r` for trainui's own
/// trainer; trainui's restart of a job started with `--restart-on-stall`;
/// else no promise of a restart that nothing makes.
fn after_stall(app: &App) -> String {
    let foreign = app
        .run
        .status
        .producer
        .as_ref()
        .is_some_and(|p| p.name != "trainui");
    match (app.owner, app.restart_point()) {
        (Owner::Trainer, Some(path)) => {
            let name = std::path::Path::new(path).file_name().unwrap_or_default();
            format!("r restarts from {}", name.to_string_lossy())
        }
        (Owner::Trainer, None) => "no checkpoint yet; q stops it".to_owned(),
        (Owner::Job, _) => match app.restarts_on_stall {
            Some(times) if times > 0 => format!(
                "trainui restarts the job from its latest checkpoint when it exits \
                 (--restart-on-stall {times})"
            ),
            _ => "nothing restarts this job; q stops it".to_owned(),
        },
        (Owner::Watcher, _) if foreign => {
            "a job restarts only under trainui run --restart-on-stall; q leaves it".to_owned()
        }
        (Owner::Watcher, _) => {
            "a supervisor with --resume auto restarts it, if one runs it; q leaves it".to_owned()
        }
    }
}

/// The banner of a run that has ended (or whose job has): how it ended,
/// and the rank that ended first when one went before the others. Never
/// what the ranks wait for, nor what a stall leads to: that is over.
fn ended_banner(app: &App) -> Option<(String, Color)> {
    let first = trainui_protocol::ranks::first_stuck(&app.process.ranks).map(|view| {
        let beat = &view.beat;
        format!(
            "{}rank {} {} first, {} at step {} (pid {})",
            sep(app),
            beat.rank,
            if view.verdict == trainui_protocol::ranks::Verdict::Gone {
                "ended without a word"
            } else {
                "fell silent"
            },
            beat.phase.as_str(),
            beat.step,
            beat.pid,
        )
    });
    let stalled = app.run.stall.as_ref().map(|stall| {
        format!(
            "{}it had stalled at step {} ({})",
            sep(app),
            stall.step,
            stall.phase.as_str()
        )
    });
    let context = format!(
        "{}{}",
        stalled.unwrap_or_default(),
        first.unwrap_or_default()
    );
    if let Some(failure) = &app.run.failure {
        return Some((format!(" FAILED: {failure}{context}"), Color::Red));
    }
    let status = app.process.job_status?;
    if app.run.status.state.is_final() && context.is_empty() {
        return None;
    }
    let color = if status == 0 && context.is_empty() {
        Color::Reset
    } else {
        Color::Red
    };
    Some((
        format!(
            " the job exited with status {status} at step {}{context}",
            app.run.status.current_step
        ),
        color,
    ))
}

/// An RFC 3339 time as `HH:MM:SS UTC (N ago)`, or as it is when it does not
/// parse.
fn since(app: &App, time: &str) -> String {
    let Ok(when) = humantime::parse_rfc3339_weak(time) else {
        return time.to_owned();
    };
    let clock = time.get(11..19).unwrap_or(time);
    format!("{clock} UTC ({})", ago(app.secs_since(when)))
}

/// Who writes the run, when it is not trainui's own trainer: ` transformers ×2`.
fn producer(app: &App) -> String {
    let device = if app.run.status.device.is_empty() {
        String::new()
    } else {
        format!(" {}", app.run.status.device)
    };
    let producer = app.run.status.producer.as_ref();
    match producer.filter(|p| p.name != "trainui") {
        Some(p) if p.world_size > 1 => format!(" {} ×{}{device}", p.framework, p.world_size),
        Some(p) => format!(" {}{device}", p.framework),
        None => device,
    }
}
