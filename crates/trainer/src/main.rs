//! `trainui-torch`: the trainer. It runs the commands that train or run a
//! model (`train`, `tokenizer`, `bench`, `generate`, `export`), which
//! `trainui` hands it with their arguments as given; the only program that
//! links libtorch. It builds on the protocol crate (`trainui_protocol`) and
//! the monitor's library (`trainui`: the TUI, recorder and alerts of a
//! training session).

mod bench;
mod checkpoint;
mod commands;
mod data;
mod hf;
mod session;
mod setup;
mod trainer;

use std::process::ExitCode;

use clap::Parser;
use trainui::cli::{TorchCli, TorchCommand};

fn main() -> ExitCode {
    // A run's files are its owner's alone to change, whatever the umask
    // (libtorch and the tokenizer library create files of their own).
    trainui_protocol::process::keep_files_private();
    let result = match TorchCli::parse().command() {
        TorchCommand::Train(args) => session::train(&args),
        TorchCommand::Tokenizer(args) => commands::tokenizer(args),
        TorchCommand::Bench(args) => commands::bench(args),
        TorchCommand::Generate(args) => commands::generate(&args),
        TorchCommand::Export(args) => commands::export(&args),
    };
    trainui::exit_code(result)
}
