//! The headless front end: every event recorded in the run directory, and
//! one line printed for each event worth printing.

use std::io::Write;
use std::sync::mpsc::Receiver;

use crate::recorder::Recorder;
use trainui_protocol::events::Event;
use trainui_protocol::lines;
use trainui_protocol::process;

/// Headless mode: records every event and prints one line per event worth
/// printing to `out`, until the trainer is done.
pub fn run(
    events: &Receiver<Event>,
    recorder: &mut Recorder,
    style: lines::Style,
    out: &mut dyn Write,
) {
    for event in events {
        let (line, failure) = recorder.record(&event, style);
        if let Some(line) = line {
            // A closed stdout (`| head`, a dead terminal) must not stop the
            // run: the log file still gets every line.
            let _ = writeln!(out, "{}", line.colored);
        }
        if let Some(failure) = failure {
            process::say(format!("warning: {failure}"));
        }
    }
}
