//! trainui's run-directory protocol and its rules: the events and the
//! status fold, the run directory's writer, reader and lock, control files
//! and their checks, ranks, log lines, config with its validation and live
//! settings. Both programs (`trainui`, `trainui-torch`) build on it; it
//! depends on neither libtorch nor a terminal library. The JSON Schemas in
//! `protocol/schema/` are generated from its types.

pub mod channel;
pub mod config;
pub mod control;
pub mod error;
pub mod eta;
pub mod events;
pub mod lines;
pub mod process;
pub mod ranks;
pub mod rundir;
pub mod runfile;
pub mod runlock;
#[cfg(test)]
mod schema;
mod status;
pub mod text;
pub mod watchdog;
