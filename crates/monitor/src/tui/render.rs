//! Draws the whole screen from `&App`; nothing here changes state.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Wrap};

use super::app::{App, JOB_KILL_AFTER, Owner};
use super::board::Board;
use super::keys::{self, Context, WITHOUT_KEY};
use super::theme::{asciify, dim, fg, key, pane, run_color};
use super::view_state::Overlay;
use super::{compare, counters, detail, eval, footer, header, log, logview, loss};
use super::{output, system, table};

/// Smallest screen the layout fits.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 18;

/// The full layout:
///
/// ```text
/// header   run · state · clocks / loss · val · rates / progress or banner
/// ┌ loss ──────────────────────────┐┌ system ────────────┐
/// │ legend with the latest values  ││ GPU or CPU load    │
/// │ raw, smoothed, validation      ││ ranks of a job     │
/// └────────────────────────────────┘└────────────────────┘
/// ┌ eval ──────────────────────────┐┌ counters ──────────┐
/// │ live generation, countdown     │└────────────────────┘
/// │ evaluations and their samples  │┌ events ────────────┐
/// └────────────────────────────────┘└────────────────────┘
/// footer   keys of the screen in use · latest answer
/// ```
///
/// A run that generates nothing (no samples, no generation counted: a
/// loop that logs its loss) has no eval or counters pane until it does:
/// the chart and the log take their room, and a job's own output
/// (`job_output.log`, see `output.rs`) is shown under the chart:
///
/// ```text
/// ┌ loss ──────────────────────────┐┌ system ────────────┐
/// │ taller                         ││                    │
/// │                                │└────────────────────┘
/// └────────────────────────────────┘┌ events ────────────┐
/// ┌ output ────────────────────────┐│ taller             │
/// │ the job's newest lines         ││                    │
/// └────────────────────────────────┘└────────────────────┘
/// ```
///
/// Once a job has failed, its output is shown whatever it generates (under
/// the samples of one that does), with more room.
///
/// Over it: the help, a question, a sample whole, the log or the job's
/// output full screen.
/// In the ASCII look, the finished frame is made ASCII last. Whatever the
/// look, no cell reaches the terminal with a character that could drive it.
pub fn render(frame: &mut Frame, app: &App) {
    draw(frame, app, None);
    finish(frame, app);
}

/// The screen of a board: one run as [`render`] draws it; several with
/// their curves in one chart and their table above the followed run's
/// panes:
///
/// ```text
/// header   the followed run
/// ┌ loss · 3 of 3 runs ───────────────────────────────────┐
/// │ each shown run's smoothed loss, in its colour         │
/// └───────────────────────────────────────────────────────┘
/// ┌ runs ─────────────────────────────────────────────────┐
/// │ ▶ one row per run: state, step, losses, rates         │
/// └───────────────────────────────────────────────────────┘
/// eval · counters · events of the followed run
/// footer   ▶ the followed run · keys · latest answer
/// ```
///
/// The chart keeps [`CURVE_ROWS`] rows of curves at any size; on a small
/// screen the table shrinks (it scrolls) and the followed run's panes go.
/// Over it all, `d` opens the settings that differ among the runs.
pub fn render_board(frame: &mut Frame, board: &Board) {
    let app = board.followed();
    draw(frame, app, board.compares().then_some(board));
    if board.compares() && board.diff_open() {
        let area = frame.area();
        if area.width >= MIN_WIDTH && area.height >= MIN_HEIGHT {
            let above_footer = Rect {
                height: area.height - 1,
                ..area
            };
            compare::render_diff(frame, above_footer, board);
        }
    }
    finish(frame, app);
}

/// The last touches of a frame: the ASCII look, then the backstop. Texts
/// from a run are escaped as the app takes them in; a cell that still holds
/// a control character, a bidirectional override or a line separator (a
/// text that came by another way) is drawn as `?` instead.
fn finish(frame: &mut Frame, app: &App) {
    let buffer = frame.buffer_mut();
    if app.view.ascii {
        asciify(buffer);
    }
    for cell in &mut buffer.content {
        if cell.symbol().chars().any(trainui_protocol::text::is_unsafe) {
            cell.set_symbol("?");
        }
    }
}

fn draw(frame: &mut Frame, app: &App, board: Option<&Board>) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        render_too_small(frame, area);
        return;
    }
    let [header_area, body, footer_area] = Layout::vertical([
        Constraint::Length(header::HEIGHT),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(area);
    let generates = eval::has_content(app);
    header::render(frame, header_area, app);
    if let Some(board) = board {
        let (chart, rows, lower) = board_heights(body.height, board.runs.len());
        let [chart_area, table_area, bottom] = Layout::vertical([
            Constraint::Length(chart),
            Constraint::Length(rows),
            Constraint::Length(lower),
        ])
        .areas(body);
        compare::render(frame, chart_area, board);
        table::render(frame, table_area, board);
        if lower == 0 {
            // No room for the followed run's panes: the chart and the
            // table come first.
        } else if generates {
            draw_generation(frame, bottom, app);
        } else if app.output.is_shown() {
            let [output_area, log_area] = Layout::horizontal(COLUMNS).areas(bottom);
            output::render_pane(frame, output_area, app);
            log::render(frame, log_area, app);
        } else {
            log::render(frame, bottom, app);
        }
    } else if generates {
        let [top, bottom] =
            Layout::vertical([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(body);
        let [loss_area, system_area] = Layout::horizontal(COLUMNS).areas(top);
        loss::render(frame, loss_area, app);
        system::render(frame, system_area, app);
        draw_generation(frame, bottom, app);
    } else {
        draw_without_generation(frame, body, app);
    }

    let above_footer = Rect {
        height: area.height - 1,
        ..area
    };
    match app.view.overlay {
        Overlay::ConfirmQuit => render_confirm_quit(frame, area, app),
        Overlay::ConfirmRestart => render_confirm_restart(frame, area, app),
        Overlay::Help => render_help(frame, above_footer, app),
        Overlay::Sample => {
            if let Some(detail) = &app.view.detail {
                detail::render(frame, above_footer, app, detail);
            }
        }
        Overlay::Log => logview::render(frame, above_footer, app),
        Overlay::Output => output::render_full(frame, above_footer, app),
        Overlay::None => {}
    }
    // With several runs, the footer starts with the one the keys act on.
    let lead = board.map(|board| {
        Span::styled(
            format!(
                " ▶ {} {}/{} ",
                app.run.status.run_name,
                board.selected() + 1,
                board.runs.len()
            ),
            run_color(app, board.selected()).add_modifier(Modifier::BOLD | Modifier::REVERSED),
        )
    });
    footer::render(frame, footer_area, app, lead);
}

/// The chart of compared runs keeps this many rows of curves (with its
/// borders, legend and x axis, `CHART_MIN` rows) whatever the screen.
pub const CURVE_ROWS: u16 = 8;
const CHART_MIN: u16 = CURVE_ROWS + 5;
/// The runs table: borders, header and one run.
const TABLE_MIN: u16 = 4;
/// The followed run's panes under the table, when they get this many rows.
const LOWER_MIN: u16 = 6;

/// The heights of the chart, the runs table and the followed run's panes in
/// a body of `height` rows with `runs` runs. The chart keeps
/// [`CHART_MIN`] rows (on the smallest screen, what there is); the table
/// its runs up to a third of the body (it scrolls), never under
/// [`TABLE_MIN`]; the chart and the panes share the rest, and panes that
/// would get fewer than [`LOWER_MIN`] rows give them to the table, then the
/// chart.
fn board_heights(height: u16, runs: usize) -> (u16, u16, u16) {
    let wanted = u16::try_from(runs).unwrap_or(u16::MAX).saturating_add(3);
    let mut table = wanted.min(height / 3).max(TABLE_MIN).min(height);
    let rest = height - table;
    let mut chart = CHART_MIN.max(rest.div_ceil(2)).min(rest);
    let mut lower = rest - chart;
    if lower < LOWER_MIN {
        let to_table = lower.min(wanted.saturating_sub(table));
        table += to_table;
        chart += lower - to_table;
        lower = 0;
    }
    (chart, table, lower)
}

/// The widths of the two columns of panes.
const COLUMNS: [Constraint; 2] = [Constraint::Percentage(62), Constraint::Percentage(38)];

/// The lower panes of a run that generates: its samples (over the job's
/// output once the job has failed), the counters over the log.
fn draw_generation(frame: &mut Frame, area: Rect, app: &App) {
    let [left, side] = Layout::horizontal(COLUMNS).areas(area);
    let [counters_area, log_area] =
        Layout::vertical([Constraint::Length(6), Constraint::Fill(1)]).areas(side);
    if app.output.is_shown() && output::ended_badly(app) {
        let [eval_area, output_area] =
            Layout::vertical([Constraint::Percentage(40), Constraint::Fill(1)]).areas(left);
        eval::render(frame, eval_area, app);
        output::render_pane(frame, output_area, app);
    } else {
        eval::render(frame, left, app);
    }
    counters::render(frame, counters_area, app);
    log::render(frame, log_area, app);
}

/// The body of a run that generates nothing (yet): the chart over the
/// job's output on the left, the machine over the log on the right.
fn draw_without_generation(frame: &mut Frame, body: Rect, app: &App) {
    let [left, right] = Layout::horizontal(COLUMNS).areas(body);
    let [system_area, log_area] =
        Layout::vertical([Constraint::Percentage(45), Constraint::Fill(1)]).areas(right);
    system::render(frame, system_area, app);
    log::render(frame, log_area, app);
    if app.output.is_shown() {
        // A failure's traceback gets the room the chart had.
        let chart = if output::ended_badly(app) { 45 } else { 60 };
        let [loss_area, output_area] =
            Layout::vertical([Constraint::Percentage(chart), Constraint::Fill(1)]).areas(left);
        loss::render(frame, loss_area, app);
        output::render_pane(frame, output_area, app);
    } else {
        loss::render(frame, left, app);
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

/// Every key of the key map in force (a watched run's differs), section
/// by section, then the commands no key sends with how to send them;
/// scrollable when it does not fit.
fn render_help(frame: &mut Frame, area: Rect, app: &App) {
    let row = |name: &str, what: &str| {
        Line::from(vec![
            Span::styled(format!("{name:>12}  "), key(app)),
            Span::raw(what.to_owned()),
        ])
    };
    let title = |text: &str| {
        Line::from(Span::styled(
            text.to_owned(),
            dim(app).add_modifier(Modifier::BOLD),
        ))
    };
    let mut lines = Vec::new();
    for &(section, context) in keys::SECTIONS {
        if (context == Context::Dialog && app.owner == Owner::Watcher)
            || (context == Context::Runs && !app.compared)
        {
            continue;
        }
        lines.push(title(section));
        for binding in keys::map(context) {
            if let Some(help) = binding.help_for(app.audience()) {
                lines.push(row(binding.label, help));
            }
        }
    }
    lines.push(title("without a key"));
    for (kind, how) in WITHOUT_KEY {
        lines.push(row(kind.word(), how));
    }
    let width = lines.iter().map(Line::width).max().unwrap_or(0) as u16 + 2;
    let height = (lines.len() as u16 + 2).min(area.height);
    let popup = popup(frame, area, width, height);
    let rows = usize::from(popup.height.saturating_sub(2));
    let mut geometry = app.view.geometry.get();
    geometry.help_lines = lines.len();
    geometry.help_rows = popup.height.saturating_sub(2);
    app.view.geometry.set(geometry);
    let top = app.view.help_scroll.min(lines.len().saturating_sub(rows));
    let scroll = if lines.len() > rows {
        format!(" {}-{}/{} ↑↓ ", top + 1, top + rows, lines.len())
    } else {
        String::new()
    };
    let block = pane(app, " keys · Esc or ? closes ", true)
        .title_bottom(Line::from(scroll).right_aligned());
    let shown: Vec<Line> = lines.into_iter().skip(top).take(rows).collect();
    frame.render_widget(Paragraph::new(shown).block(block), popup);
}

fn render_confirm_restart(frame: &mut Frame, area: Rect, app: &App) {
    let key = |k: &'static str| Span::styled(k, key(app));
    let from = app.restart_point().unwrap_or("-");
    let lines = vec![
        Line::from("Restart the stalled run?"),
        Line::from(""),
        Line::from(format!("from {from}")),
        Line::from("this process is replaced by one that resumes with"),
        Line::from("--resume auto; steps after the checkpoint run again"),
        Line::from(""),
        Line::from(vec![key("y"), Span::raw("      restart now")]),
        Line::from(vec![key("n/Esc"), Span::raw("  keep waiting")]),
    ];
    let width = lines.iter().map(Line::width).max().unwrap_or(0) as u16 + 2;
    let area = popup(frame, area, width, lines.len() as u16 + 2);
    let block = pane(app, " restart ", true).border_style(fg(app, Color::Yellow));
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// The quit question. A job (`trainui run`) that goes on after a stop was
/// sent is offered its end: its process group signalled, killed after
/// [`JOB_KILL_AFTER`] if it ignores that.
fn render_confirm_quit(frame: &mut Frame, area: Rect, app: &App) {
    let key = |k: &'static str| Span::styled(k, key(app));
    let grace = JOB_KILL_AFTER.as_secs();
    let lines = if app.owner == Owner::Job && app.stop_asked() {
        vec![
            Line::from("The job was asked to stop and goes on."),
            Line::from(""),
            Line::from(vec![
                key("y q"),
                Span::raw("    end it now: SIGTERM to its process group,"),
            ]),
            Line::from(format!("       SIGKILL to the group {grace} s later")),
            Line::from(vec![key("n/Esc"), Span::raw("  keep waiting")]),
        ]
    } else {
        let now = if app.owner == Owner::Job {
            format!("      end the job now: SIGTERM, SIGKILL {grace} s later")
        } else {
            "      quit now, without saving".to_owned()
        };
        vec![
            Line::from("Stop training and quit?"),
            Line::from(""),
            Line::from(vec![
                key("y"),
                Span::raw("      stop at the next step, save a checkpoint, exit"),
            ]),
            Line::from(vec![key("n/Esc"), Span::raw("  keep training")]),
            Line::from(vec![key("q"), Span::raw(now)]),
        ]
    };
    let area = popup(frame, area, 58, 7);
    let block = pane(app, " quit ", true).border_style(fg(app, Color::Yellow));
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    #[test]
    fn a_cell_that_still_holds_a_control_character_is_drawn_as_a_question_mark() {
        let app = App::new("run".into(), 10, false);
        let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
        terminal
            .draw(|frame| {
                // Texts that came by another way than the app's intake.
                let buffer = frame.buffer_mut();
                buffer[(0, 0)].set_symbol("\u{202e}");
                buffer[(1, 0)].set_symbol("a\x1b");
                buffer[(2, 0)].set_symbol("\u{9b}");
                buffer[(3, 0)].set_symbol("é");
                finish(frame, &app);
            })
            .unwrap();
        let buffer = terminal.backend().buffer();
        let symbols: Vec<&str> = (0..4).map(|x| buffer[(x, 0)].symbol()).collect();
        assert_eq!(symbols, ["?", "?", "?", "é"]);
    }
}
