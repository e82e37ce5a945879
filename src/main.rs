//! `trainui`: the commands that read and steer run directories, at once;
//! training and models go to `trainui-torch` (see the library's root).

use std::process::ExitCode;

use clap::Parser;
use trainui::cli::{Cli, Commands};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Commands::Train(cli.train));
    trainui::without_torch(command).unwrap_or_else(|_| trainui::process::exec_torch_program())
}
