//! trainui: train a language model on libtorch and see and steer the run from
//! a terminal.
//!
//! Two programs. `trainui` does everything that reads or steers a run
//! directory (`status`, `watch`, `ctl`, `run`, …) and never loads
//! libtorch, so it answers at once: this library is its code. It hands the
//! commands that train or run a model to `trainui-torch`, installed beside
//! it, by exec; that program (src/bin/trainui-torch.rs) adds the trainer,
//! training sessions, the one-shot model commands and the bench to this
//! library, from their files here (trainer/, session.rs, setup.rs,
//! commands.rs, bench/). An error's kind decides the exit code (2 for the
//! user's mistakes, 1 for failures while running).

pub mod alerts;
pub mod channel;
pub mod checkpoint;
pub mod cli;
pub mod client;
pub mod config;
pub mod control;
pub mod data;
pub mod error;
pub mod events;
pub mod headless;
pub mod hf;
pub mod job;
pub mod lines;
pub mod machine;
pub mod plot;
pub mod process;
pub mod ranks;
pub mod recorder;
pub mod rundir;
pub mod runfile;
pub mod runlock;
pub mod runs;
#[cfg(test)]
mod schema;
pub mod smooth;
pub mod tensorboard;
pub mod text;
pub mod tui;
pub mod watch;
pub mod watchdog;

use std::process::ExitCode;

use crate::cli::Commands;
use crate::error::Result;

/// The program that runs the commands needing libtorch.
pub const TORCH_PROGRAM: &str = "trainui-torch";

/// Runs `command` if it needs no libtorch; gives it back otherwise.
pub fn without_torch(command: Commands) -> std::result::Result<ExitCode, Box<Commands>> {
    let result = match command {
        Commands::Status(args) => client::status(&args),
        Commands::Runs(args) => runs::run(&args.dir, args.json),
        Commands::ExportTensorboard(args) => {
            tensorboard::export(&args.run_dir, args.out.as_deref()).map(|path| {
                process::print(format!(
                    "wrote {}\n",
                    text::escape(&path.display().to_string())
                ));
            })
        }
        Commands::Plot(args) => plot::run(&plot::PlotOptions {
            runs: args.runs,
            out: args.out,
            width: args.width,
            height: args.height,
            log_scale: args.log,
            smoothing: args.smoothing,
            title: args.title,
        }),
        Commands::Ctl(args) => client::ctl(&args),
        Commands::Watch(args) => watch::run(&args.run_dirs, args.plain),
        Commands::Run(args) => match job::run(&args) {
            // The job's own status, whatever it is.
            Ok(status) => return Ok(ExitCode::from(u8::try_from(status).unwrap_or(1))),
            Err(err) => Err(err),
        },
        command @ (Commands::Train(_)
        | Commands::Tokenizer(_)
        | Commands::Bench(_)
        | Commands::Generate(_)
        | Commands::Export(_)) => return Err(Box::new(command)),
    };
    Ok(exit_code(result))
}

/// The exit code of a command's result, its error said on stderr.
#[must_use]
pub fn exit_code(result: Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            process::say(format!("error: {err}"));
            ExitCode::from(err.exit_code())
        }
    }
}
