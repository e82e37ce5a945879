//! Colours, borders and glyphs shared by the panes: a leaf that the panes
//! and the renderer import, so no pane imports the renderer that draws it.
//!
//! Two looks: Unicode (box drawing, braille, typography) and ASCII, for
//! `--plain`, `TERM=dumb` and locales that are not UTF-8. Both say the
//! focus and the progress by shape, so neither needs colour: a focused
//! pane has a heavy (`=`) border, a bar is `━━━───` (`###...`).

use ratatui::buffer::Buffer;
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::{Marker, border};
use ratatui::text::{Line, Span};
use ratatui::widgets::Block;

use super::app::App;
use trainui_protocol::events::RunState;

/// `color` as a foreground style, or no colour at all under NO_COLOR.
#[must_use]
pub fn fg(app: &App, color: Color) -> Style {
    if app.view.color {
        Style::new().fg(color)
    } else {
        Style::new()
    }
}

const ASCII: border::Set = border::Set {
    top_left: "+",
    top_right: "+",
    bottom_left: "+",
    bottom_right: "+",
    vertical_left: "|",
    vertical_right: "|",
    horizontal_top: "-",
    horizontal_bottom: "-",
};

const ASCII_FOCUSED: border::Set = border::Set {
    horizontal_top: "=",
    horizontal_bottom: "=",
    ..ASCII
};

/// A bordered pane; the focused one has a heavy border (and colour).
#[must_use]
pub fn pane<'a>(app: &App, title: impl Into<Line<'a>>, focused: bool) -> Block<'a> {
    let set = match (app.view.ascii, focused) {
        (true, true) => ASCII_FOCUSED,
        (true, false) => ASCII,
        (false, true) => border::THICK,
        (false, false) => border::PLAIN,
    };
    let block = Block::bordered().border_set(set).title(title);
    if focused {
        block.border_style(fg(app, Color::Cyan).add_modifier(Modifier::BOLD))
    } else {
        block.border_style(fg(app, Color::DarkGray))
    }
}

/// The style of a key's name in the footer and the overlays.
#[must_use]
pub fn key(app: &App) -> Style {
    fg(app, Color::Cyan).add_modifier(Modifier::BOLD)
}

/// Dim text: labels, hints.
#[must_use]
pub fn dim(app: &App) -> Style {
    fg(app, Color::DarkGray)
}

/// The colour of a run state.
#[must_use]
pub fn state_style(app: &App, state: RunState) -> Style {
    let color = match state {
        RunState::Starting => Color::Gray,
        RunState::Training | RunState::Finished => Color::Green,
        RunState::Evaluating => Color::Cyan,
        RunState::Paused | RunState::Stopping => Color::Yellow,
        RunState::Stopped => Color::Blue,
        RunState::Failed => Color::Red,
        RunState::Stalled => Color::Magenta,
    };
    fg(app, color).add_modifier(Modifier::BOLD)
}

/// The colours of runs shown together, in the order of their table: as
/// far apart as the terminal's sixteen colours go.
const RUN_COLORS: [Color; 10] = [
    Color::Cyan,
    Color::Yellow,
    Color::Magenta,
    Color::Green,
    Color::LightBlue,
    Color::LightRed,
    Color::LightCyan,
    Color::LightYellow,
    Color::LightMagenta,
    Color::LightGreen,
];

/// The colour of the `index`-th run of several shown together.
#[must_use]
pub fn run_color(app: &App, index: usize) -> Style {
    fg(app, RUN_COLORS[index % RUN_COLORS.len()])
}

/// How the `index`-th run's curve is drawn, and the mark that stands for
/// it in the legend: braille in colour; without colour, a shape per run.
#[must_use]
pub fn run_marker(app: &App, index: usize) -> (Marker, &'static str) {
    const SHAPES: [(Marker, &str); 4] = [
        (Marker::Braille, "⠒"),
        (Marker::Dot, "•"),
        (Marker::Block, "█"),
        (Marker::Bar, "▄"),
    ];
    if app.view.color {
        (Marker::Braille, "━")
    } else {
        SHAPES[index % SHAPES.len()]
    }
}

/// A progress bar `width` cells wide, done part then to-do part, which
/// differ in shape as well as colour.
#[must_use]
pub fn bar(app: &App, ratio: f64, width: usize, done: Color) -> Vec<Span<'static>> {
    let filled = ((ratio.clamp(0.0, 1.0) * width as f64).round() as usize).min(width);
    let (on, off) = if app.view.ascii {
        ("#", ".")
    } else {
        ("━", "─")
    };
    vec![
        Span::styled(on.repeat(filled), fg(app, done)),
        Span::styled(off.repeat(width - filled), dim(app)),
    ]
}

/// ` · ` between figures, or ` | ` in ASCII.
#[must_use]
pub fn sep(app: &App) -> &'static str {
    if app.view.ascii { " | " } else { " · " }
}

/// `…` or `...`.
#[must_use]
pub fn ellipsis(app: &App) -> &'static str {
    if app.view.ascii { "..." } else { "…" }
}

/// Replaces what is not ASCII in `buffer` by its nearest ASCII look-alike
/// (the last step of drawing in the ASCII look: whatever a widget drew,
/// braille dots and block bars included, reaches the terminal as ASCII).
pub fn asciify(buffer: &mut Buffer) {
    for cell in &mut buffer.content {
        let symbol = cell.symbol();
        if symbol.is_ascii() {
            continue;
        }
        let replacement = symbol.chars().next().map_or(" ", ascii_for);
        cell.set_symbol(replacement);
    }
}

fn ascii_for(c: char) -> &'static str {
    match c {
        '─' | '━' | '╌' | '┄' | '–' | '—' | '▃' | '▄' => "-",
        '═' | '▅' | '▆' => "=",
        '│' | '┃' | '║' | '╎' | '┆' | '·' => "|",
        '┌' | '┐' | '└' | '┘' | '├' | '┤' | '┬' | '┴' | '┼' | '┏' | '┓' | '┗' | '┛' | '┣' | '┫'
        | '┳' | '┻' | '╋' | '╭' | '╮' | '╯' | '╰' => "+",
        '\u{2800}' => " ",
        '\u{2801}'..='\u{28ff}' | '…' => ".",
        '•' | '●' | '°' => "o",
        '→' | '▶' | '›' => ">",
        '←' | '‹' => "<",
        '↑' => "^",
        '↓' => "v",
        '×' => "x",
        '⏎' => "~",
        '▁' | '▂' => "_",
        '▇' | '█' => "#",
        _ => "?",
    }
}
