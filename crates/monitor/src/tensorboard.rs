//! TensorBoard event files of a run: its scalars (training loss, learning
//! rate, tokens/s, validation loss, exact match, timeout rate) and each
//! evaluation's samples as a text table, written live when
//! `tensorboard.enabled` is set, or from events.jsonl afterwards by
//! `trainui export-tensorboard`. `tensorboard --logdir runs` shows them.
//!
//! The format is TensorFlow's record file of `Event` protocol buffers. No
//! maintained crate writes it without a protobuf compiler at build time,
//! and the five messages used here take a few lines each, so they are
//! encoded by hand; `crc32c` checksums the records. Field numbers are those
//! of tensorboard's `event.proto`, `summary.proto`, `tensor.proto` and
//! `tensor_shape.proto`.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use trainui_protocol::error::{Error, Result};
use trainui_protocol::events::{Event, GenerationOutcome, SampleResult};
use trainui_protocol::rundir::{self, EventTail};

/// Where a run's event files go, inside its run directory.
pub const FOLDER: &str = "tensorboard";

/// Protocol buffer wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const BYTES: u8 = 2;
const FIXED32: u8 = 5;
/// `DT_STRING` of TensorFlow's `types.proto`.
const DT_STRING: u64 = 7;
/// `SessionLog.START` of `event.proto`.
const SESSION_START: u64 = 1;

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn key(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    key(out, field, BYTES);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// `Event` with its `wall_time` (1) and `step` (2), and then its `what`.
fn event_with(wall_time: f64, step: u64, what: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    key(&mut out, 1, FIXED64);
    out.extend_from_slice(&wall_time.to_le_bytes());
    key(&mut out, 2, VARINT);
    varint(&mut out, step);
    what(&mut out);
    out
}

/// An `Event` holding a `Summary` (5) of one `Value` (1).
fn summary_event(wall_time: f64, step: u64, value: &[u8]) -> Vec<u8> {
    event_with(wall_time, step, |out| {
        let mut summary = Vec::new();
        bytes_field(&mut summary, 1, value);
        bytes_field(out, 5, &summary);
    })
}

/// `Summary.Value`: `tag` (1) and `simple_value` (2).
fn scalar_value(tag: &str, value: f32) -> Vec<u8> {
    let mut out = Vec::new();
    bytes_field(&mut out, 1, tag.as_bytes());
    key(&mut out, 2, FIXED32);
    out.extend_from_slice(&value.to_le_bytes());
    out
}

/// `Summary.Value` of the text plugin: `tag` (1), a string `tensor` (8)
/// of shape [1], and `metadata` (9) naming the plugin.
fn text_value(tag: &str, text: &str) -> Vec<u8> {
    let mut dim = Vec::new();
    key(&mut dim, 1, VARINT);
    varint(&mut dim, 1);
    let mut shape = Vec::new();
    bytes_field(&mut shape, 2, &dim);
    let mut tensor = Vec::new();
    key(&mut tensor, 1, VARINT);
    varint(&mut tensor, DT_STRING);
    bytes_field(&mut tensor, 2, &shape);
    bytes_field(&mut tensor, 8, text.as_bytes());
    let mut plugin = Vec::new();
    bytes_field(&mut plugin, 1, b"text");
    let mut metadata = Vec::new();
    bytes_field(&mut metadata, 1, &plugin);
    let mut out = Vec::new();
    bytes_field(&mut out, 1, tag.as_bytes());
    bytes_field(&mut out, 8, &tensor);
    bytes_field(&mut out, 9, &metadata);
    out
}

/// TFRecord's checksum: CRC-32C, rotated and offset.
fn masked_crc(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
        .rotate_right(15)
        .wrapping_add(0xa282_ead8)
}

/// One record: its length and the length's checksum, the data and its
/// checksum.
fn record(out: &mut impl Write, data: &[u8]) -> std::io::Result<()> {
    let length = (data.len() as u64).to_le_bytes();
    out.write_all(&length)?;
    out.write_all(&masked_crc(&length).to_le_bytes())?;
    out.write_all(data)?;
    out.write_all(&masked_crc(data).to_le_bytes())
}

fn seconds(time: SystemTime) -> f64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Writes one event file, fed the run's events.
pub struct Writer {
    path: PathBuf,
    out: BufWriter<File>,
    /// The samples of the evaluation under way, for its text table.
    samples: Vec<SampleResult>,
}

impl Writer {
    /// A new event file in `folder` (created if need be), named as
    /// TensorBoard looks for them. Neither is writable by others, whatever
    /// the umask.
    pub fn create(folder: &Path, time: SystemTime) -> Result<Self> {
        rundir::create_dirs(folder).map_err(Error::io("cannot create", folder))?;
        let secs = seconds(time) as u64;
        let path = folder.join(format!(
            "events.out.tfevents.{secs}.{}.trainui",
            std::process::id()
        ));
        let file = rundir::create_file(&path).map_err(Error::io("cannot create", &path))?;
        let mut writer = Self {
            path,
            out: BufWriter::new(file),
            samples: Vec::new(),
        };
        let version = event_with(seconds(time), 0, |out| {
            bytes_field(out, 3, b"brain.Event:2");
        });
        writer.write(&version)?;
        Ok(writer)
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&mut self, data: &[u8]) -> Result<()> {
        record(&mut self.out, data).map_err(Error::io("cannot write", &self.path))
    }

    fn scalar(&mut self, time: f64, step: u64, tag: &str, value: f64) -> Result<()> {
        if !value.is_finite() {
            return Ok(());
        }
        self.write(&summary_event(time, step, &scalar_value(tag, value as f32)))
    }

    /// Adds what `event` says at `time`; returns whether it wrote anything.
    pub fn add(&mut self, event: &Event, time: SystemTime) -> Result<bool> {
        let at = seconds(time);
        match event {
            // A resumed run rewinds: what was logged past its checkpoint is
            // dropped by TensorBoard at a session start (SessionLog START,
            // `Event.session_log` = 7) at the first new step.
            Event::Started(info) if info.start_step > 0 => {
                let restart = event_with(at, info.start_step + 1, |out| {
                    let mut log = Vec::new();
                    key(&mut log, 1, VARINT);
                    varint(&mut log, SESSION_START);
                    bytes_field(out, 7, &log);
                });
                self.write(&restart)?;
            }
            Event::Step(m) => {
                self.scalar(at, m.step, "train/loss", m.loss)?;
                self.scalar(at, m.step, "train/learning_rate", m.learning_rate)?;
                self.scalar(at, m.step, "train/tokens_per_sec", m.tokens_per_sec)?;
                if let Some(norm) = m.grad_norm {
                    self.scalar(at, m.step, "train/grad_norm", norm)?;
                }
            }
            Event::ValLoss {
                step,
                loss: Some(loss),
                ..
            } => self.scalar(at, *step, "eval/val_loss", *loss)?,
            Event::EvalStarted { .. } => {
                self.samples.clear();
                return Ok(false);
            }
            Event::Sample(sample) => {
                self.samples.push(sample.clone());
                return Ok(false);
            }
            Event::EvalFinished(summary) => {
                let step = summary.step;
                if summary.samples > 0 {
                    self.scalar(at, step, "eval/exact_match", summary.exact_match)?;
                }
                self.scalar(
                    at,
                    step,
                    "eval/timeout_rate",
                    summary.counters.timeout_rate(),
                )?;
                if !self.samples.is_empty() {
                    let table = samples_table(&self.samples);
                    self.write(&summary_event(
                        at,
                        step,
                        &text_value("eval/samples", &table),
                    ))?;
                    self.samples.clear();
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Hands what is written to the file.
    pub fn flush(&mut self) -> Result<()> {
        self.out
            .flush()
            .map_err(Error::io("cannot write", &self.path))
    }
}

/// An evaluation's samples as a Markdown table (the text plugin renders
/// Markdown).
fn samples_table(samples: &[SampleResult]) -> String {
    let cell = |text: &str| text.replace('|', "\\|").replace('\n', " ");
    let mut table =
        String::from("| sample | prompt | golden | output | outcome |\n|---|---|---|---|---|\n");
    for s in samples {
        let outcome = match &s.outcome {
            GenerationOutcome::Completed if s.exact_match => "match".to_owned(),
            GenerationOutcome::Completed => "mismatch".to_owned(),
            GenerationOutcome::TimedOut => "TIMEOUT".to_owned(),
            GenerationOutcome::Aborted => "aborted".to_owned(),
            GenerationOutcome::Error { message } => format!("error: {message}"),
        };
        let _ = writeln!(
            table,
            "| {}/{} {} | {} | {} | {} | {} |",
            s.sample,
            s.of,
            cell(&s.origin),
            cell(&s.prompt),
            cell(&s.golden),
            cell(&s.output),
            cell(&outcome)
        );
    }
    table
}

/// Refuses `folder` as the place of event files when something other than
/// a folder is there (a file, a link to nothing): checked before a run or
/// an export writes anything. `fix` ends the message.
pub fn check_folder(folder: &Path, fix: &str) -> Result<()> {
    let refused = |what: &str| {
        Err(Error::Usage(format!(
            "{}: {what}; TensorBoard's event files go into a folder of that name: move it \
             away, or {fix}",
            folder.display()
        )))
    };
    match std::fs::metadata(folder) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => refused("is not a folder"),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            match std::fs::read_link(folder) {
                Ok(target) => refused(&format!(
                    "is a link to {}, which does not exist",
                    target.display()
                )),
                // Made when the first event file is.
                Err(_) => Ok(()),
            }
        }
        Err(err) => refused(&format!("cannot be looked at ({err})")),
    }
}

/// `trainui export-tensorboard RUN_DIR [--out DIR]`: an event file from
/// the run's events.jsonl, stamped with the events' own times. Returns the
/// file written. An events.jsonl that cannot be read is refused with the
/// reason, and nothing is written.
pub fn export(run_dir: &Path, out: Option<&Path>) -> Result<PathBuf> {
    let events_path = run_dir.join(rundir::EVENTS_FILE);
    if let Some(missing) = rundir::missing_events(run_dir, "give a run directory") {
        return Err(missing);
    }
    let folder = out.map_or_else(|| run_dir.join(FOLDER), Path::to_owned);
    check_folder(&folder, "give another folder with --out")?;
    let existing = std::fs::read_dir(&folder).is_ok_and(|mut entries| {
        entries.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().contains("tfevents")))
    });
    if existing {
        return Err(Error::Usage(format!(
            "{} already holds TensorBoard event files (TensorBoard would show both); \
             give another folder with --out, or remove them",
            folder.display()
        )));
    }
    let folder_was_there = folder.exists();
    let mut tail = EventTail::new(run_dir, 0);
    let mut writer: Option<Writer> = None;
    match export_events(&mut tail, &events_path, &folder, &mut writer) {
        Ok(written) => {
            tail.warn_skipped();
            Ok(written)
        }
        Err(err) => {
            // Nothing half-made is left behind.
            if let Some(writer) = writer {
                let _ = std::fs::remove_file(writer.path());
            }
            if !folder_was_there {
                let _ = std::fs::remove_dir(&folder);
            }
            Err(err)
        }
    }
}

/// The events `tail` reads from `events_path`, up to its length when the
/// export began, into `writer` (created in `folder` at the first event,
/// stamped with its time). Returns the file written.
fn export_events(
    tail: &mut EventTail,
    events_path: &Path,
    folder: &Path,
    writer: &mut Option<Writer>,
) -> Result<PathBuf> {
    let length = std::fs::metadata(events_path).map_or(0, |m| m.len());
    loop {
        let before = tail.offset();
        let events = tail.read_new_timed(16 << 20);
        if let Some(problem) = tail.problem.take() {
            return Err(rundir::unreadable_events(&problem, "export-tensorboard"));
        }
        if tail.restarts > 0 {
            return Err(Error::Failed(format!(
                "{}: the file was replaced or cut shorter while it was read; export again \
                 once the run that writes it has settled",
                events_path.display()
            )));
        }
        // A piece without a whole line is not the end of the file; a read
        // that moves no further is.
        if events.is_empty() && (tail.offset() >= length || tail.offset() == before) {
            break;
        }
        for (event, time) in events {
            let writer = match writer.as_mut() {
                Some(writer) => writer,
                None => writer.insert(Writer::create(folder, time)?),
            };
            writer.add(&event, time)?;
        }
    }
    let writer = match writer {
        Some(writer) => writer,
        None => writer.insert(Writer::create(folder, SystemTime::now())?),
    };
    writer.flush()?;
    Ok(writer.path().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_checksums_are_the_formats_own() {
        let mut out = Vec::new();
        varint(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
        // CRC-32C of "123456789" is 0xE3069283, masked as TFRecord does.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(
            masked_crc(b"123456789"),
            0xe306_9283u32.rotate_right(15).wrapping_add(0xa282_ead8)
        );
        let mut file = Vec::new();
        record(&mut file, b"abc").unwrap();
        assert_eq!(file.len(), 8 + 4 + 3 + 4);
        assert_eq!(&file[..8], &3u64.to_le_bytes());
        assert_eq!(&file[12..15], b"abc");
    }
}
