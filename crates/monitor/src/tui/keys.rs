//! Every key of the TUI in one map: per screen (the panes, a sample, the
//! log, a dialog, the help), what each key does, the commands it can send,
//! its line in the help overlay (which differs between a run this process
//! trains and one it watches) and its word in the footer. The help overlay,
//! the footer and the README's key table are all made from this map. The
//! commands no key sends are listed with the reason, so a command added to
//! [`Command`](trainui_protocol::events::Command) without a key or a reason fails a
//! test.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use trainui_protocol::events::CommandKind;

/// What a key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAction {
    EvalNow,
    AbortGeneration,
    TogglePause,
    Save,
    /// Ask to confirm a stop, or quit at once when already asking.
    Quit,
    /// On a stalled run: offer to start again from the latest checkpoint.
    Restart,
    Confirm,
    Cancel,
    ToggleHelp,
    ToggleLogScale,
    ToggleWindow,
    ToggleTimeAxis,
    /// The chart's x axis: steps, tokens seen, wall-clock time.
    CycleXAxis,
    /// The chart's series: loss, learning rate, gradient norm, tokens/s.
    CycleSeries,
    SmoothLess,
    SmoothMore,
    FocusNext,
    ScrollUp,
    ScrollDown,
    PageUp,
    PageDown,
    Top,
    Bottom,
    /// Open the selected sample whole.
    Open,
    /// The full-screen log.
    OpenLog,
    /// The job's own output, full screen.
    OpenOutput,
    Close,
    Search,
    NextMatch,
    PreviousMatch,
    Filter,
    /// Several runs: the panes follow the previous / next one.
    PreviousRun,
    NextRun,
    /// Several runs: the panes follow the run of this number (0 is the
    /// first).
    SelectRun(u8),
    /// Several runs: the followed run's curve in the chart, or not.
    ToggleShown,
    /// Several runs: the followed run's curve alone, or every run's again.
    ShowOnly,
    /// Several runs: the settings that differ among them, full screen.
    ShowDiff,
}

/// The screen keys act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Panes,
    /// The panes when several runs share the screen (`watch A B ...`):
    /// these keys come before the panes' own.
    Runs,
    Sample,
    Log,
    /// The job's own output, full screen.
    Output,
    Dialog,
    Help,
}

/// One row of a key map: keys that belong together, each with its action,
/// under one line of help.
#[derive(Debug, Clone, Copy)]
pub struct Binding {
    /// The keys as the help overlay names them.
    pub label: &'static str,
    pub keys: &'static [(KeyModifiers, KeyCode, KeyAction)],
    /// Its line in the help overlay.
    pub help: &'static str,
    /// Its line when the run is another process's (`watch`), where that
    /// differs; `Some("")` leaves the row out there.
    pub watch_help: Option<&'static str>,
    /// Its word in the footer, for the rows shown there.
    pub footer: Option<&'static str>,
}

/// Whose run the keys act on: what they do, and so what the help says,
/// differs between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// `trainui train`: this process trains the run.
    Trainer,
    /// `trainui run`: the job this process started; `restarts` when it
    /// relaunches the job on a stall (`--restart-on-stall N`).
    Job { restarts: bool },
    /// `trainui watch`: another process's run.
    Watcher,
}

/// The help of the rows of the panes that do something else for a job
/// `trainui run` started: the row (by its own line), its line there, and
/// its line when trainui restarts the job on a stall (`""` leaves the row
/// out).
const JOB_HELP: &[(&str, &str, &str)] = &[
    (RESTART_HELP, "", RESTARTED_BY_TRAINUI),
    (
        STOP_HELP,
        "ask the job to stop (asks first); again: end it at once",
        "ask the job to stop (asks first); again: end it at once",
    ),
];
const RESTART_HELP: &str = "restart a stalled run from its checkpoint";
const STOP_HELP: &str = "stop and save (asks first); twice: at once";

/// What the restart row says under `trainui run --restart-on-stall N`.
const RESTARTED_BY_TRAINUI: &str =
    "no key: trainui restarts a stalled job from its checkpoint (--restart-on-stall)";

impl Binding {
    /// The action of the row's first key, the one the footer names.
    #[must_use]
    pub fn action(&self) -> Option<KeyAction> {
        self.keys.first().map(|&(_, _, action)| action)
    }

    /// The help line for `audience`; none when the row does not apply there.
    #[must_use]
    pub fn help_for(&self, audience: Audience) -> Option<&'static str> {
        let help = match audience {
            Audience::Trainer => Some(self.help),
            Audience::Watcher => self.watch_help.or(Some(self.help)),
            Audience::Job { restarts } => {
                let job = JOB_HELP.iter().find(|(row, _, _)| *row == self.help);
                match job {
                    Some(&(_, _, with)) if restarts => Some(with),
                    Some(&(_, without, _)) => Some(without),
                    None => Some(self.help),
                }
            }
        };
        help.filter(|help| !help.is_empty())
    }
}

const fn key(code: KeyCode, action: KeyAction) -> (KeyModifiers, KeyCode, KeyAction) {
    (KeyModifiers::NONE, code, action)
}

const fn row(
    label: &'static str,
    keys: &'static [(KeyModifiers, KeyCode, KeyAction)],
    help: &'static str,
) -> Binding {
    Binding {
        label,
        keys,
        help,
        watch_help: None,
        footer: None,
    }
}

const SCROLL: &[(KeyModifiers, KeyCode, KeyAction)] = &[
    key(KeyCode::Up, KeyAction::ScrollUp),
    key(KeyCode::Char('k'), KeyAction::ScrollUp),
    key(KeyCode::Down, KeyAction::ScrollDown),
    key(KeyCode::Char('j'), KeyAction::ScrollDown),
];
const PAGE: &[(KeyModifiers, KeyCode, KeyAction)] = &[
    key(KeyCode::PageUp, KeyAction::PageUp),
    key(KeyCode::PageDown, KeyAction::PageDown),
];
const ENDS: &[(KeyModifiers, KeyCode, KeyAction)] = &[
    key(KeyCode::Home, KeyAction::Top),
    key(KeyCode::Char('g'), KeyAction::Top),
    key(KeyCode::End, KeyAction::Bottom),
    key(KeyCode::Char('G'), KeyAction::Bottom),
];

/// The main screen, in the order of the footer and the help overlay.
pub const PANES: &[Binding] = &[
    Binding {
        label: "r",
        keys: &[key(KeyCode::Char('r'), KeyAction::Restart)],
        help: RESTART_HELP,
        watch_help: Some(""),
        footer: Some("restart"),
    },
    Binding {
        label: "e",
        keys: &[key(KeyCode::Char('e'), KeyAction::EvalNow)],
        help: "evaluate now (at the next step boundary)",
        watch_help: None,
        footer: Some("eval"),
    },
    Binding {
        label: "a",
        keys: &[key(KeyCode::Char('a'), KeyAction::AbortGeneration)],
        help: "abort the generation in progress",
        watch_help: None,
        footer: Some("abort"),
    },
    Binding {
        label: "p",
        keys: &[key(KeyCode::Char('p'), KeyAction::TogglePause)],
        help: "pause / resume training",
        watch_help: None,
        footer: Some("pause"),
    },
    Binding {
        label: "s",
        keys: &[key(KeyCode::Char('s'), KeyAction::Save)],
        help: "save a checkpoint now",
        watch_help: None,
        footer: Some("save"),
    },
    Binding {
        label: "q Ctrl-C",
        keys: &[
            key(KeyCode::Char('q'), KeyAction::Quit),
            (KeyModifiers::CONTROL, KeyCode::Char('c'), KeyAction::Quit),
        ],
        help: STOP_HELP,
        watch_help: Some("quit watching; the run goes on"),
        footer: Some("quit"),
    },
    Binding {
        label: "?",
        keys: &[
            key(KeyCode::Char('?'), KeyAction::ToggleHelp),
            key(KeyCode::Char('h'), KeyAction::ToggleHelp),
            key(KeyCode::F(1), KeyAction::ToggleHelp),
        ],
        help: "this help (also h, F1)",
        watch_help: None,
        footer: Some("help"),
    },
    Binding {
        label: "L",
        keys: &[key(KeyCode::Char('L'), KeyAction::OpenLog)],
        help: "the whole log, full screen, with search",
        watch_help: None,
        footer: Some("log"),
    },
    row(
        "O",
        &[key(KeyCode::Char('O'), KeyAction::OpenOutput)],
        "the job's own output, full screen",
    ),
    Binding {
        label: "Enter",
        keys: &[key(KeyCode::Enter, KeyAction::Open)],
        help: "open the selected sample whole",
        watch_help: None,
        footer: None,
    },
    Binding {
        label: "Tab",
        keys: &[
            key(KeyCode::Tab, KeyAction::FocusNext),
            key(KeyCode::BackTab, KeyAction::FocusNext),
        ],
        help: "move the focus: samples / events",
        watch_help: None,
        footer: None,
    },
    row("↑ ↓ k j", SCROLL, "select a sample / scroll the events"),
    row("PgUp PgDn", PAGE, "the same, a page at a time"),
    row(
        "Home End g G",
        ENDS,
        "first / newest (End follows new ones)",
    ),
    row(
        "l",
        &[key(KeyCode::Char('l'), KeyAction::ToggleLogScale)],
        "loss chart: log scale on / off",
    ),
    row(
        "z",
        &[key(KeyCode::Char('z'), KeyAction::ToggleWindow)],
        "loss chart: whole run / recent points",
    ),
    row(
        "t",
        &[key(KeyCode::Char('t'), KeyAction::ToggleTimeAxis)],
        "loss chart: x axis steps / wall-clock time",
    ),
    row(
        "x",
        &[key(KeyCode::Char('x'), KeyAction::CycleXAxis)],
        "chart: x axis steps / tokens / time",
    ),
    row(
        "c",
        &[key(KeyCode::Char('c'), KeyAction::CycleSeries)],
        "chart: loss / lr / grad norm / tokens/s",
    ),
    row(
        "[ ]",
        &[
            key(KeyCode::Char('['), KeyAction::SmoothLess),
            key(KeyCode::Char(']'), KeyAction::SmoothMore),
        ],
        "loss chart: shorter / longer smoothing",
    ),
];

/// The panes of several runs: which run they follow and which runs the
/// chart shows. The steering keys above act on the followed run only.
pub const RUNS: &[Binding] = &[
    Binding {
        label: "← →",
        keys: &[
            key(KeyCode::Left, KeyAction::PreviousRun),
            key(KeyCode::Right, KeyAction::NextRun),
        ],
        help: "follow the previous / next run (panes, steering keys)",
        watch_help: None,
        footer: Some("run"),
    },
    row(
        "1-9",
        &[
            key(KeyCode::Char('1'), KeyAction::SelectRun(0)),
            key(KeyCode::Char('2'), KeyAction::SelectRun(1)),
            key(KeyCode::Char('3'), KeyAction::SelectRun(2)),
            key(KeyCode::Char('4'), KeyAction::SelectRun(3)),
            key(KeyCode::Char('5'), KeyAction::SelectRun(4)),
            key(KeyCode::Char('6'), KeyAction::SelectRun(5)),
            key(KeyCode::Char('7'), KeyAction::SelectRun(6)),
            key(KeyCode::Char('8'), KeyAction::SelectRun(7)),
            key(KeyCode::Char('9'), KeyAction::SelectRun(8)),
        ],
        "follow run 1 to 9 of the table",
    ),
    Binding {
        label: "v",
        keys: &[key(KeyCode::Char('v'), KeyAction::ToggleShown)],
        help: "the followed run's curve in the chart: shown / hidden",
        watch_help: None,
        footer: Some("show"),
    },
    Binding {
        label: "o",
        keys: &[key(KeyCode::Char('o'), KeyAction::ShowOnly)],
        help: "the chart: the followed run alone / every run",
        watch_help: None,
        footer: Some("only"),
    },
    Binding {
        label: "d",
        keys: &[key(KeyCode::Char('d'), KeyAction::ShowDiff)],
        help: "the settings that differ among the runs, full screen (Esc closes)",
        watch_help: None,
        footer: Some("diff"),
    },
];

/// A sample opened whole.
pub const SAMPLE: &[Binding] = &[
    row("↑ ↓ k j", SCROLL, "scroll"),
    row("PgUp PgDn", PAGE, "scroll a page"),
    row("Home End g G", ENDS, "top / bottom"),
    Binding {
        label: "Esc",
        keys: &[
            key(KeyCode::Esc, KeyAction::Close),
            key(KeyCode::Enter, KeyAction::Close),
            key(KeyCode::Char('q'), KeyAction::Close),
        ],
        help: "back to the panes (also Enter, q)",
        watch_help: None,
        footer: Some("back"),
    },
];

/// The full-screen log.
pub const LOG: &[Binding] = &[
    Binding {
        label: "/",
        keys: &[key(KeyCode::Char('/'), KeyAction::Search)],
        help: "search (Enter keeps it, Esc clears it)",
        watch_help: None,
        footer: Some("search"),
    },
    Binding {
        label: "n N",
        keys: &[
            key(KeyCode::Char('n'), KeyAction::NextMatch),
            key(KeyCode::Char('N'), KeyAction::PreviousMatch),
        ],
        help: "next / previous match",
        watch_help: None,
        footer: Some("next"),
    },
    Binding {
        label: "f",
        keys: &[key(KeyCode::Char('f'), KeyAction::Filter)],
        help: "show: all / warnings and errors / errors",
        watch_help: None,
        footer: Some("filter"),
    },
    row("↑ ↓ k j", SCROLL, "scroll"),
    row("PgUp PgDn", PAGE, "scroll a page"),
    row("Home End g G", ENDS, "oldest / newest (End follows)"),
    Binding {
        label: "Esc",
        keys: &[
            key(KeyCode::Esc, KeyAction::Close),
            key(KeyCode::Char('L'), KeyAction::Close),
            key(KeyCode::Char('q'), KeyAction::Close),
        ],
        help: "back to the panes (also L, q)",
        watch_help: None,
        footer: Some("back"),
    },
];

/// The job's own output, full screen.
pub const OUTPUT: &[Binding] = &[
    row("↑ ↓ k j", SCROLL, "scroll"),
    row("PgUp PgDn", PAGE, "scroll a page"),
    row("Home End g G", ENDS, "oldest / newest (End follows)"),
    Binding {
        label: "Esc",
        keys: &[
            key(KeyCode::Esc, KeyAction::Close),
            key(KeyCode::Char('O'), KeyAction::Close),
            key(KeyCode::Char('q'), KeyAction::Close),
        ],
        help: "back to the panes (also O, q)",
        watch_help: None,
        footer: Some("back"),
    },
];

/// A question (quit, restart).
pub const DIALOG: &[Binding] = &[
    Binding {
        label: "y Enter",
        keys: &[
            key(KeyCode::Char('y'), KeyAction::Confirm),
            key(KeyCode::Enter, KeyAction::Confirm),
        ],
        help: "yes",
        watch_help: None,
        footer: Some("yes"),
    },
    Binding {
        label: "n Esc",
        keys: &[
            key(KeyCode::Char('n'), KeyAction::Cancel),
            key(KeyCode::Esc, KeyAction::Cancel),
        ],
        help: "no",
        watch_help: None,
        footer: Some("no"),
    },
    Binding {
        label: "q Ctrl-C",
        keys: &[
            key(KeyCode::Char('q'), KeyAction::Quit),
            (KeyModifiers::CONTROL, KeyCode::Char('c'), KeyAction::Quit),
        ],
        help: "quit dialog: quit at once, without saving",
        watch_help: Some(""),
        footer: None,
    },
];

/// The help overlay.
pub const HELP: &[Binding] = &[
    row("↑ ↓ k j", SCROLL, "scroll the help"),
    row("PgUp PgDn", PAGE, "scroll a page"),
    row("Home End g G", ENDS, "top / bottom"),
    Binding {
        label: "Esc ?",
        keys: &[
            key(KeyCode::Esc, KeyAction::Close),
            key(KeyCode::Char('?'), KeyAction::Close),
            key(KeyCode::Char('h'), KeyAction::Close),
            key(KeyCode::F(1), KeyAction::Close),
            key(KeyCode::Char('q'), KeyAction::Close),
        ],
        help: "close this help (also h, F1, q)",
        watch_help: None,
        footer: Some("close"),
    },
];

/// The map of a screen.
#[must_use]
pub fn map(context: Context) -> &'static [Binding] {
    match context {
        Context::Panes => PANES,
        Context::Runs => RUNS,
        Context::Sample => SAMPLE,
        Context::Log => LOG,
        Context::Output => OUTPUT,
        Context::Dialog => DIALOG,
        Context::Help => HELP,
    }
}

/// The sections of the help overlay: a title and its map.
pub const SECTIONS: &[(&str, Context)] = &[
    ("the panes", Context::Panes),
    ("several runs (watch RUN_A RUN_B ...)", Context::Runs),
    ("a sample (Enter)", Context::Sample),
    ("the log (L)", Context::Log),
    ("the job's output (O)", Context::Output),
    ("a question", Context::Dialog),
    ("this help", Context::Help),
];

/// The commands no key sends, and why: the help overlay names them with
/// the way to send them.
pub const WITHOUT_KEY: &[(CommandKind, &str)] = &[(
    CommandKind::Set,
    "ctl RUN_DIR set KEY=VALUE (or config.json)",
)];

/// Maps a key press on `context` to its action.
#[must_use]
pub fn action_for(context: Context, key: KeyEvent) -> Option<KeyAction> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let control = key.modifiers.contains(KeyModifiers::CONTROL);
    map(context)
        .iter()
        .flat_map(|binding| binding.keys)
        .find(|(modifiers, code, _)| {
            *code == key.code && modifiers.contains(KeyModifiers::CONTROL) == control
        })
        .map(|&(_, _, action)| action)
}

/// How a key press is named in a footer answer: `x`, `Ctrl-x`, `F5`.
#[must_use]
pub fn name(key: KeyEvent) -> String {
    let base = match key.code {
        KeyCode::Char(' ') => "Space".to_owned(),
        KeyCode::Char(c) => c.to_string(),
        KeyCode::F(n) => format!("F{n}"),
        other => format!("{other:?}"),
    };
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        format!("Ctrl-{base}")
    } else if key.modifiers.contains(KeyModifiers::ALT) {
        format!("Alt-{base}")
    } else {
        base
    }
}

/// The README's key table: every section of the help, in Markdown, with
/// the difference `watch` makes.
#[cfg(test)]
#[must_use]
pub fn markdown_table() -> String {
    use std::fmt::Write as _;
    let mut out = String::from(
        "| where | key | does | in `trainui run` | in `watch` |\n|---|---|---|---|---|\n",
    );
    let said = |binding: &Binding, audience| match binding.help_for(audience) {
        None => "(not offered)".to_owned(),
        Some(help) if help == binding.help => "same".to_owned(),
        Some(help) => help.to_owned(),
    };
    for &(title, context) in SECTIONS {
        for binding in map(context) {
            let job = match (
                said(binding, Audience::Job { restarts: false }),
                said(binding, Audience::Job { restarts: true }),
            ) {
                (without, with) if without == with => without,
                (without, with) => format!("{without}; with `--restart-on-stall`: {with}"),
            };
            let watch = said(binding, Audience::Watcher);
            let label = binding.label.replace(' ', "` `");
            let _ = writeln!(
                out,
                "| {title} | `{label}` | {} | {job} | {watch} |",
                binding.help
            );
        }
    }
    for (kind, how) in WITHOUT_KEY {
        let _ = writeln!(out, "| no key | `{}` | {how} | same | same |", kind.word());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The commands the keys send, pressed on a training and on a paused
    /// run (each key after a fresh start; `q` confirmed with `y`).
    fn commands_sent_by_keys() -> Vec<CommandKind> {
        use crate::tui::app::{App, Msg};
        use trainui_protocol::events::{Event, RunState};
        let mut sent = Vec::new();
        for state in [RunState::Training, RunState::Paused] {
            for binding in PANES {
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
    fn every_key_of_every_map_maps_to_its_action_and_no_key_twice() {
        for &context in &[
            Context::Panes,
            Context::Runs,
            Context::Sample,
            Context::Log,
            Context::Output,
            Context::Dialog,
            Context::Help,
        ] {
            let mut seen = Vec::new();
            for binding in map(context) {
                for &(modifiers, code, action) in binding.keys {
                    let found = action_for(context, KeyEvent::new(code, modifiers));
                    assert_eq!(found, Some(action), "{context:?} {}", binding.label);
                    assert!(
                        !seen.contains(&(modifiers, code)),
                        "{context:?}: {code:?} twice"
                    );
                    seen.push((modifiers, code));
                }
            }
        }
        let ctrl_x = KeyEvent::new(KeyCode::Char('x'), KeyModifiers::CONTROL);
        assert_eq!(action_for(Context::Panes, ctrl_x), None);
        let ctrl_q = KeyEvent::new(KeyCode::Char('q'), KeyModifiers::CONTROL);
        assert_eq!(
            action_for(Context::Panes, ctrl_q),
            None,
            "only Ctrl-C quits with Control"
        );
    }

    #[test]
    fn the_keys_of_several_runs_take_no_key_of_the_panes() {
        for binding in RUNS {
            for &(modifiers, code, _) in binding.keys {
                assert_eq!(
                    action_for(Context::Panes, KeyEvent::new(code, modifiers)),
                    None,
                    "{} is a key of the panes already",
                    binding.label
                );
            }
        }
    }

    #[test]
    fn the_readme_key_table_is_the_key_map() {
        let readme_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
        let readme = std::fs::read_to_string(readme_path).expect("README.md is readable");
        let (begin, end) = ("<!-- keys:begin -->\n", "<!-- keys:end -->");
        let start = readme.find(begin).expect("README has a keys:begin mark") + begin.len();
        let stop = readme.find(end).expect("README has a keys:end mark");
        let table = markdown_table();
        if std::env::var_os("TRAINUI_BLESS").is_some() {
            let updated = format!("{}{table}{}", &readme[..start], &readme[stop..]);
            std::fs::write(readme_path, updated).expect("README.md is writable");
            return;
        }
        assert_eq!(
            &readme[start..stop],
            table,
            "the README's key table differs from the key map \
             (TRAINUI_BLESS=1 cargo test -p trainui keys rewrites it)"
        );
    }
}
