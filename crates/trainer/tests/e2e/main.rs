//! End-to-end tests of both programs, `trainui` and `trainui-torch`, as a
//! user runs them: one test binary, each area a module. Tests that must run
//! alone (timing, tmux) are grouped in `.config/nextest.toml`.
#![allow(clippy::unwrap_used)]

mod alerts;
mod architecture;
mod assets;
mod bench;
mod checkpoints;
mod common;
mod config_errors;
mod control;
mod evaluation;
mod exit_codes;
mod hf_models;
mod hostile;
mod plot;
mod python_jobs;
mod rates;
mod remote;
mod runs;
mod safety;
mod sshd;
mod tensorboard;
mod training;
mod tui_tmux;
mod watchdog;
