//! The run's own record: every event goes to the run directory, with its log
//! line, whichever front end (headless or TUI) is consuming the stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant, SystemTime};

use crate::alerts::{self, AlertCommand};
use crate::tensorboard;
use crate::tui::sampler::SystemSample;
use trainui_protocol::events::Event;
use trainui_protocol::lines;
use trainui_protocol::rundir::{self, RunDir};

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
    /// The machine's readings, for the GPUs in the status file.
    readings: Option<Receiver<SystemSample>>,
    /// `alerts.command`, when the config names one.
    alerts: Option<AlertCommand>,
    /// TensorBoard's event file, when `tensorboard.enabled`.
    tensorboard: Option<tensorboard::Writer>,
}

impl Recorder {
    #[must_use]
    pub fn new(run: RunDir, stall_recorded: Arc<AtomicBool>) -> Self {
        Self {
            run,
            write_failed: false,
            stall_recorded,
            busy: Duration::ZERO,
            readings: None,
            alerts: None,
            tensorboard: None,
        }
    }

    /// Also writes the events TensorBoard shows into `writer`.
    #[must_use]
    pub fn with_tensorboard(mut self, writer: tensorboard::Writer) -> Self {
        self.tensorboard = Some(writer);
        self
    }

    /// Runs `command` on each alerting event.
    #[must_use]
    pub fn with_alert_command(mut self, command: AlertCommand) -> Self {
        self.alerts = Some(command);
        self
    }

    /// Waits for the alert commands still running and records their
    /// failures; returns what failed.
    pub fn settle_alerts(&mut self) -> Vec<String> {
        let Some(alerts) = self.alerts.as_mut() else {
            return Vec::new();
        };
        alerts.settle();
        self.record_alert_failures()
    }

    /// Records the alert commands' failures since the last look as warnings.
    fn record_alert_failures(&mut self) -> Vec<String> {
        let failures = self
            .alerts
            .as_ref()
            .map(AlertCommand::failures)
            .unwrap_or_default();
        for message in &failures {
            let warning = Event::Warning {
                step: self.run.status().current_step,
                message: message.clone(),
            };
            let _ = self.run.record(&warning);
            if let Some(line) = lines::format(&warning, lines::Style::PLAIN) {
                let _ = self.run.log_line(&line.text);
            }
        }
        failures
    }

    /// Puts the latest of `readings` in the status file (its GPUs), with
    /// each status change.
    #[must_use]
    pub fn with_readings(mut self, readings: Receiver<SystemSample>) -> Self {
        self.readings = Some(readings);
        self
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
        if let Some(latest) = self.readings.as_ref().and_then(|r| r.try_iter().last()) {
            self.run.set_gpus(latest.gpu_status());
        }
        let line = lines::format(event, style);
        let written = self.run.record(event).and_then(|()| match &line {
            Some(line) => self.run.log_line(&line.text),
            None => Ok(()),
        });
        let stalled = matches!(event, Event::Stalled { .. });
        if let Some(alerts) = self.alerts.as_mut()
            && let Some(alert) = alerts::of(event, &self.run.status().run_name)
        {
            alerts.start(&alert, &rundir::event_line(event, SystemTime::now()));
            if stalled {
                // With `on_stall: exit` the watchdog ends the process once
                // the stall is recorded: the command is heard out first.
                alerts.settle();
            }
        }
        if stalled {
            self.stall_recorded.store(true, Ordering::Release);
        }
        let mut failures = self.record_alert_failures();
        if let Some(writer) = self.tensorboard.as_mut() {
            let written = writer
                .add(event, SystemTime::now())
                .and_then(|wrote| if wrote { writer.flush() } else { Ok(()) });
            if let Err(err) = written {
                // One failure said, then no more TensorBoard for this run.
                self.tensorboard = None;
                let warning = format!("TensorBoard files are no longer written: {err}");
                let _ = self.run.record(&Event::Warning {
                    step: self.run.status().current_step,
                    message: warning.clone(),
                });
                failures.push(warning);
            }
        }
        if let Err(err) = written
            && !self.write_failed
        {
            self.write_failed = true;
            failures.push(format!(
                "cannot write the run directory ({err}); training goes on"
            ));
        }
        let failure = (!failures.is_empty()).then(|| failures.join("; "));
        self.busy += started.elapsed();
        (line, failure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::sampler::{GpuSample, HostSample};
    use trainui_protocol::config::Config;
    use trainui_protocol::events::RunStatus;

    #[test]
    fn the_status_file_has_the_gpus_latest_readings() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::open(
            dir.path(),
            &Config::default(),
            RunStatus::new("g".into(), 9),
        )
        .unwrap();
        let (readings_out, readings) = std::sync::mpsc::channel();
        let mut recorder =
            Recorder::new(run, Arc::new(AtomicBool::new(false))).with_readings(readings);
        let reading = |utilization| SystemSample {
            gpus: (0..2u32)
                .map(|i| GpuSample {
                    name: format!("GPU {i}"),
                    utilization: utilization + i,
                    memory_used: 1 << 30,
                    memory_total: 80 << 30,
                    temperature: Some(50),
                    power: None,
                })
                .collect(),
            host: HostSample::default(),
            note: None,
        };
        readings_out.send(reading(10)).unwrap();
        readings_out.send(reading(90)).unwrap();
        recorder.record(
            &trainui_protocol::events::examples::step(1, 9, 1.0),
            lines::Style::PLAIN,
        );
        let status = trainui_protocol::rundir::read_status(dir.path()).unwrap();
        assert_eq!(status.gpus.len(), 2);
        assert_eq!((status.gpus[1].index, status.gpus[1].utilization), (1, 91));
        assert_eq!(status.gpus[0].name, "GPU 0");
        assert_eq!(status.gpus[0].memory_total_bytes, 80 << 30);
        assert_eq!(status.gpus[0].power_watts, None);
    }
}
