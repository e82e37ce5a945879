//! The job's own output (`job_output.log`): its newest lines in a pane,
//! and the whole tail read, full screen, scrollable, following new lines
//! at the bottom unless scrolled back. The lines were escaped as they were
//! read (`job_output.rs`); here they are only wrapped.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier};
use ratatui::text::Line;
use ratatui::widgets::{Clear, Paragraph};

use trainui_protocol::events::RunState;
use trainui_protocol::text;

use super::app::App;
use super::job_output::LINES_KEPT;
use super::theme::{dim, fg, pane, sep};
use super::view_state::Overlay;
use super::wrap::wrap;

/// Whether the run ended badly: the job exited with a failing status, the
/// run failed, or its process is gone.
#[must_use]
pub fn ended_badly(app: &App) -> bool {
    app.process.job_status.is_some_and(|status| status != 0)
        || app.run.status.state == RunState::Failed
        || app.process.gone.is_some()
}

impl App {
    /// Opens the job's output full screen, following its newest lines;
    /// says why not when there is none.
    pub(super) fn open_output(&mut self) {
        let Some(path) = self.output.path() else {
            self.say("this run has no job output: trainui's own trainer shows everything here");
            return;
        };
        if !self.output.is_shown() {
            let when = if self.process.job_status.is_some() || self.run.status.state.is_final() {
                "the job wrote no output"
            } else {
                "no output yet"
            };
            let text = format!("{when} in {}", path.display());
            self.say(text);
            return;
        }
        self.view.output_top = None;
        self.view.overlay = Overlay::Output;
    }

    /// What the farewell adds about the job's output when the run ended
    /// badly: where it is, and its last line.
    #[must_use]
    pub fn output_note(&self) -> Option<String> {
        let path = self.output.path()?;
        if !ended_badly(self) || std::fs::symlink_metadata(path).is_err() {
            return None;
        }
        let shown = text::escape(&path.display().to_string()).into_owned();
        Some(match self.output.last_line() {
            Some(last) => format!("; its output is in {shown} (last line: {})", last.trim()),
            None => format!("; its output is in {shown}"),
        })
    }
}

/// The pane: the newest lines that fit, the last at the bottom.
pub fn render_pane(frame: &mut Frame, area: Rect, app: &App) {
    let failed = ended_badly(app);
    let title = if failed {
        format!(
            " output{}the job failed{}O full screen ",
            sep(app),
            sep(app)
        )
    } else {
        format!(" output{}O full screen ", sep(app))
    };
    let mut block = pane(app, title, false);
    if failed {
        block = block.border_style(fg(app, Color::Red).add_modifier(Modifier::BOLD));
    }
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if let Some(problem) = &app.output.problem {
        frame.render_widget(
            Paragraph::new(problem.clone())
                .style(fg(app, Color::Yellow))
                .wrap(ratatui::widgets::Wrap { trim: false }),
            inner,
        );
        return;
    }
    let lines = app.output.lines();
    let rows = usize::from(inner.height);
    let width = usize::from(inner.width.max(8));
    let mut shown: Vec<String> = Vec::new();
    for line in lines.iter().rev() {
        if shown.len() >= rows {
            break;
        }
        shown.extend(wrap(line, width).into_iter().rev());
    }
    shown.truncate(rows);
    shown.reverse();
    let text: Vec<Line> = shown.into_iter().map(Line::from).collect();
    frame.render_widget(Paragraph::new(text), inner);
}

/// Full screen over the panes.
pub fn render_full(frame: &mut Frame, area: Rect, app: &App) {
    frame.render_widget(Clear, area);
    let output = &app.output;
    let path = output
        .path()
        .map(|p| trainui_protocol::text::escape(&p.display().to_string()).into_owned())
        .unwrap_or_default();
    let block = pane(app, format!(" output{}{path} ", sep(app)), true);
    let inner = block.inner(area);
    let rows = usize::from(inner.height);
    let width = usize::from(inner.width.max(8));
    let lines = output.lines();
    let first = output.first_number();
    let last = first + lines.len() as u64;
    // The top that shows the newest line at the bottom.
    let mut newest_top = last;
    let mut filled = 0;
    for (index, line) in lines.iter().enumerate().rev() {
        filled += wrap(line, width).len();
        if filled > rows && newest_top < last {
            break;
        }
        newest_top = first + index as u64;
    }
    let top = app
        .view
        .output_top
        .unwrap_or(newest_top)
        .clamp(first, newest_top.max(first));
    let mut geometry = app.view.geometry.get();
    geometry.output_rows = inner.height;
    geometry.output_top = top;
    geometry.output_newest_top = newest_top;
    app.view.geometry.set(geometry);

    let mut text: Vec<Line> = Vec::new();
    let mut bottom = top;
    let skip = usize::try_from(top - first).unwrap_or(usize::MAX);
    if top == first && output.is_cut() {
        text.push(
            Line::from(format!(
                "(earlier output is not shown: the last {LINES_KEPT} lines read are)"
            ))
            .style(dim(app)),
        );
    }
    for line in lines.iter().skip(skip) {
        if text.len() >= rows {
            break;
        }
        text.extend(wrap(line, width).into_iter().map(Line::from));
        bottom += 1;
    }
    text.truncate(rows);
    let position = if lines.is_empty() {
        " nothing yet ".to_owned()
    } else {
        let follow = if app.view.output_top.is_none() {
            format!("{}follows", sep(app))
        } else {
            format!("{}End follows", sep(app))
        };
        format!(
            " {}-{}/{}{follow}{}Esc closes ",
            top + 1,
            bottom,
            last,
            sep(app)
        )
    };
    let block = block.title_bottom(Line::from(position).right_aligned());
    frame.render_widget(Paragraph::new(text).block(block), area);
}
