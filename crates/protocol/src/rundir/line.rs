//! One line of events.jsonl: an event with its protocol version and time,
//! as it is written (cut to fit when too long) and read back.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::events::{Event, SCHEMA_VERSION, StepMetrics};
use crate::runfile;

/// One line of events.jsonl: the event with its schema version and time.
#[derive(Serialize)]
struct EventRecord<'a> {
    v: u32,
    /// RFC 3339, UTC, milliseconds.
    time: String,
    #[serde(flatten)]
    event: &'a Event,
}

/// The events.jsonl line of `event` written at `time`, without its newline:
/// at most [`runfile::MAX_EVENT_LINE`] bytes, which readers take whole (a
/// longer event has its longest texts cut, each marked, until it fits).
#[must_use]
pub fn event_line(event: &Event, time: SystemTime) -> Vec<u8> {
    recorded(event, time).1
}

/// `event` as it is recorded at `time`, and its line: itself, or, when its
/// line would be longer than [`runfile::MAX_EVENT_LINE`] (a model's output
/// is as long as `eval.max_new_tokens` lets it be), a copy with its longest
/// texts cut, each marked, until it fits. The status folds what was
/// recorded.
pub(super) fn recorded(event: &Event, time: SystemTime) -> (Cow<'_, Event>, Vec<u8>) {
    let line = |event: &Event| {
        let record = EventRecord {
            v: SCHEMA_VERSION,
            time: humantime::format_rfc3339_millis(time).to_string(),
            event,
        };
        serde_json::to_vec(&record).expect("an event serialises")
    };
    let mut written = line(event);
    if written.len() <= runfile::MAX_EVENT_LINE {
        return (Cow::Borrowed(event), written);
    }
    let mut cut = event.clone();
    while written.len() > runfile::MAX_EVENT_LINE {
        let Some(longest) = texts_mut(&mut cut)
            .into_iter()
            .max_by_key(|text| text.len())
        else {
            break;
        };
        let keep = longest.floor_char_boundary(longest.len() / 2);
        let dropped = longest.len() - keep;
        longest.truncate(keep);
        let _ = write!(longest, "... ({dropped} more bytes not recorded)");
        let shorter = line(&cut);
        // The long part is elsewhere (texts too short to cut further): the
        // line stays long, and readers skip it and say so.
        if shorter.len() >= written.len() {
            break;
        }
        written = shorter;
    }
    (Cow::Owned(cut), written)
}

/// The texts of an event that can be long: a model's output and what it
/// was given, and messages.
fn texts_mut(event: &mut Event) -> Vec<&mut String> {
    match event {
        Event::GenerationStarted(start) => vec![&mut start.prompt, &mut start.golden],
        Event::GenerationProgress { text, .. } => vec![text],
        Event::Sample(sample) => vec![&mut sample.prompt, &mut sample.golden, &mut sample.output],
        Event::Warning { message, .. }
        | Event::Failed { message, .. }
        | Event::CommandAck { message, .. }
        | Event::Control { message, .. } => vec![message],
        _ => Vec::new(),
    }
}

/// Only the version of an events.jsonl line.
#[derive(Deserialize)]
struct LineVersion {
    #[serde(default)]
    v: u64,
}

/// An events.jsonl line as an event. Step lines, nearly all of a long
/// run's history, are read straight into their metrics when they start as
/// trainui and the Python package write them (`{"v":N,"time":"…","type":
/// "step",`): the tagged enum's generic path buffers every field first and
/// costs three times as much.
pub(super) fn parse_line(line: &[u8]) -> Option<Event> {
    // One check of the whole line is cheaper than serde_json's of each
    // string in it.
    let line = std::str::from_utf8(line).ok()?;
    let is_step = written_time(line.as_bytes())
        .is_some_and(|(_, rest)| rest.starts_with(br#","type":"step","#));
    if is_step && let Ok(metrics) = serde_json::from_str::<StepMetrics>(line) {
        return Some(Event::Step(metrics));
    }
    serde_json::from_str::<Event>(line).ok()
}

/// Whether an events.jsonl line is a step event as trainui and the Python
/// package write them (`{"v":N,"time":"…","type":"step",`): read without parsing it, for
/// thinning a long history.
#[must_use]
pub fn is_step_line(line: &[u8]) -> bool {
    written_time(line).is_some_and(|(_, rest)| rest.starts_with(br#","type":"step","#))
}

/// The time string of a line that starts as trainui writes it
/// (`{"v":N,"time":"…"`), and what follows its closing quote.
fn written_time(line: &[u8]) -> Option<(&str, &[u8])> {
    let rest = line.strip_prefix(br#"{"v":"#)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let rest = rest[digits..].strip_prefix(br#","time":""#)?;
    let end = rest.iter().position(|&b| b == b'"')?;
    Some((std::str::from_utf8(&rest[..end]).ok()?, &rest[end + 1..]))
}

/// The time an events.jsonl line was written, if it says.
pub(super) fn line_time(line: &[u8]) -> Option<SystemTime> {
    if let Some((time, _)) = written_time(line) {
        return humantime::parse_rfc3339_weak(time).ok();
    }
    let time = serde_json::from_slice::<LineTime>(line).ok()?.time?;
    humantime::parse_rfc3339_weak(&time).ok()
}

/// Only the time of an events.jsonl line.
#[derive(Deserialize)]
struct LineTime {
    #[serde(default)]
    time: Option<String>,
}

/// The version of an events.jsonl line when it is newer than this trainui
/// reads (its fields may not mean what they say here). Lines start with
/// `{"v":N,` as trainui and the Python package write them, which is read
/// without parsing the line twice; other lines are parsed for `v`.
pub(super) fn newer_version(line: &[u8]) -> Option<u64> {
    let version = match line.strip_prefix(br#"{"v":"#) {
        Some(rest) => {
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?
        }
        None => serde_json::from_slice::<LineVersion>(line).ok()?.v,
    };
    (version > u64::from(SCHEMA_VERSION)).then_some(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(step: u64) -> Event {
        crate::events::examples::step(step, 1_000_000, 1.0 / (step as f64 + 1.0))
    }

    #[test]
    fn step_lines_read_the_same_by_the_short_path_and_the_generic_one() {
        let mut with_norm = step(7);
        if let Event::Step(m) = &mut with_norm {
            m.grad_norm = Some(2.5);
            m.loss = f64::NAN;
        }
        let written = [
            // As trainui and the Python package write them.
            String::from_utf8(event_line(&step(3), SystemTime::UNIX_EPOCH)).unwrap(),
            String::from_utf8(event_line(&with_norm, SystemTime::UNIX_EPOCH)).unwrap(),
            // Another writer's field order: the generic path.
            r#"{"type":"step","v":3,"step":9,"max_steps":10,"loss":1.5,"learning_rate":0.1,"tokens_per_sec":5.0,"elapsed_secs":1.0,"eta_secs":0.5}"#.to_owned(),
        ];
        for line in &written {
            let generic: Event = serde_json::from_str(line).unwrap();
            let short = parse_line(line.as_bytes()).unwrap();
            // NaN is not equal to itself: compare the lines they make again.
            assert_eq!(
                event_line(&short, SystemTime::UNIX_EPOCH),
                event_line(&generic, SystemTime::UNIX_EPOCH),
                "{line}"
            );
        }
        assert!(
            written[0].starts_with(r#"{"v":3,"time":"1970-01-01T00:00:00.000Z","type":"step","#)
        );
        assert_eq!(
            line_time(written[0].as_bytes()),
            Some(SystemTime::UNIX_EPOCH)
        );
        // A step line that is not a step event is garbage on both paths.
        let broken = written[0].replace(r#""loss":"#, r#""lost":"#);
        assert!(parse_line(broken.as_bytes()).is_none());
        assert!(parse_line(b"\xff\xfe not utf-8").is_none());
    }
}
