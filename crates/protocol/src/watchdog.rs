//! The stall watchdog: the trainer beats a heartbeat at every step and every
//! decoding step; a thread outside it notices when the beats stop, for causes
//! no deadline can catch (an operation that never returns).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::thread;
use std::time::{Duration, Instant};

use crate::config::OnStall;
use crate::error::{Error, Result};
use crate::events::{Event, Phase};
use crate::process;

/// A watchdog nap that ends this much later than asked means the process
/// was not running meanwhile.
const NOT_RUNNING_AFTER: Duration = Duration::from_millis(500);

/// Exit status of a process that ended itself because its run stalled, so
/// that a supervisor restarts it with `--resume auto` (EX_TEMPFAIL).
pub const STALL_EXIT_CODE: i32 = 75;

/// The trainer's pulse: when it last made progress, where, and at which
/// step; and how long a silence the watchdog allows
/// (`watchdog.stall_timeout_seconds`, which can change mid-run).
#[derive(Debug)]
pub struct Heartbeat {
    epoch: Instant,
    last_millis: AtomicU64,
    phase: AtomicU8,
    step: AtomicU64,
    stall_timeout_millis: AtomicU64,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            last_millis: AtomicU64::new(0),
            phase: AtomicU8::new(0),
            step: AtomicU64::new(0),
            stall_timeout_millis: AtomicU64::new(u64::MAX),
        }
    }
}

impl Heartbeat {
    /// Records progress in `phase`.
    pub fn beat(&self, phase: Phase) {
        let millis = self.epoch.elapsed().as_millis() as u64;
        self.last_millis.store(millis, Ordering::Relaxed);
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    pub fn set_step(&self, step: u64) {
        self.step.store(step, Ordering::Relaxed);
    }

    #[must_use]
    pub fn step(&self) -> u64 {
        self.step.load(Ordering::Relaxed)
    }

    #[must_use]
    pub fn phase(&self) -> Phase {
        Phase::ALL[usize::from(self.phase.load(Ordering::Relaxed)).min(Phase::ALL.len() - 1)]
    }

    pub fn set_stall_timeout(&self, timeout: Duration) {
        let millis = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.stall_timeout_millis.store(millis, Ordering::Relaxed);
    }

    /// The silence after which the run counts as stalled (never, until set).
    #[must_use]
    pub fn stall_timeout(&self) -> Duration {
        Duration::from_millis(self.stall_timeout_millis.load(Ordering::Relaxed))
    }

    /// When the latest beat was, as an opaque mark that changes with every
    /// beat (milliseconds since the heartbeat began).
    #[must_use]
    pub fn latest(&self) -> u64 {
        self.last_millis.load(Ordering::Relaxed)
    }

    /// Time since the latest beat.
    #[must_use]
    pub fn silence(&self) -> Duration {
        let last = Duration::from_millis(self.last_millis.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }
}

/// How the watchdog is set up; the timeout is the heartbeat's, which can
/// change while it runs.
pub struct Watchdog {
    pub heartbeat: Arc<Heartbeat>,
    pub on_stall: OnStall,
    pub events: Sender<Event>,
    /// Set once the `stalled` event is in the status file, so that an exit
    /// on stall leaves the status behind.
    pub stall_recorded: Arc<AtomicBool>,
    /// Runs just before the process exits on a stall (restores the terminal).
    pub before_exit: fn(),
}

impl Watchdog {
    /// Watches on its own thread until the trainer is done.
    pub fn spawn(self) -> Result<()> {
        thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || self.watch())
            .map_err(|e| Error::Failed(format!("cannot start the watchdog: {e}")))?;
        Ok(())
    }

    fn watch(&self) {
        let mut stalled = false;
        // Time the process did not run (stopped by SIGSTOP or a debugger, or
        // the machine asleep) since the latest beat: silence, but not the
        // trainer's.
        let mut away = Duration::ZERO;
        let mut latest_beat = self.heartbeat.latest();
        loop {
            let timeout = self.heartbeat.stall_timeout();
            let nap = (timeout / 10).clamp(Duration::from_millis(20), Duration::from_millis(250));
            let slept = Instant::now();
            thread::sleep(nap);
            let late = slept.elapsed().saturating_sub(nap);
            if self.heartbeat.latest() != latest_beat {
                latest_beat = self.heartbeat.latest();
                away = Duration::ZERO;
            }
            let phase = self.heartbeat.phase();
            if phase == Phase::Done {
                return;
            }
            let silence = self.heartbeat.silence();
            if late > NOT_RUNNING_AFTER {
                // Only the part of the gap after the latest beat was silence.
                away += late.min(silence);
            }
            let silence = silence.saturating_sub(away);
            let step = self.heartbeat.step();
            if !stalled && silence > timeout {
                stalled = true;
                let _ = self.events.send(Event::Stalled {
                    step,
                    phase,
                    silent_secs: silence.as_secs_f64(),
                    timeout_secs: timeout.as_secs_f64(),
                });
                if self.on_stall == OnStall::Exit {
                    self.exit_after_recording();
                }
            } else if stalled && silence < timeout {
                stalled = false;
                let _ = self.events.send(Event::Recovered { step, phase });
            }
        }
    }

    fn exit_after_recording(&self) -> ! {
        let waited = Instant::now();
        while !self.stall_recorded.load(Ordering::Acquire)
            && waited.elapsed() < Duration::from_secs(5)
        {
            thread::sleep(Duration::from_millis(10));
        }
        (self.before_exit)();
        process::say(format!(
            "trainui: the run stalled; exiting with {STALL_EXIT_CODE} so that a supervisor \
             restarts it with --resume auto"
        ));
        process::exit_now(STALL_EXIT_CODE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn silence_marks_a_stall_and_beats_clear_it() {
        let heartbeat = Arc::new(Heartbeat::default());
        heartbeat.set_step(7);
        heartbeat.set_stall_timeout(Duration::from_millis(200));
        heartbeat.beat(Phase::Generating);
        let (tx, rx) = mpsc::channel();
        Watchdog {
            heartbeat: Arc::clone(&heartbeat),
            on_stall: OnStall::Warn,
            events: tx,
            stall_recorded: Arc::new(AtomicBool::new(false)),
            before_exit: || {},
        }
        .spawn()
        .unwrap();
        let event = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let Event::Stalled {
            step,
            phase,
            silent_secs,
            ..
        } = event
        else {
            panic!("{event:?}")
        };
        assert_eq!((step, phase), (7, Phase::Generating));
        assert!(silent_secs > 0.2);
        heartbeat.beat(Phase::Training);
        let event = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(
            matches!(event, Event::Recovered { step: 7, .. }),
            "{event:?}"
        );
        heartbeat.beat(Phase::Done);
        assert!(
            rx.recv_timeout(Duration::from_secs(2)).is_err(),
            "a finished run is not watched"
        );
    }
}
