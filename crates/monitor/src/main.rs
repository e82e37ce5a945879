//! `trainui`: the commands that read and steer run directories, at once;
//! training and models go to `trainui-torch` (see the library's root).

use std::process::ExitCode;

use clap::Parser;
use trainui::cli::Cli;

fn main() -> ExitCode {
    trainui::run(Cli::parse().command())
}
