//! Every key of the TUI in one table: what it does, the commands it can
//! send, its line in the help overlay and its word in the footer. The
//! commands that no key sends are listed with the reason, so a command added
//! to [`Command`](crate::events::Command) without a key or a reason fails a
//! test.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::events::CommandKind;

/// What a key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAction {
    EvalNow,
    AbortGeneration,
    TogglePause,
    Save,
    /// Ask to confirm a stop, or quit at once when already asking.
    Quit,
    /// On a stalled run: start again from the latest checkpoint.
    Restart,
    Confirm,
    Cancel,
    ToggleHelp,
    ToggleLogScale,
    ToggleWindow,
    FocusNext,
    ScrollUp,
    ScrollDown,
    PageUp,
    PageDown,
}

/// One row of the key table: keys that belong together, each with its
/// action, under one line of help.
#[derive(Debug, Clone, Copy)]
pub struct Binding {
    /// The keys as the help overlay names them.
    pub label: &'static str,
    pub keys: &'static [(KeyModifiers, KeyCode, KeyAction)],
    /// Its line in the help overlay.
    pub help: &'static str,
    /// Its word in the footer, for the rows shown there.
    pub footer: Option<&'static str>,
}

impl Binding {
    /// The action of the row's first key, the one the footer names.
    #[must_use]
    pub fn action(&self) -> Option<KeyAction> {
        self.keys.first().map(|&(_, _, action)| action)
    }
}

const fn key(code: KeyCode, action: KeyAction) -> (KeyModifiers, KeyCode, KeyAction) {
    (KeyModifiers::NONE, code, action)
}

/// Every key, in the order of the footer and the help overlay.
pub const KEYS: &[Binding] = &[
    Binding {
        label: "r",
        keys: &[key(KeyCode::Char('r'), KeyAction::Restart)],
        help: "restart a stalled run from its last checkpoint",
        footer: Some("restart"),
    },
    Binding {
        label: "e",
        keys: &[key(KeyCode::Char('e'), KeyAction::EvalNow)],
        help: "evaluate now (at the next step boundary)",
        footer: Some("eval"),
    },
    Binding {
        label: "a",
        keys: &[key(KeyCode::Char('a'), KeyAction::AbortGeneration)],
        help: "abort the generation in progress",
        footer: Some("abort"),
    },
    Binding {
        label: "p",
        keys: &[key(KeyCode::Char('p'), KeyAction::TogglePause)],
        help: "pause / resume training",
        footer: Some("pause"),
    },
    Binding {
        label: "s",
        keys: &[key(KeyCode::Char('s'), KeyAction::Save)],
        help: "save a checkpoint now",
        footer: Some("save"),
    },
    Binding {
        label: "q Ctrl-C",
        keys: &[
            key(KeyCode::Char('q'), KeyAction::Quit),
            (KeyModifiers::CONTROL, KeyCode::Char('c'), KeyAction::Quit),
        ],
        help: "quit: asks to stop the run and save; again: now",
        footer: Some("quit"),
    },
    Binding {
        label: "? h",
        keys: &[
            key(KeyCode::Char('?'), KeyAction::ToggleHelp),
            key(KeyCode::Char('h'), KeyAction::ToggleHelp),
        ],
        help: "this help",
        footer: Some("help"),
    },
    Binding {
        label: "y n",
        keys: &[
            key(KeyCode::Char('y'), KeyAction::Confirm),
            key(KeyCode::Enter, KeyAction::Confirm),
            key(KeyCode::Char('n'), KeyAction::Cancel),
            key(KeyCode::Esc, KeyAction::Cancel),
        ],
        help: "yes (Enter) / no (Esc), in the quit dialog",
        footer: None,
    },
    Binding {
        label: "l z",
        keys: &[
            key(KeyCode::Char('l'), KeyAction::ToggleLogScale),
            key(KeyCode::Char('z'), KeyAction::ToggleWindow),
        ],
        help: "loss chart: log scale, whole run or recent",
        footer: None,
    },
    Binding {
        label: "Tab",
        keys: &[
            key(KeyCode::Tab, KeyAction::FocusNext),
            key(KeyCode::BackTab, KeyAction::FocusNext),
        ],
        help: "focus samples / events",
        footer: None,
    },
    Binding {
        label: "↑ ↓ k j",
        keys: &[
            key(KeyCode::Up, KeyAction::ScrollUp),
            key(KeyCode::Char('k'), KeyAction::ScrollUp),
            key(KeyCode::Down, KeyAction::ScrollDown),
            key(KeyCode::Char('j'), KeyAction::ScrollDown),
        ],
        help: "scroll the focused pane",
        footer: None,
    },
    Binding {
        label: "PgUp PgDn",
        keys: &[
            key(KeyCode::PageUp, KeyAction::PageUp),
            key(KeyCode::PageDown, KeyAction::PageDown),
        ],
        help: "scroll the focused pane by a page",
        footer: None,
    },
];

/// The commands no key sends, and why: the help overlay names them with
/// the way to send them.
pub const WITHOUT_KEY: &[(CommandKind, &str)] = &[(
    CommandKind::Set,
    "ctl RUN_DIR set KEY=VALUE, or edit config.json",
)];

/// Maps a key press to its action.
#[must_use]
pub fn action_for(key: KeyEvent) -> Option<KeyAction> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let control = key.modifiers.contains(KeyModifiers::CONTROL);
    KEYS.iter()
        .flat_map(|binding| binding.keys)
        .find(|(modifiers, code, _)| {
            *code == key.code && modifiers.contains(KeyModifiers::CONTROL) == control
        })
        .map(|&(_, _, action)| action)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The commands the keys send, pressed on a training and on a paused
    /// run (each key after a fresh start; `q` confirmed with `y`).
    fn commands_sent_by_keys() -> Vec<CommandKind> {
        use crate::events::{Event, RunState};
        use crate::tui::app::{App, Msg};
        let mut sent = Vec::new();
        for state in [RunState::Training, RunState::Paused] {
            for binding in KEYS {
                let mut app = App::new("keys".into(), 10, false);
                app.apply(&Event::State { step: 1, state });
                for &(modifiers, code, _) in binding.keys {
                    let mut press = |code| app.update(Msg::Key(KeyEvent::new(code, modifiers)));
                    let command = press(code).or_else(|| press(KeyCode::Char('y')));
                    sent.extend(command.as_ref().map(CommandKind::from));
                }
            }
        }
        sent
    }

    #[test]
    fn every_command_has_a_ctl_word_and_a_key_or_a_reason() {
        let sent = commands_sent_by_keys();
        for &kind in CommandKind::all() {
            assert_eq!(
                CommandKind::from_word(kind.word()),
                Some(kind),
                "{kind:?} has a ctl word of its own"
            );
            let keyed = sent.contains(&kind);
            let reason = WITHOUT_KEY.iter().any(|(k, _)| *k == kind);
            assert!(
                keyed != reason,
                "{kind:?}: a key, or a stated reason for none (not both)"
            );
        }
    }

    #[test]
    fn every_key_of_the_table_maps_to_its_action() {
        for binding in KEYS {
            for &(modifiers, code, action) in binding.keys {
                let found = action_for(KeyEvent::new(code, modifiers));
                assert_eq!(found, Some(action), "{}", binding.label);
            }
        }
        let ctrl_x = KeyEvent::new(KeyCode::Char('x'), KeyModifiers::CONTROL);
        assert_eq!(action_for(ctrl_x), None);
        let ctrl_q = KeyEvent::new(KeyCode::Char('q'), KeyModifiers::CONTROL);
        assert_eq!(action_for(ctrl_q), None, "only Ctrl-C quits with Control");
    }
}
