//! Headless output: one readable, greppable line per event worth printing.
//! The same lines go to stdout and to RUN_DIR/training_output.log.

use crate::events::{Event, RunState};

/// How lines are decorated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// ANSI colours for warnings and failures (never in the log file).
    pub color: bool,
}

/// A printable line: `text` for the log file, `colored` for a terminal.
pub struct Line {
    pub text: String,
    pub colored: String,
}

impl Style {
    /// Colour only on a terminal, and never with `--plain` or `NO_COLOR`.
    #[must_use]
    pub fn detect(plain: bool, stdout_is_terminal: bool) -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Self {
            color: stdout_is_terminal && !plain && !no_color,
        }
    }

    fn paint(self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}

/// Formats `event` as a line, or `None` for events that print nothing.
#[must_use]
pub fn format(event: &Event, style: Style) -> Option<Line> {
    let plain = |text: String| {
        Some(Line {
            colored: text.clone(),
            text,
        })
    };
    match event {
        Event::Started(info) => plain(format!(
            "run {} | device {} | {} parameters | vocab {} | {} train / {} val examples{}",
            info.run_name,
            info.device,
            thousands(info.parameters),
            info.vocab_size,
            thousands(info.train_examples),
            thousands(info.val_examples),
            if info.skipped_overlong > 0 {
                format!(" | {} overlong skipped", info.skipped_overlong)
            } else {
                String::new()
            },
        )),
        Event::Step(m) => plain(format!(
            "step {}/{} | loss {:.4} | lr {:.2e} | {} tok/s | elapsed {} | eta {}",
            m.step,
            m.max_steps,
            m.loss,
            m.learning_rate,
            thousands(m.tokens_per_sec.round() as u64),
            duration(m.elapsed_secs),
            duration(m.eta_secs),
        )),
        Event::State { step, state } => matches!(
            state,
            RunState::Paused | RunState::Stopping | RunState::Stalled
        )
        .then(|| plain(format!("state {} at step {step}", state.as_str())))
        .flatten(),
        Event::CommandAck {
            command, message, ..
        } => plain(format!("command {}: {message}", serde_name(command))),
        Event::Warning { step, message } => {
            let text = format!("WARNING at step {step}: {message}");
            Some(Line {
                colored: style.paint("33", &text),
                text,
            })
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
            plain(format!(
                "{how} at step {}/{} | final loss {loss} | elapsed {}",
                summary.step,
                summary.max_steps,
                duration(summary.elapsed_secs)
            ))
        }
        Event::Failed { step, message } => {
            let text = format!("FAILED at step {step}: {message}");
            Some(Line {
                colored: style.paint("1;31", &text),
                text,
            })
        }
    }
}

fn serde_name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
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
    use crate::events::StepMetrics;

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
        });
        let line = format(&event, Style { color: true }).unwrap();
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
        let line = format(&event, Style { color: true }).unwrap();
        assert_eq!(line.text, "FAILED at step 3: boom");
        assert!(line.colored.starts_with("\x1b[1;31m"));
        let line = format(&event, Style { color: false }).unwrap();
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
}
