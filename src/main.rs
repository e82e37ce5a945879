//! trainui: train a language model on libtorch and see and steer the run from
//! a terminal.
//!
//! This file is the table of contents: each subcommand goes to the module
//! that does it, and an error's kind decides the exit code (2 for the
//! user's mistakes, 1 for failures while running).

mod bench;
mod channel;
mod checkpoint;
mod cli;
mod client;
mod commands;
mod config;
mod control;
mod data;
mod error;
mod events;
mod headless;
mod hf;
mod job;
mod lines;
mod machine;
mod process;
mod ranks;
mod recorder;
mod rundir;
#[cfg(test)]
mod schema;
mod session;
mod setup;
mod smooth;
mod trainer;
mod tui;
mod watch;
mod watchdog;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Commands};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Commands::Train(cli.train)) {
        Commands::Train(args) => session::train(&args),
        Commands::Status(args) => client::status(&args),
        Commands::Ctl(args) => client::ctl(&args),
        Commands::Watch(args) => watch::run(&args.run_dir, args.plain),
        Commands::Run(args) => match job::run(&args) {
            // The job's own status, whatever it is.
            Ok(status) => return ExitCode::from(u8::try_from(status).unwrap_or(1)),
            Err(err) => Err(err),
        },
        Commands::Tokenizer(args) => commands::tokenizer(args),
        Commands::Bench(args) => commands::bench(args),
        Commands::Generate(args) => commands::generate(&args),
        Commands::Export(args) => commands::export(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            process::say(format!("error: {err}"));
            ExitCode::from(err.exit_code())
        }
    }
}
