//! The lines events print as: readable, greppable text for the events worth
//! printing, as headless mode shows them on stdout and every run writes them
//! (always plain) to RUN_DIR/training_output.log; and how numbers and
//! durations read there and on screen.

use std::fmt::Write;

use crate::eta;
use crate::events::{EvalSummary, Event, GenerationOutcome, OnNonFinite, RunState, SampleResult};
use crate::text::escape;

/// How lines are decorated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// ANSI colours for markers, warnings and failures.
    pub color: bool,
    /// Emoji before MATCH, TIMEOUT and the like.
    pub emoji: bool,
}

/// A printable line: `text` for the log file, `colored` for a terminal.
pub struct Line {
    pub text: String,
    pub colored: String,
}

/// Longest model output printed in full; the events keep all of it.
const MAX_PRINTED_CHARS: usize = 400;

impl Style {
    /// The plain ASCII style of the log file.
    pub const PLAIN: Self = Self {
        color: false,
        emoji: false,
    };

    /// Colour and emoji only on a terminal, never with `--plain` or
    /// `NO_COLOR`; emoji only in a UTF-8 locale.
    #[must_use]
    pub fn detect(plain: bool, stdout_is_terminal: bool) -> Self {
        let fancy = stdout_is_terminal && colors_wanted(plain);
        Self {
            color: fancy,
            emoji: fancy && unicode_wanted(plain),
        }
    }

    fn paint(self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    /// `text` with its emoji and colour, as far as this style allows.
    fn marker(self, emoji: &str, code: &str, text: &str) -> String {
        let text = if self.emoji {
            format!("{emoji} {text}")
        } else {
            text.to_owned()
        };
        self.paint(code, &text)
    }
}

/// Colours are wanted: no `--plain`, no NO_COLOR (set and not empty) and
/// no `TERM=dumb`.
#[must_use]
pub fn colors_wanted(plain: bool) -> bool {
    Look::from_env(plain, |name| std::env::var(name).ok()).color
}

/// Whether the screen may use more than ASCII (box drawing, braille,
/// typography): not under `--plain`, `NO_COLOR` or `TERM=dumb` (each asks
/// for a plain screen), and only in a UTF-8 locale (the first of `LC_ALL`,
/// `LC_CTYPE`, `LANG` that is set; none set is the C locale).
#[must_use]
pub fn unicode_wanted(plain: bool) -> bool {
    Look::from_env(plain, |name| std::env::var(name).ok()).unicode
}

/// What a terminal screen may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Look {
    pub color: bool,
    pub unicode: bool,
}

impl Look {
    /// The look `plain` and the environment (read through `var`) ask for.
    pub fn from_env(plain: bool, var: impl Fn(&str) -> Option<String>) -> Self {
        let set = |name: &str| var(name).filter(|v| !v.is_empty());
        let locale = set("LC_ALL")
            .or_else(|| set("LC_CTYPE"))
            .or_else(|| set("LANG"));
        let utf8 = locale.is_some_and(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("utf-8") || l.contains("utf8")
        });
        let color = !plain && set("NO_COLOR").is_none() && set("TERM").as_deref() != Some("dumb");
        Self {
            color,
            unicode: color && utf8,
        }
    }
}

/// Formats `event`, or `None` for events that print nothing.
#[must_use]
pub fn format(event: &Event, style: Style) -> Option<Line> {
    let text = format_styled(event, Style::PLAIN)?;
    let colored = if style == Style::PLAIN {
        text.clone()
    } else {
        format_styled(event, style)?
    };
    Some(Line { text, colored })
}

fn format_styled(event: &Event, style: Style) -> Option<String> {
    Some(match event {
        Event::Started(info) => {
            let mut line = format!(
                "run {} | device {} | {} parameters | vocab {} | {} train / {} val examples",
                escape(&info.run_name),
                escape(&info.device),
                thousands(info.parameters),
                info.vocab_size,
                thousands(info.train_examples),
                thousands(info.val_examples),
            );
            if info.skipped_overlong > 0 {
                let _ = write!(line, " | {} overlong skipped", info.skipped_overlong);
            }
            if let Some(from) = &info.resumed_from {
                let _ = write!(
                    line,
                    "\nresumed from {} at step {}",
                    escape(from),
                    info.start_step
                );
            }
            line
        }
        Event::Step(m) => {
            let mut line = format!(
                "step {}/{} | loss {:.4} | lr {:.2e}",
                m.step, m.max_steps, m.loss, m.learning_rate,
            );
            // A job that counts no tokens (not a language model) shows no rate.
            if m.tokens_per_sec > 0.0 {
                let _ = write!(
                    line,
                    " | {} tok/s",
                    thousands(m.tokens_per_sec.round() as u64)
                );
            }
            let _ = write!(line, " | elapsed {}", duration(m.elapsed_secs));
            // No ETA until the producer has one worth showing.
            if let Some(eta) = eta::shown(m.step, m.max_steps, m.eta_secs) {
                let _ = write!(line, " | eta {}", duration(eta));
            }
            if let Some(norm) = m.grad_norm {
                let _ = write!(line, " | grad norm {norm:.3}");
            }
            line
        }
        Event::State { step, state } => match state {
            RunState::Paused | RunState::Stopping | RunState::Stalled => {
                format!("state {} at step {step}", state.as_str())
            }
            _ => return None,
        },
        Event::CommandAck {
            command, message, ..
        } => {
            format!("command {}: {}", command.word(), escape(message))
        }
        Event::Settings { .. } => return None,
        Event::Warning { step, message } => style.marker(
            "⚠️ ",
            "33",
            &format!("WARNING at step {step}: {}", escape(message)),
        ),
        Event::EvalStarted { step, .. } => {
            let rule = "=".repeat(64);
            format!("{rule}\nFULL EVAL - Step {step}\n{rule}")
        }
        Event::ValLoss { .. } | Event::GenerationStarted(_) | Event::GenerationProgress { .. } => {
            return None;
        }
        Event::Sample(sample) => format_sample(sample, style),
        Event::EvalFinished(summary) => format_eval_summary(summary),
        Event::Checkpoint { step, path } => {
            format!("checkpoint saved at step {step}: {}", escape(path))
        }
        Event::NonFinite {
            step,
            loss,
            grad_norm,
            action,
            count,
        } => {
            let what = match action {
                OnNonFinite::Stop => "the run stops without saving",
                OnNonFinite::Skip => "its update was skipped",
                OnNonFinite::Warn => "its update was applied",
            };
            style.marker(
                "⚠️ ",
                "1;33",
                &format!(
                    "WARNING at step {step}: NON-FINITE loss {loss}, gradient norm {grad_norm}: \
                     {what} (train.on_nonfinite = {}; {count} such steps in the run)",
                    action.as_str()
                ),
            )
        }
        Event::Stalled {
            step,
            phase,
            silent_secs,
            timeout_secs,
        } => style.marker(
            "🧊",
            "1;35",
            &format!(
                "STALLED: no progress for {silent_secs:.0}s (watchdog.stall_timeout_seconds = \
                 {timeout_secs}) at step {step}, while {}",
                phase.as_str()
            ),
        ),
        Event::Control {
            id,
            command,
            accepted: true,
            message,
        } => {
            format!(
                "control {} ({}): {}",
                escape(command),
                escape(id),
                escape(message)
            )
        }
        Event::Control {
            id,
            command,
            accepted: false,
            message,
        } => style.marker(
            "⚠️ ",
            "33",
            &format!(
                "control {} ({}) REJECTED: {}",
                escape(command),
                escape(id),
                escape(message)
            ),
        ),
        Event::Recovered { step, phase } => {
            format!(
                "recovered: progress again at step {step} ({})",
                phase.as_str()
            )
        }
        Event::Finished(summary) => {
            let how = if summary.state == RunState::Stopped {
                "stopped"
            } else {
                "finished"
            };
            let loss = summary
                .loss
                .map_or_else(|| "-".to_owned(), |loss| format!("{loss:.4}"));
            format!(
                "{how} at step {}/{} | final loss {loss} | elapsed {}",
                summary.step,
                summary.max_steps,
                duration(summary.elapsed_secs)
            )
        }
        Event::Failed { step, message } => style.marker(
            "💥",
            "1;31",
            &format!("FAILED at step {step}: {}", escape(message)),
        ),
    })
}

fn format_sample(s: &SampleResult, style: Style) -> String {
    let partial = if s.outcome == GenerationOutcome::Completed {
        ""
    } else {
        ", partial"
    };
    // The prompt as Rust's `{:?}` writes it: quoted, with every control
    // and bidirectional character escaped.
    let whom = format!(
        "example {}, {}, prompt {:?}",
        s.example,
        escape(&s.origin),
        clip(&s.prompt, 60)
    );
    let verdict = match &s.outcome {
        GenerationOutcome::Completed if s.exact_match => style.marker("✅", "32", "MATCH"),
        GenerationOutcome::Completed => style.marker("❌", "31", "MISMATCH"),
        GenerationOutcome::TimedOut => style.marker(
            "⏱️ ",
            "1;33",
            &format!(
                "TIMEOUT: Model generation exceeded {}s at step {} ({whom}; {} tokens so far)",
                s.timeout_secs, s.step, s.output_tokens
            ),
        ),
        GenerationOutcome::Aborted => style.marker(
            "🛑",
            "1;33",
            &format!(
                "ABORTED: generation stopped by the operator after {:.1}s at step {} ({whom})",
                s.elapsed_secs, s.step
            ),
        ),
        GenerationOutcome::Error { message } => style.marker(
            "💥",
            "1;31",
            &format!(
                "ERROR: generation failed at step {} ({whom}): {}",
                s.step,
                escape(message)
            ),
        ),
    };
    let loss = s
        .loss
        .map_or_else(|| "-".to_owned(), |loss| format!("{loss:.4}"));
    [
        format!(
            "--- Sample {}/{} (example {}, {}) ---",
            s.sample,
            s.of,
            s.example,
            escape(&s.origin)
        ),
        format!("PROMPT: {}", printable(&s.prompt)),
        format!(
            "GOLDEN ({} tokens): {}",
            s.golden_tokens,
            printable(&s.golden)
        ),
        format!(
            "MODEL ({} tokens{partial}): {}",
            s.output_tokens,
            printable(&s.output)
        ),
        verdict,
        format!("LOSS ON THIS EXAMPLE: {loss}"),
        format!(
            "TIME: {:.3}s, {:.1} tokens/s",
            s.elapsed_secs, s.tokens_per_sec
        ),
    ]
    .join("\n")
}

fn format_eval_summary(e: &EvalSummary) -> String {
    let number = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.4}"));
    let gap = e.gap.map_or_else(|| "-".to_owned(), |g| format!("{g:+.4}"));
    let losses = format!(
        "Loss Comparison: Train={} | Val={} | Gap={gap}",
        number(e.train_loss),
        number(e.val_loss),
    );
    // An evaluation that generated nothing (a validation loss alone) has
    // no match to tell.
    if e.samples == 0 {
        return losses;
    }
    let c = &e.counters;
    format!(
        "{losses}\n\
         EXACT MATCH: {}/{} ({:.1}%) | generations {}: {} completed, {} timed out, {} aborted, \
         {} errors (timeout rate {:.1}%)",
        e.matches,
        e.samples,
        100.0 * e.exact_match,
        c.generations,
        c.completed,
        c.timed_out,
        c.aborted,
        c.errors,
        100.0 * c.timeout_rate(),
    )
}

/// Model text on one line (newlines shown as `\n`, every character that
/// could drive a terminal escaped), cut when very long.
fn printable(text: &str) -> String {
    let one_line = escape(text).into_owned();
    let chars = one_line.chars().count();
    if chars <= MAX_PRINTED_CHARS {
        return one_line;
    }
    let more = chars - MAX_PRINTED_CHARS;
    format!(
        "{}... ({more} more characters)",
        clip(&one_line, MAX_PRINTED_CHARS)
    )
}

fn clip(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// `1234567` as `1,234,567`.
#[must_use]
pub fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `3s ago`, `4:05 ago`, `1:02:03 ago`.
#[must_use]
pub fn ago(secs: f64) -> String {
    if secs < 60.0 {
        format!("{:.0}s ago", secs.max(0.0).floor())
    } else {
        format!("{} ago", duration(secs))
    }
}

/// Seconds as `H:MM:SS`.
#[must_use]
pub fn duration(secs: f64) -> String {
    let total = if secs.is_finite() {
        secs.max(0.0).round() as u64
    } else {
        0
    };
    format!("{}:{:02}:{:02}", total / 3600, total / 60 % 60, total % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{SampleResult, StepMetrics};

    #[test]
    fn plain_no_color_dumb_terminals_and_other_locales_ask_for_a_plain_look() {
        let look = |plain: bool, vars: &[(&str, &str)]| {
            let vars: Vec<(String, String)> = vars
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            Look::from_env(plain, |name| {
                vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
            })
        };
        let fancy = Look {
            color: true,
            unicode: true,
        };
        let utf8 = [("LANG", "en_US.UTF-8"), ("TERM", "xterm-256color")];
        assert_eq!(look(false, &utf8), fancy);
        let plain = Look {
            color: false,
            unicode: false,
        };
        assert_eq!(look(true, &utf8), plain, "--plain");
        assert_eq!(look(false, &[("NO_COLOR", "1"), utf8[0]]), plain);
        assert_eq!(look(false, &[("TERM", "dumb"), utf8[0]]), plain);
        let ascii_in_colour = Look {
            color: true,
            unicode: false,
        };
        assert_eq!(look(false, &[("LANG", "C")]), ascii_in_colour);
        assert_eq!(look(false, &[]), ascii_in_colour, "no locale is C");
        assert_eq!(
            look(false, &[("LC_ALL", "C"), ("LANG", "en_US.UTF-8")]),
            ascii_in_colour,
            "LC_ALL first"
        );
        assert_eq!(look(false, &[("LC_CTYPE", "C.utf8")]), fancy);
        assert_eq!(
            look(false, &[("NO_COLOR", ""), utf8[0]]),
            fancy,
            "empty is unset"
        );
    }

    #[test]
    fn step_lines_are_greppable() {
        let event = Event::Step(StepMetrics {
            step: 120,
            max_steps: 2000,
            loss: 1.234_56,
            learning_rate: 3e-4,
            tokens_per_sec: 12_345.4,
            elapsed_secs: 83.0,
            eta_secs: 3725.0,
            grad_norm: None,
            tokens_seen: None,
        });
        let line = format(
            &event,
            Style {
                color: true,
                emoji: true,
            },
        )
        .unwrap();
        assert_eq!(
            line.text,
            "step 120/2000 | loss 1.2346 | lr 3.00e-4 | 12,345 tok/s | elapsed 0:01:23 | eta 1:02:05"
        );
    }

    #[test]
    fn colour_is_only_on_the_terminal_line() {
        let event = Event::Failed {
            step: 3,
            message: "boom".into(),
        };
        let line = format(
            &event,
            Style {
                color: true,
                emoji: true,
            },
        )
        .unwrap();
        assert_eq!(line.text, "FAILED at step 3: boom");
        assert!(line.colored.starts_with("\x1b[1;31m"));
        let line = format(&event, Style::PLAIN).unwrap();
        assert_eq!(line.colored, line.text);
    }

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(duration(3599.6), "1:00:00");
    }

    fn sample(outcome: GenerationOutcome, output: &str) -> Event {
        Event::Sample(SampleResult {
            step: 2500,
            sample: 1,
            of: 4,
            example: 17,
            origin: "val.jsonl:18".into(),
            prompt: "47+38=".into(),
            golden: "85".into(),
            output: output.into(),
            golden_tokens: 2,
            output_tokens: output.len() as u64,
            exact_match: outcome == GenerationOutcome::Completed && output == "85",
            outcome,
            loss: Some(0.794_2),
            elapsed_secs: 60.001,
            tokens_per_sec: 7.0,
            timeout_secs: 60.0,
            counters: crate::events::GenerationCounters::default(),
        })
    }

    #[test]
    fn samples_print_the_incident_markers() {
        let timed_out = format(
            &sample(GenerationOutcome::TimedOut, "1111\n2222"),
            Style::PLAIN,
        )
        .unwrap();
        let lines: Vec<&str> = timed_out.text.lines().collect();
        assert_eq!(lines[1], "PROMPT: 47+38=");
        assert_eq!(lines[2], "GOLDEN (2 tokens): 85");
        assert_eq!(lines[3], "MODEL (9 tokens, partial): 1111\\n2222");
        assert_eq!(
            lines[4],
            "TIMEOUT: Model generation exceeded 60s at step 2500 (example 17, val.jsonl:18, \
             prompt \"47+38=\"; 9 tokens so far)"
        );
        assert_eq!(lines[5], "LOSS ON THIS EXAMPLE: 0.7942");

        let matched = sample(GenerationOutcome::Completed, "85");
        assert!(
            format(&matched, Style::PLAIN)
                .unwrap()
                .text
                .contains("\nMATCH\n")
        );
        let fancy = format(
            &matched,
            Style {
                color: false,
                emoji: true,
            },
        )
        .unwrap();
        assert!(fancy.colored.contains("\n✅ MATCH\n"), "{}", fancy.colored);
        assert!(fancy.text.is_ascii(), "the log file stays ASCII");
        let error = GenerationOutcome::Error {
            message: "index out of range".into(),
        };
        let text = format(&sample(error, ""), Style::PLAIN).unwrap().text;
        assert!(
            text.contains("ERROR: generation failed at step 2500 (example 17"),
            "{text}"
        );
    }

    #[test]
    fn text_from_a_run_or_a_model_is_printed_escaped_on_its_line() {
        let hostile = "a\x1b]0;t\x07\x1b[8m\u{9b}\u{202e}z\tq\r\n";
        let mut event = sample(
            GenerationOutcome::Error {
                message: hostile.into(),
            },
            hostile,
        );
        if let Event::Sample(s) = &mut event {
            s.origin = hostile.into();
            s.prompt = hostile.into();
            s.golden = hostile.into();
        }
        let text = format(&event, Style::PLAIN).unwrap().text;
        let shown = r"a\x1b]0;t\x07\x1b[8m\u{9b}\u{202e}z\tq\r\n";
        assert_eq!(
            text.lines().collect::<Vec<_>>()[..5],
            [
                format!("--- Sample 1/4 (example 17, {shown}) ---").as_str(),
                &format!("PROMPT: {shown}"),
                &format!("GOLDEN (2 tokens): {shown}"),
                &format!("MODEL (21 tokens, partial): {shown}"),
                &format!(
                    "ERROR: generation failed at step 2500 (example 17, {shown}, prompt \
                     {hostile:?}): {shown}"
                ),
            ]
        );
        assert!(!text.chars().any(|c| crate::text::is_unsafe(c) && c != '\n'));
        for event in [
            Event::Warning {
                step: 1,
                message: hostile.into(),
            },
            Event::Failed {
                step: 1,
                message: hostile.into(),
            },
            Event::Checkpoint {
                step: 1,
                path: hostile.into(),
            },
            Event::Control {
                id: hostile.into(),
                command: hostile.into(),
                accepted: false,
                message: hostile.into(),
            },
        ] {
            let line = format(&event, Style::PLAIN).unwrap().text;
            assert!(!line.contains('\n'), "one line: {line}");
            assert!(line.contains(shown), "{line}");
            assert!(!line.chars().any(crate::text::is_unsafe), "{line}");
        }
    }

    #[test]
    fn very_long_output_is_cut_in_print() {
        let long = "7".repeat(MAX_PRINTED_CHARS + 50);
        let text = format(&sample(GenerationOutcome::TimedOut, &long), Style::PLAIN)
            .unwrap()
            .text;
        assert!(text.contains("... (50 more characters)"), "{text}");
    }
}
