//! The channels across the trainer thread boundary: [`Command`]s in, with
//! the abort flag beside them, and [`Event`]s out. Plain channel code, so the
//! control spool, the signal thread and the front ends can steer a run
//! without knowing the trainer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};

use crate::events::{Command, Event};
use crate::watchdog::Heartbeat;

/// Sends commands to the trainer. Cloneable, so that keys, signals and
/// control files can all steer the same run.
#[derive(Clone)]
pub struct Controller {
    commands: Sender<Command>,
    abort: Arc<AtomicBool>,
}

impl Controller {
    /// Queues `command`. Abort (and stop, which must not wait for a long
    /// generation) also raise the abort flag, so the running generation ends
    /// before its next decoding step instead of when the queue is read.
    pub fn send(&self, command: Command) {
        if matches!(command, Command::AbortGeneration | Command::Stop) {
            self.abort.store(true, Ordering::Release);
        }
        let _ = self.commands.send(command);
    }
}

/// The trainer's ends, moved into its thread.
pub struct TrainerEnds {
    pub commands: Receiver<Command>,
    pub events: Sender<Event>,
    /// Raised to end the running generation; the decoder checks it before
    /// every step and the trainer lowers it once the abort is answered.
    pub abort: Arc<AtomicBool>,
    pub heartbeat: Arc<Heartbeat>,
}

/// Both ends of a run's channels before its trainer starts. Helpers that add
/// events to the stream (the watchdog, the control spool) take a sender with
/// [`Wiring::event_sender`]; [`Wiring::split`] then hands the last sender to
/// the trainer, so the stream ends once the trainer and those helpers are
/// done, and no sender can be left behind by accident.
pub struct Wiring {
    pub controller: Controller,
    /// Beaten by the trainer at every step and decoding step.
    pub heartbeat: Arc<Heartbeat>,
    commands: Receiver<Command>,
    abort: Arc<AtomicBool>,
    event_sender: Sender<Event>,
    events: Receiver<Event>,
}

impl Default for Wiring {
    fn default() -> Self {
        let (command_sender, commands) = mpsc::channel();
        let (event_sender, events) = mpsc::channel();
        let abort = Arc::new(AtomicBool::new(false));
        Self {
            controller: Controller {
                commands: command_sender,
                abort: Arc::clone(&abort),
            },
            heartbeat: Arc::new(Heartbeat::default()),
            commands,
            abort,
            event_sender,
            events,
        }
    }
}

impl Wiring {
    /// A sender for a helper that adds events to the stream.
    #[must_use]
    pub fn event_sender(&self) -> Sender<Event> {
        self.event_sender.clone()
    }

    /// The trainer's ends, and the event stream for the front end.
    #[must_use]
    pub fn split(self) -> (TrainerEnds, Receiver<Event>) {
        let ends = TrainerEnds {
            commands: self.commands,
            events: self.event_sender,
            abort: self.abort,
            heartbeat: self.heartbeat,
        };
        (ends, self.events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_ends_when_the_trainer_and_the_helpers_are_done() {
        let wiring = Wiring::default();
        let helper = wiring.event_sender();
        let controller = wiring.controller.clone();
        let (trainer, events) = wiring.split();
        controller.send(Command::AbortGeneration);
        assert!(
            trainer.abort.load(Ordering::Acquire),
            "abort raises the flag"
        );
        assert_eq!(trainer.commands.recv().unwrap(), Command::AbortGeneration);
        trainer
            .events
            .send(Event::Warning {
                step: 1,
                message: "x".into(),
            })
            .unwrap();
        drop(trainer);
        assert!(events.recv().is_ok());
        assert!(
            events.try_recv().is_err(),
            "the helper still holds a sender"
        );
        drop(helper);
        assert!(
            events.recv().is_err(),
            "every sender is gone: the stream ends"
        );
    }
}
