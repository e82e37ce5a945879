//! The run directory, the contract between a run and everything that reads it:
//!
//! ```text
//! RUN_DIR/config.json                  effective config of the run
//! RUN_DIR/events.jsonl                 every event, one JSON object a line
//! RUN_DIR/status/training_status.json  current status, replaced atomically
//! RUN_DIR/training_output.log          the lines headless mode prints
//! ```
//!
//! The parts: the file names and how the files are made (files.rs), one
//! events.jsonl line (line.rs), the writer (writer.rs), and the readers of
//! events.jsonl (tail.rs) and of the status file (status_file.rs).

mod files;
mod line;
mod status_file;
mod tail;
mod writer;

pub use files::{
    CONFIG_FILE, EVENTS_FILE, JOB_OUTPUT_FILE, LOG_FILE, STATUS_FILE, create_dirs, create_file,
    open_own, write_atomically,
};
pub use line::{event_line, is_step_line};
pub use status_file::{UnknownField, read_status, read_status_fields};
pub use tail::{EventTail, missing_events, unreadable_events};
pub use writer::{RunDir, now_rfc3339};
