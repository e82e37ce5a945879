//! Texts from outside (a run directory another program wrote, a model's
//! output) made safe as the app takes them in: every text field of an
//! event, of a gone run and of a rank goes through [`trainui_protocol::text`], the one
//! sanitiser, once, where the app receives it. The panes
//! then draw only escaped text (and the top-level render replaces any cell
//! that still holds an unsafe character, as a backstop).
//!
//! Every event type is named below, and the types with text name every
//! field, so a new event type, or a field added to one with text, fails to
//! compile here until it is placed (a text field added to a type without
//! text today is the one change the compiler does not catch).

use std::borrow::Cow;

use trainui_protocol::events::{
    Event, GenerationOutcome, GenerationStart, Producer, RankBeat, RunInfo, SampleResult,
};
use trainui_protocol::ranks::RankView;
use trainui_protocol::text;

/// `text` on one line, escaped (a run's name, a label made from a
/// folder's name, an answer that quotes a path); not copied when it needs
/// no escape.
#[must_use]
pub fn escaped(mut text: String) -> String {
    one_line(&mut text);
    text
}

/// Escapes `text` in place, on one line.
fn one_line(text: &mut String) {
    if let Cow::Owned(escaped) = text::escape(text) {
        *text = escaped;
    }
}

/// Escapes `text` in place, its newlines kept: a model's or a data file's
/// text, which the panes wrap.
fn lines(text: &mut String) {
    if let Cow::Owned(escaped) = text::escape_lines(text) {
        *text = escaped;
    }
}

/// `event` with every text escaped; events without text are not copied.
#[must_use]
pub fn event(event: &Event) -> Cow<'_, Event> {
    match event {
        Event::Step(_)
        | Event::State { .. }
        | Event::Settings { .. }
        | Event::EvalStarted { .. }
        | Event::ValLoss { .. }
        | Event::EvalFinished(_)
        | Event::NonFinite { .. }
        | Event::Stalled { .. }
        | Event::Recovered { .. }
        | Event::Finished(_) => return Cow::Borrowed(event),
        _ => {}
    }
    let mut event = event.clone();
    match &mut event {
        Event::Started(info) => run_info(info),
        // A `set` command's keys and values are never shown, only its word.
        Event::CommandAck {
            step: _,
            command: _,
            message,
        }
        | Event::Warning { step: _, message }
        | Event::Failed { step: _, message } => one_line(message),
        Event::GenerationStarted(start) => generation_start(start),
        Event::GenerationProgress {
            step: _,
            sample: _,
            text,
            tokens: _,
            elapsed_secs: _,
        } => lines(text),
        Event::Sample(sample) => sample_result(sample),
        Event::Checkpoint { step: _, path } => one_line(path),
        Event::Control {
            id,
            command,
            accepted: _,
            message,
        } => {
            one_line(id);
            one_line(command);
            one_line(message);
        }
        Event::Step(_)
        | Event::State { .. }
        | Event::Settings { .. }
        | Event::EvalStarted { .. }
        | Event::ValLoss { .. }
        | Event::EvalFinished(_)
        | Event::NonFinite { .. }
        | Event::Stalled { .. }
        | Event::Recovered { .. }
        | Event::Finished(_) => {}
    }
    Cow::Owned(event)
}

fn run_info(info: &mut RunInfo) {
    let RunInfo {
        run_name,
        pid: _,
        device,
        start_step: _,
        max_steps: _,
        parameters: _,
        vocab_size: _,
        train_examples: _,
        val_examples: _,
        skipped_overlong: _,
        resumed_from,
        evals: _,
        counters: _,
        settings: _,
        nonfinite_steps: _,
        producer,
    } = info;
    one_line(run_name);
    one_line(device);
    if let Some(from) = resumed_from {
        one_line(from);
    }
    if let Some(Producer {
        name,
        version,
        framework,
        world_size: _,
    }) = producer
    {
        one_line(name);
        one_line(version);
        one_line(framework);
    }
}

fn generation_start(start: &mut GenerationStart) {
    let GenerationStart {
        step: _,
        sample: _,
        of: _,
        example: _,
        origin,
        prompt,
        golden,
        golden_tokens: _,
        timeout_secs: _,
    } = start;
    one_line(origin);
    lines(prompt);
    lines(golden);
}

/// A sample's texts escaped. Whether it matched is the producer's verdict
/// on the texts as written, and stays.
pub fn sample_result(sample: &mut SampleResult) {
    let SampleResult {
        step: _,
        sample: _,
        of: _,
        example: _,
        origin,
        prompt,
        golden,
        output,
        golden_tokens: _,
        output_tokens: _,
        outcome,
        exact_match: _,
        loss: _,
        elapsed_secs: _,
        tokens_per_sec: _,
        timeout_secs: _,
        counters: _,
    } = sample;
    one_line(origin);
    lines(prompt);
    lines(golden);
    lines(output);
    if let GenerationOutcome::Error { message } = outcome {
        one_line(message);
    }
}

/// The texts of a gone run as the follower read them from its status file,
/// escaped (its pid is a number).
pub fn gone(since: &mut String, last_checkpoint: &mut Option<String>, resume: &mut String) {
    one_line(since);
    one_line(resume);
    if let Some(path) = last_checkpoint {
        one_line(path);
    }
}

/// Ranks as their heartbeat files tell them, escaped.
#[must_use]
pub fn ranks(mut ranks: Vec<RankView>) -> Vec<RankView> {
    for view in &mut ranks {
        let RankBeat {
            v: _,
            rank: _,
            world_size: _,
            local_rank: _,
            host,
            pid: _,
            phase: _,
            step: _,
            state: _,
            beat,
            beat_unix: _,
            written_unix: _,
            // Shown only as a signal trainui knows by name, never as written.
            signal: _,
        } = &mut view.beat;
        one_line(host);
        one_line(beat);
    }
    ranks
}

/// Where `output` first differs from `golden`, in characters of the texts
/// as written; `None` when they are the same.
#[must_use]
pub fn first_difference(golden: &str, output: &str) -> Option<usize> {
    let mut golden = golden.chars();
    let mut output = output.chars();
    let mut at = 0;
    loop {
        match (golden.next(), output.next()) {
            (None, None) => return None,
            (g, o) if g == o => at += 1,
            _ => return Some(at),
        }
    }
}

/// The place in `text` escaped with newlines kept (as [`lines`] shows it)
/// of character `at` of `text` as written.
#[must_use]
pub fn shown_position(text: &str, at: usize) -> usize {
    let mut buffer = [0; 4];
    text.chars()
        .take(at)
        .map(|c| {
            text::escape_lines(c.encode_utf8(&mut buffer))
                .chars()
                .count()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_difference_is_found_in_characters() {
        assert_eq!(first_difference("12704", "12704"), None);
        assert_eq!(first_difference("12704", "12111"), Some(2));
        assert_eq!(first_difference("12704", "127"), Some(3));
        assert_eq!(first_difference("85", "851"), Some(2));
        assert_eq!(first_difference("é1", "é2"), Some(1));
        assert_eq!(first_difference("", "x"), Some(0));
    }

    #[test]
    fn a_place_in_the_text_as_written_is_found_in_the_text_shown() {
        // `a`, ESC (4 shown), newline (kept), U+202E (8 shown), `b`.
        let text = "a\x1b\n\u{202e}b";
        assert_eq!(text::escape_lines(text), "a\\x1b\n\\u{202e}b");
        let shown: Vec<usize> = (0..=5).map(|at| shown_position(text, at)).collect();
        assert_eq!(shown, [0, 1, 5, 6, 14, 15]);
    }

    #[test]
    fn an_event_without_text_is_not_copied_and_one_with_text_is_escaped() {
        let step = trainui_protocol::events::examples::step(3, 10, 1.0);
        assert!(matches!(event(&step), Cow::Borrowed(_)));
        let warning = Event::Warning {
            step: 1,
            message: "a\x1b]52;c;aGk=\x07b".into(),
        };
        let Event::Warning { message, .. } = event(&warning).into_owned() else {
            unreachable!()
        };
        assert_eq!(message, "a\\x1b]52;c;aGk=\\x07b");
    }
}
