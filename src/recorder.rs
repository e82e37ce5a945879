//! The run's own record: every event goes to the run directory, with its log
//! line, whichever front end (headless or TUI) is consuming the stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::events::Event;
use crate::lines;
use crate::rundir::RunDir;

/// Writes every event to the run directory and formats its log line.
pub struct Recorder {
    pub run: RunDir,
    /// A write already failed (it is reported once).
    write_failed: bool,
    /// Raised once a `stalled` event is in the status file.
    stall_recorded: Arc<AtomicBool>,
    /// Time spent formatting and writing, over the whole run (the bench
    /// reports it as a share of step time).
    pub busy: Duration,
}

impl Recorder {
    #[must_use]
    pub fn new(run: RunDir, stall_recorded: Arc<AtomicBool>) -> Self {
        Self {
            run,
            write_failed: false,
            stall_recorded,
            busy: Duration::ZERO,
        }
    }

    /// Records `event` and returns its printable line, if it has one, and
    /// the first write failure of the run. A full disk must not stop
    /// training, so a failure is reported, not raised.
    pub fn record(
        &mut self,
        event: &Event,
        style: lines::Style,
    ) -> (Option<lines::Line>, Option<String>) {
        let started = Instant::now();
        let line = lines::format(event, style);
        let written = self.run.record(event).and_then(|()| match &line {
            Some(line) => self.run.log_line(&line.text),
            None => Ok(()),
        });
        if matches!(event, Event::Stalled { .. }) {
            self.stall_recorded.store(true, Ordering::Release);
        }
        let failure = match written {
            Err(err) if !self.write_failed => {
                self.write_failed = true;
                Some(format!(
                    "cannot write the run directory ({err}); training goes on"
                ))
            }
            _ => None,
        };
        self.busy += started.elapsed();
        (line, failure)
    }
}
