//! `trainui-torch`: every trainui command, with libtorch loaded. `trainui`
//! hands it those that train or run a model; it runs the others as
//! `trainui` does. Its own modules are the ones that need libtorch; the
//! rest is the `trainui` library.

#[path = "../bench/mod.rs"]
mod bench;
#[path = "../commands.rs"]
mod commands;
#[path = "../session.rs"]
mod session;
#[path = "../setup.rs"]
mod setup;
#[path = "../trainer/mod.rs"]
mod trainer;

use std::process::ExitCode;

use clap::Parser;
use trainui::cli::{Cli, Commands};

fn main() -> ExitCode {
    // A run's files are its owner's alone to change, whatever the umask
    // (libtorch and the tokenizer library create files of their own).
    trainui::process::keep_files_private();
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Commands::Train(cli.train));
    trainui::without_torch(command).unwrap_or_else(|command| with_torch(*command))
}

/// Runs a command that needs libtorch.
fn with_torch(command: Commands) -> ExitCode {
    let result = match command {
        Commands::Train(args) => session::train(&args),
        Commands::Tokenizer(args) => commands::tokenizer(args),
        Commands::Bench(args) => commands::bench(args),
        Commands::Generate(args) => commands::generate(&args),
        Commands::Export(args) => commands::export(&args),
        command => return trainui::without_torch(command).unwrap_or(ExitCode::FAILURE),
    };
    trainui::exit_code(result)
}
