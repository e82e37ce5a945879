//! Colours and borders shared by the panes: a leaf that the panes and the
//! renderer import, so no pane imports the renderer that draws it.

use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::Block;

use super::app::App;
use crate::events::RunState;

/// `color` as a foreground style, or no colour at all under NO_COLOR.
#[must_use]
pub fn fg(app: &App, color: Color) -> Style {
    if app.color {
        Style::new().fg(color)
    } else {
        Style::new()
    }
}

/// A bordered pane; the focused one has a highlighted border.
#[must_use]
pub fn pane<'a>(app: &App, title: impl Into<Line<'a>>, focused: bool) -> Block<'a> {
    let block = Block::bordered().title(title);
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
