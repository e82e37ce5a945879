//! Alerts: the events a person wants to hear about without watching (a run
//! finished, failed, stalled or recovered, its timeout rate passed the
//! warning, its loss was not finite), told two ways:
//!
//! - to the terminal of a TUI or `watch`: a bell and a desktop notification
//!   (OSC 9, as iTerm2, WezTerm, Windows Terminal and foot show it; OSC 777,
//!   as rxvt, Konsole and GNOME's VTE do), passed through tmux when inside
//!   it. Escape sequences travel over SSH like the screen itself.
//! - to `alerts.command`, a user's shell command run with the event's
//!   events.jsonl line on stdin (mail, a chat webhook), on a thread of its
//!   own with a time limit; a failure comes back as a warning.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use trainui_protocol::events::{Event, RunState};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Finished,
    Stopped,
    Failed,
    Stalled,
    Recovered,
    TimeoutRate,
    NonFinite,
}

impl Kind {
    /// The word `alerts.command` gets in `TRAINUI_ALERT`.
    #[must_use]
    pub fn word(self) -> &'static str {
        match self {
            Self::Finished => "finished",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
            Self::Stalled => "stalled",
            Self::Recovered => "recovered",
            Self::TimeoutRate => "timeout_rate",
            Self::NonFinite => "non_finite",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub kind: Kind,
    /// `trainui: RUN finished`.
    pub title: String,
    /// One line of detail.
    pub body: String,
}

/// The alert an event raises, if any. The timeout-rate warning is the
/// warning whose message starts `timeout rate` (as trainui and the Python
/// package word it). The Python package words its alerts alike
/// (`trainui.alerts.of`): protocol/cases/alerts.json holds the cases both
/// answer, blessed from this function.
#[must_use]
pub fn of(event: &Event, run_name: &str) -> Option<Alert> {
    let (kind, body) = match event {
        Event::Finished(summary) => {
            let kind = if summary.state == RunState::Finished {
                Kind::Finished
            } else {
                Kind::Stopped
            };
            let loss = summary
                .loss
                .map_or_else(String::new, |l| format!(", loss {l:.4}"));
            (
                kind,
                format!("at step {}/{}{loss}", summary.step, summary.max_steps),
            )
        }
        Event::Failed { step, message } => (Kind::Failed, format!("at step {step}: {message}")),
        Event::Stalled {
            step,
            phase,
            silent_secs,
            ..
        } => (
            Kind::Stalled,
            format!(
                "no progress for {silent_secs:.0}s at step {step} ({})",
                phase.as_str()
            ),
        ),
        Event::Recovered { step, phase } => (
            Kind::Recovered,
            format!("progress again at step {step} ({})", phase.as_str()),
        ),
        Event::Warning { message, .. } if message.starts_with("timeout rate ") => {
            (Kind::TimeoutRate, message.clone())
        }
        Event::NonFinite {
            step, loss, action, ..
        } => (
            Kind::NonFinite,
            format!("loss {loss} at step {step} ({})", action.as_str()),
        ),
        _ => return None,
    };
    let what = match kind {
        Kind::TimeoutRate => "timeout rate",
        Kind::NonFinite => "non-finite loss",
        other => other.word(),
    };
    Some(Alert {
        kind,
        title: format!("trainui: {run_name} {what}"),
        body,
    })
}

/// The bytes that make a terminal ring and notify: BEL, then OSC 9 and
/// OSC 777 (terminals ignore the one they do not know). Inside tmux
/// (`tmux` true, from `$TMUX`), the notifications are wrapped in its
/// passthrough (which needs `set -g allow-passthrough on`); the bell is
/// tmux's own to show.
#[must_use]
pub fn terminal_bytes(alert: &Alert, tmux: bool) -> Vec<u8> {
    // Text from a run, escaped as everywhere (a control character would
    // end the sequence early); `;` separates OSC 777's fields.
    let clean = |text: &str| -> String { trainui_protocol::text::escape(text).replace(';', " ") };
    let (title, body) = (clean(&alert.title), clean(&alert.body));
    let notifications = [
        format!("\x1b]9;{title}: {body}\x07"),
        format!("\x1b]777;notify;{title};{body}\x07"),
    ];
    let mut bytes = vec![0x07];
    for sequence in notifications {
        if tmux {
            let escaped = sequence.replace('\x1b', "\x1b\x1b");
            bytes.extend(format!("\x1bPtmux;{escaped}\x1b\\").into_bytes());
        } else {
            bytes.extend(sequence.into_bytes());
        }
    }
    bytes
}

/// Whether this process runs inside tmux.
#[must_use]
pub fn in_tmux() -> bool {
    std::env::var_os("TMUX").is_some_and(|v| !v.is_empty())
}

/// The bytes of stderr kept for a failure message.
const STDERR_TAIL: usize = 300;

/// `alerts.command`, run once per alert on a thread of its own.
pub struct AlertCommand {
    command: String,
    timeout: Duration,
    run_dir: PathBuf,
    failures: Sender<String>,
    failed: Receiver<String>,
    running: Vec<JoinHandle<()>>,
}

impl AlertCommand {
    #[must_use]
    pub fn new(command: String, timeout: Duration, run_dir: PathBuf) -> Self {
        let (failures, failed) = mpsc::channel();
        Self {
            command,
            timeout,
            run_dir,
            failures,
            failed,
            running: Vec::new(),
        }
    }

    /// Starts the command for `alert`, `line` (the event's events.jsonl
    /// line) on its stdin; returns at once.
    pub fn start(&mut self, alert: &Alert, line: &[u8]) {
        self.running.retain(|thread| !thread.is_finished());
        let (command, timeout, failures) =
            (self.command.clone(), self.timeout, self.failures.clone());
        let mut child = Command::new("sh");
        // A group of its own: the limit ends what it started too.
        std::os::unix::process::CommandExt::process_group(&mut child, 0);
        child
            .arg("-c")
            .arg(&self.command)
            .env("TRAINUI_ALERT", alert.kind.word())
            .env("TRAINUI_ALERT_TITLE", &alert.title)
            .env("TRAINUI_ALERT_BODY", &alert.body)
            .env("TRAINUI_RUN_DIR", &self.run_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut input = line.to_vec();
        input.push(b'\n');
        let kind = alert.kind.word();
        let spawned = thread::Builder::new()
            .name("alerts-command".into())
            .spawn(move || {
                if let Err(why) = run(child, &input, timeout) {
                    let _ = failures.send(format!(
                        "alerts.command `{command}` ({kind}) {why}; training goes on"
                    ));
                }
            });
        match spawned {
            Ok(thread) => self.running.push(thread),
            Err(err) => {
                let _ = self
                    .failures
                    .send(format!("alerts.command could not start a thread: {err}"));
            }
        }
    }

    /// What failed since the last call.
    #[must_use]
    pub fn failures(&self) -> Vec<String> {
        self.failed.try_iter().collect()
    }

    /// Waits for the commands still running (each ends by its time limit).
    pub fn settle(&mut self) {
        for thread in self.running.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Runs `child` with `input` on stdin until it exits or `timeout` passes
/// (then it is killed). Says why when it did not succeed.
fn run(mut child: Command, input: &[u8], timeout: Duration) -> Result<(), String> {
    let mut process = child.spawn().map_err(|e| format!("could not start: {e}"))?;
    if let Some(mut stdin) = process.stdin.take() {
        // A command that does not read its input may exit first.
        let _ = stdin.write_all(input);
    }
    // stderr is read on a thread of its own and waited for briefly: a
    // process the command left in the background may hold it open.
    let mut stderr = process.stderr.take();
    let (said, text) = mpsc::channel();
    thread::spawn(move || {
        let mut text = Vec::new();
        if let Some(stderr) = stderr.as_mut() {
            let _ = stderr.read_to_end(&mut text);
        }
        let _ = said.send(text);
    });
    let deadline = Instant::now() + timeout;
    let group = process.id();
    let status = loop {
        match process.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = trainui_protocol::process::signal_group(group, libc::SIGKILL);
                let _ = process.kill();
                let _ = process.wait();
                return Err(format!(
                    "ran past its {}s limit and was killed",
                    timeout.as_secs_f64()
                ));
            }
            Err(err) => return Err(format!("could not be waited for: {err}")),
        }
    };
    if status.success() {
        return Ok(());
    }
    let text = text
        .recv_timeout(Duration::from_millis(200))
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let tail: String = text.trim().chars().rev().take(STDERR_TAIL).collect();
    let tail: String = tail.chars().rev().collect();
    let said = if tail.is_empty() {
        String::new()
    } else {
        format!(": {tail}")
    };
    Err(format!("failed ({status}){said}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use trainui_protocol::events::{OnNonFinite, Phase, Summary};

    fn finished(state: RunState) -> Event {
        Event::Finished(Summary {
            step: 3000,
            max_steps: 3000,
            state,
            loss: Some(0.4321),
            elapsed_secs: 120.0,
        })
    }

    #[test]
    fn each_alerting_event_and_only_those_raise_an_alert() {
        let alert = |event: &Event| of(event, "demo").map(|a| (a.kind, a.title, a.body));
        assert_eq!(
            alert(&finished(RunState::Finished)),
            Some((
                Kind::Finished,
                "trainui: demo finished".into(),
                "at step 3000/3000, loss 0.4321".into()
            ))
        );
        assert_eq!(
            alert(&finished(RunState::Stopped)).map(|a| a.0),
            Some(Kind::Stopped)
        );
        let nan = Event::NonFinite {
            step: 7,
            loss: f64::NAN,
            grad_norm: f64::NAN,
            action: OnNonFinite::Stop,
            count: 1,
        };
        assert_eq!(
            alert(&nan),
            Some((
                Kind::NonFinite,
                "trainui: demo non-finite loss".into(),
                "loss NaN at step 7 (stop)".into()
            ))
        );
        let stalled = Event::Stalled {
            step: 5,
            phase: Phase::Generating,
            silent_secs: 301.0,
            timeout_secs: 300.0,
        };
        assert_eq!(alert(&stalled).map(|a| a.0), Some(Kind::Stalled));
        let recovered = Event::Recovered {
            step: 5,
            phase: Phase::Training,
        };
        assert_eq!(alert(&recovered).map(|a| a.0), Some(Kind::Recovered));
        let failed = Event::Failed {
            step: 9,
            message: "out of memory".into(),
        };
        assert_eq!(
            alert(&failed).map(|a| a.2),
            Some("at step 9: out of memory".into())
        );
        let rate = Event::Warning {
            step: 250,
            message: "timeout rate 25.0% (2 of 8 generations) is above ...".into(),
        };
        assert_eq!(alert(&rate).map(|a| a.0), Some(Kind::TimeoutRate));
        let other = Event::Warning {
            step: 250,
            message: "TIMEOUT: val.jsonl:3 exceeded 60s".into(),
        };
        assert_eq!(alert(&other), None);
        assert_eq!(
            alert(&trainui_protocol::events::examples::step(1, 9, 1.0)),
            None
        );
    }

    #[test]
    fn the_terminal_gets_a_bell_and_both_notifications_wrapped_for_tmux() {
        let alert = Alert {
            kind: Kind::Failed,
            title: "trainui: demo failed".into(),
            body: "at step 9; out\x1b[31m of\u{202e} memory".into(),
        };
        let plain = String::from_utf8(terminal_bytes(&alert, false)).unwrap();
        assert_eq!(
            plain,
            "\x07\x1b]9;trainui: demo failed: at step 9  out\\x1b[31m of\\u{202e} memory\x07\
             \x1b]777;notify;trainui: demo failed;at step 9  out\\x1b[31m of\\u{202e} memory\x07"
        );
        let tmux = String::from_utf8(terminal_bytes(&alert, true)).unwrap();
        assert!(
            tmux.starts_with("\x07\x1bPtmux;\x1b\x1b]9;trainui: demo failed"),
            "{tmux:?}"
        );
        assert!(tmux.ends_with("\x07\x1b\\"), "{tmux:?}");
        assert_eq!(tmux.matches("\x1bPtmux;").count(), 2);
    }

    #[test]
    fn the_command_gets_the_event_on_stdin_and_its_failures_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("alert.txt");
        let alert = of(&finished(RunState::Finished), "demo").unwrap();
        let mut command = AlertCommand::new(
            format!(
                "cat > '{}'; echo \"$TRAINUI_ALERT\" >> '{}'",
                out.display(),
                out.display()
            ),
            Duration::from_secs(30),
            dir.path().to_owned(),
        );
        command.start(&alert, br#"{"type":"finished"}"#);
        command.settle();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "{\"type\":\"finished\"}\nfinished\n"
        );
        assert!(command.failures().is_empty());

        let mut failing = AlertCommand::new(
            "echo no webhook >&2; exit 3".into(),
            Duration::from_secs(30),
            dir.path().to_owned(),
        );
        failing.start(&alert, b"{}");
        let mut slow = AlertCommand::new(
            "sleep 30".into(),
            Duration::from_millis(300),
            dir.path().to_owned(),
        );
        let started = Instant::now();
        slow.start(&alert, b"{}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "start returns at once"
        );
        failing.settle();
        slow.settle();
        let failures = failing.failures();
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(
            failures[0].contains("exit status: 3") && failures[0].contains("no webhook"),
            "{failures:?}"
        );
        let failures = slow.failures();
        assert!(failures[0].contains("limit and was killed"), "{failures:?}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the limit holds"
        );

        // A command that fails and leaves a process behind holding its
        // stderr: its failure is still told, without waiting for that one.
        let mut leaving = AlertCommand::new(
            "sleep 60 & echo gone >&2; exit 2".into(),
            Duration::from_secs(30),
            dir.path().to_owned(),
        );
        let started = Instant::now();
        leaving.start(&alert, b"{}");
        leaving.settle();
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "not held by the sleep"
        );
        let failures = leaving.failures();
        assert!(failures[0].contains("exit status: 2"), "{failures:?}");
    }

    // -----------------------------------------------------------------------
    // The golden cases of protocol/cases/alerts.json, which the Python
    // package (trainui.alerts.of) must answer alike.

    use std::fmt::Write as _;

    const CASES: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../protocol/cases/alerts.json"
    );
    const BLESS: &str = "TRAINUI_BLESS=1 cargo test --release -p trainui --lib alerts::";

    /// A JSON object with its keys in the order they were written, so that
    /// blessing keeps the hand-written events as they are laid out.
    struct Ordered(Vec<(String, serde_json::Value)>);

    impl<'de> serde::Deserialize<'de> for Ordered {
        fn deserialize<D: serde::Deserializer<'de>>(from: D) -> Result<Self, D::Error> {
            struct Keys;
            impl<'de> serde::de::Visitor<'de> for Keys {
                type Value = Ordered;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<M: serde::de::MapAccess<'de>>(
                    self,
                    mut map: M,
                ) -> Result<Ordered, M::Error> {
                    let mut entries = Vec::new();
                    while let Some(entry) = map.next_entry()? {
                        entries.push(entry);
                    }
                    Ok(Ordered(entries))
                }
            }
            from.deserialize_map(Keys)
        }
    }

    impl Ordered {
        fn value(&self) -> serde_json::Value {
            serde_json::Value::Object(self.0.iter().cloned().collect())
        }

        /// `{"a": 1, "b": [2, 3]}`, keys in order.
        fn render(&self) -> String {
            let fields: Vec<String> = self
                .0
                .iter()
                .map(|(key, value)| format!("{}: {}", flat(&key.clone().into()), flat(value)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
    }

    /// A value on one line, a space after each `:` and `,` (nested keys in
    /// serde_json's order).
    fn flat(value: &serde_json::Value) -> String {
        use serde_json::Value;
        match value {
            Value::Object(map) => {
                Ordered(map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).render()
            }
            Value::Array(items) => {
                let items: Vec<String> = items.iter().map(flat).collect();
                format!("[{}]", items.join(", "))
            }
            scalar => scalar.to_string(),
        }
    }

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct CaseFile {
        about: String,
        cases: Vec<GoldenCase>,
    }

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct GoldenCase {
        name: String,
        why: String,
        run_name: String,
        event: Ordered,
        /// `None` until blessed; `Some(null)` for an event that raises none.
        #[serde(default, deserialize_with = "present")]
        alert: Option<serde_json::Value>,
    }

    fn present<'de, D: serde::Deserializer<'de>>(
        from: D,
    ) -> Result<Option<serde_json::Value>, D::Error> {
        serde::Deserialize::deserialize(from).map(Some)
    }

    /// What `of` answers for a case: null, or the alert as the file holds it.
    fn answer(case: &GoldenCase) -> Option<Ordered> {
        let event: Event = serde_json::from_value(case.event.value())
            .unwrap_or_else(|err| panic!("{CASES}: case {:?}: not an event: {err}", case.name));
        of(&event, &case.run_name).map(|alert| {
            Ordered(vec![
                ("kind".into(), alert.kind.word().into()),
                ("title".into(), alert.title.into()),
                ("body".into(), alert.body.into()),
            ])
        })
    }

    /// The file as the checked-in cases lay JSON out: one line per field of
    /// a case, each value on one line, plain ASCII (anything else as a
    /// `\uXXXX` escape, which reads back as the same text).
    fn render(file: &CaseFile, alerts: &[Option<Ordered>]) -> String {
        let text = |s: &str| serde_json::Value::from(s).to_string();
        let cases: Vec<String> = file
            .cases
            .iter()
            .zip(alerts)
            .map(|(case, alert)| {
                let alert = alert.as_ref().map_or_else(|| "null".to_owned(), Ordered::render);
                format!(
                    "    {{\n      \"name\": {},\n      \"why\": {},\n      \"run_name\": {},\n      \
                     \"event\": {},\n      \"alert\": {alert}\n    }}",
                    text(&case.name),
                    text(&case.why),
                    text(&case.run_name),
                    case.event.render(),
                )
            })
            .collect();
        let json = format!(
            "{{\n  \"about\": {},\n  \"cases\": [\n{}\n  ]\n}}\n",
            text(&file.about),
            cases.join(",\n")
        );
        let mut ascii = String::with_capacity(json.len());
        for c in json.chars() {
            if c.is_ascii() && c != '\u{7f}' {
                ascii.push(c);
            } else {
                for unit in c.encode_utf16(&mut [0; 2]) {
                    let _ = write!(ascii, "\\u{unit:04x}");
                }
            }
        }
        ascii
    }

    #[test]
    fn events_raise_the_alerts_the_golden_cases_say() {
        let written = std::fs::read_to_string(CASES)
            .unwrap_or_else(|err| panic!("{CASES}: cannot read: {err}"));
        let file: CaseFile =
            serde_json::from_str(&written).unwrap_or_else(|err| panic!("{CASES}: {err}"));
        let mut names = std::collections::HashSet::new();
        let mut problems = Vec::new();
        let answers: Vec<Option<Ordered>> = file.cases.iter().map(answer).collect();
        for (case, answer) in file.cases.iter().zip(&answers) {
            assert!(
                names.insert(&case.name),
                "{CASES}: two cases named {:?}",
                case.name
            );
            let answer = answer
                .as_ref()
                .map_or(serde_json::Value::Null, Ordered::value);
            match &case.alert {
                None => problems.push(format!("case {:?} has no `alert` yet", case.name)),
                Some(expected) if *expected != answer => problems.push(format!(
                    "case {:?}:\n    the file says {expected}\n    Rust now says {answer}",
                    case.name
                )),
                Some(_) => {}
            }
        }
        if std::env::var_os("TRAINUI_BLESS").is_some() {
            let blessed = render(&file, &answers);
            if blessed != written {
                std::fs::write(CASES, blessed)
                    .unwrap_or_else(|err| panic!("{CASES}: cannot write: {err}"));
            }
            return;
        }
        assert!(
            problems.is_empty(),
            "protocol/cases/alerts.json: {} case(s) differ from what alerts::of says:\n  {}\n\
             The expected side is Rust's answer, never edited by hand. If the change is \
             deliberate, run `{BLESS}`, review the diff, and make the Python package say the \
             same (python/trainui/alerts.py); otherwise fix the Rust code.",
            problems.len(),
            problems.join("\n  ")
        );
    }
}
