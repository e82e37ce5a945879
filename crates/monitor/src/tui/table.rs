//! The runs shown together, one row each: its mark in the chart (blank
//! when hidden), number, name, state (a run that ended, failed, is gone or
//! went silent says so), step, loss, val loss, exact match, timeout rate,
//! tokens/s and the age of its last event; after the name, a column for
//! each config key or producer detail whose value differs among the runs
//! (as many as fit, the fixed columns on the right going first). The
//! followed run's row is marked; the table scrolls to keep it in view.
//!
//! ```text
//! ┌ runs · ← → follows · v shows ────────────────────────────────────────┐
//! │    #  run        state             step    loss     val  exact  ...  │
//! │ ▶ ━━ 1 lr-3e-4   training    1,200/2,000  1.204   1.310    41%  ...  │
//! │   ━━ 2 lr-1e-3   FINISHED    2,000/2,000  0.981   1.022    57%  ...  │
//! └──────────────────────────────────────────────────────────────────────┘
//! ```

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Span;
use ratatui::widgets::{Cell, Row, Table, TableState};

use super::app::App;
use super::board::Board;
use super::compare::{VALUE_WIDTH, cut, value_text};
use super::header::{QUIET_SECS, loss};
use super::theme::{dim, fg, pane, run_color, run_marker, state_style};
use trainui_protocol::events::RunState;
use trainui_protocol::lines::{ago, thousands};
use trainui_protocol::text::escape;

/// The columns, widest first to go when the pane is narrow: title, width
/// (0: the name, which takes the rest), dropped at this rank (0: never).
const COLUMNS: [(&str, u16, u8); 11] = [
    ("", 2, 0),
    ("#", 2, 0),
    ("run", 0, 0),
    ("state", 18, 0),
    ("step", 15, 0),
    ("loss", 7, 0),
    ("val", 7, 5),
    ("exact", 5, 3),
    ("timeouts", 8, 4),
    ("tok/s", 7, 2),
    ("updated", 11, 1),
];
/// The name column is never narrower than this.
const MIN_NAME: u16 = 10;

pub fn render(frame: &mut Frame, area: Rect, board: &Board) {
    let app = board.followed();
    let block = pane(app, " runs · ← → follows · v shows · d diff ", false);
    let inner = block.inner(area);
    // Columns in, from the first to go, until the name has room; then the
    // differing settings narrowed, then from the last.
    let mut keys = key_columns(board);
    let mut columns: Vec<usize> = (0..COLUMNS.len()).collect();
    let mut shown_keys = keys.len();
    let width = |keys: &[(String, u16)], columns: &[usize], shown_keys: usize| -> u16 {
        columns.iter().map(|&c| COLUMNS[c].1 + 1).sum::<u16>()
            + keys[..shown_keys]
                .iter()
                .map(|(_, wide)| wide + 1)
                .sum::<u16>()
            + 2
    };
    for rank in 1..=5 {
        if width(&keys, &columns, shown_keys) + MIN_NAME <= inner.width {
            break;
        }
        columns.retain(|&c| COLUMNS[c].2 != rank);
    }
    let fitting = |keys: &[(String, u16)]| {
        (0..=keys.len())
            .rev()
            .find(|&shown| width(keys, &columns, shown) + MIN_NAME <= inner.width)
            .unwrap_or(0)
    };
    shown_keys = fitting(&keys);
    let narrow: Vec<(String, u16)> = keys
        .iter()
        .map(|(title, wide)| (cut(title, usize::from(NARROW_KEY)), (*wide).min(NARROW_KEY)))
        .collect();
    if fitting(&narrow) > shown_keys {
        shown_keys = fitting(&narrow);
        keys = narrow;
    }
    // The differing settings come after the name.
    let order: Vec<Column> = columns
        .iter()
        .take_while(|&&c| c <= NAME)
        .map(|&c| Column::Fixed(c))
        .chain((0..shown_keys).map(Column::Key))
        .chain(
            columns
                .iter()
                .filter(|&&c| c > NAME)
                .map(|&c| Column::Fixed(c)),
        )
        .collect();
    let header = Row::new(order.iter().map(|&column| {
        let cell = match column {
            Column::Fixed(c) => {
                let (title, wide, _) = COLUMNS[c];
                aligned(c, title, wide)
            }
            Column::Key(k) => keys[k].0.clone(),
        };
        Cell::from(cell).style(dim(app))
    }));
    let flags = board.shown_flags();
    let rows = board.runs.iter().enumerate().map(|(index, row)| {
        let cells = cells(board, index, row, flags[index]);
        Row::new(order.iter().map(|&column| match column {
            Column::Fixed(c) => {
                let (text, style) = cells[c].clone();
                Cell::from(Span::styled(aligned(c, &text, COLUMNS[c].1), style))
            }
            Column::Key(k) => {
                let text = value_text(&board.differences()[k], index);
                Cell::from(cut(&text, usize::from(keys[k].1)))
            }
        }))
    });
    let widths = order.iter().map(|&column| match column {
        Column::Fixed(c) => match COLUMNS[c].1 {
            0 => Constraint::Fill(1),
            wide => Constraint::Length(wide),
        },
        Column::Key(k) => Constraint::Length(keys[k].1),
    });
    let table = Table::new(rows, widths)
        .header(header)
        .block(block)
        .row_highlight_style(Style::new().add_modifier(Modifier::BOLD))
        .highlight_symbol("▶ ");
    let mut state = TableState::default().with_selected(Some(board.selected()));
    frame.render_stateful_widget(table, area, &mut state);
}

/// The widest a differing setting's column gets when they do not all fit.
const NARROW_KEY: u16 = 10;

/// The run's name column of [`COLUMNS`]: the differing settings follow it.
const NAME: usize = 2;

/// A column of the table: one of [`COLUMNS`], or a differing setting.
#[derive(Clone, Copy)]
enum Column {
    Fixed(usize),
    Key(usize),
}

/// The differing settings' columns: title and width. A key goes by its
/// last part where no other differing key ends alike, else whole; titles
/// and values are cut to [`VALUE_WIDTH`].
fn key_columns(board: &Board) -> Vec<(String, u16)> {
    let differences = board.differences();
    let last = |key: &str| key.rsplit('.').next().unwrap_or(key).to_owned();
    differences
        .iter()
        .map(|diff| {
            let short = last(&diff.key);
            let alike = differences
                .iter()
                .filter(|other| last(&other.key) == short)
                .count();
            let title = if alike > 1 { diff.key.clone() } else { short };
            let title = cut(&escape(&title), VALUE_WIDTH);
            let values = (0..board.runs.len()).map(|run| value_text(diff, run).chars().count());
            let wide = values
                .chain(std::iter::once(title.chars().count()))
                .max()
                .unwrap_or(1)
                .min(VALUE_WIDTH);
            (title, wide as u16)
        })
        .collect()
}

/// `text` of column `column` in its `width` cells: figures to the right,
/// words to the left.
fn aligned(column: usize, text: &str, width: u16) -> String {
    if column == 1 || column >= 4 {
        format!("{text:>width$}", width = usize::from(width))
    } else {
        text.to_owned()
    }
}

/// The run's cells, one per column of [`COLUMNS`].
fn cells(board: &Board, index: usize, row: &App, shown: bool) -> Vec<(String, Style)> {
    let app = board.followed();
    let s = &row.run.status;
    let figure = |value: Option<f64>| value.map_or_else(|| "-".to_owned(), loss);
    let percent = |value: f64| format!("{:.0}%", 100.0 * value);
    let mark = if shown {
        run_marker(app, index).1.repeat(2)
    } else {
        "  ".to_owned()
    };
    let timeouts = if s.generations == 0 {
        ("-".to_owned(), dim(app))
    } else {
        let style = if s.timeouts > 0 {
            fg(app, Color::Yellow)
        } else {
            Style::new()
        };
        (format!("{:.1}%", 100.0 * s.timeout_rate), style)
    };
    let (state, state_look) = state(app, row);
    vec![
        (mark, run_color(app, index)),
        ((index + 1).to_string(), dim(app)),
        (s.run_name.clone(), Style::new()),
        (state, state_look),
        (
            format!("{}/{}", thousands(s.current_step), thousands(s.max_steps)),
            Style::new(),
        ),
        (figure(s.loss), Style::new()),
        (figure(s.val_loss), Style::new()),
        (
            s.exact_match.map_or_else(|| "-".to_owned(), percent),
            Style::new(),
        ),
        timeouts,
        (
            s.tokens_per_sec
                .filter(|_| row.running())
                .map_or_else(|| "-".to_owned(), |rate| thousands(rate.round() as u64)),
            Style::new(),
        ),
        (
            row.run
                .last_event_at
                .map_or_else(|| "-".to_owned(), |at| ago(row.secs_since(at))),
            dim(app),
        ),
    ]
}

/// The run's state as the table says it: an ended run in capitals, one
/// whose process is gone as GONE, one training but silent for a minute as
/// silent (an evaluation has its own deadlines).
fn state(app: &App, row: &App) -> (String, Style) {
    let state = row.run.status.state;
    if row.process.gone.is_some() {
        return (
            "GONE".to_owned(),
            fg(app, Color::Red).add_modifier(Modifier::BOLD),
        );
    }
    if state.is_final() || state == RunState::Stalled {
        return (state.as_str().to_uppercase(), state_style(app, state));
    }
    let quiet = row.run.last_event_at.map_or(0.0, |at| row.secs_since(at));
    if state == RunState::Training && quiet > QUIET_SECS {
        return (
            format!("{} · silent", state.as_str()),
            fg(app, Color::Yellow).add_modifier(Modifier::BOLD),
        );
    }
    (state.as_str().to_owned(), state_style(app, state))
}
