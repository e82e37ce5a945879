//! trainui's monitor: the `trainui` program, which reads and steers run
//! directories (`status`, `watch`, `ctl`, `run`, `runs`, `plot`,
//! TensorBoard files, alerts) and never loads libtorch, so it answers at
//! once and builds without it. The commands that train or run a model
//! belong to `trainui-torch` (the trainer crate), installed beside it:
//! `trainui` hands them over by exec. An error's kind decides the exit code
//! (2 for the user's mistakes, 1 for failures while running).

pub mod alerts;
pub mod cli;
pub mod client;
pub mod follow;
pub mod headless;
pub mod launch;
pub mod machine;
pub mod plot;
pub mod recorder;
pub mod run_list;
pub mod smooth;
pub mod tensorboard;
pub mod tui;
pub mod watch;

use std::process::ExitCode;

use crate::cli::{Command, MonitorCommand};
use trainui_protocol::error::Result;
use trainui_protocol::{process, text};

/// The program that runs the commands needing libtorch.
pub const TORCH_PROGRAM: &str = "trainui-torch";

/// Runs `command`: a monitor command here, the others in `trainui-torch`.
#[must_use]
pub fn run(command: Command) -> ExitCode {
    match command {
        Command::Monitor(command) => run_monitor(command),
        Command::Torch(_) => exec_torch_program(),
    }
}

/// Runs a command that reads or steers run directories.
fn run_monitor(command: MonitorCommand) -> ExitCode {
    let result = match command {
        MonitorCommand::Status(args) => client::status(&args),
        MonitorCommand::Runs(args) => run_list::run(&args.dir, args.json),
        MonitorCommand::ExportTensorboard(args) => {
            tensorboard::export(&args.run_dir, args.out.as_deref()).map(|path| {
                process::print(format!(
                    "wrote {}\n",
                    text::escape(&path.display().to_string())
                ));
            })
        }
        MonitorCommand::Plot(args) => plot::run(&plot::PlotOptions {
            runs: args.runs,
            out: args.out,
            width: args.width,
            height: args.height,
            log_scale: args.log,
            smoothing: args.smoothing,
            title: args.title,
        }),
        MonitorCommand::Ctl(args) => client::ctl(&args),
        MonitorCommand::Watch(args) => watch::run(&args.run_dirs, args.plain),
        MonitorCommand::Run(args) => match launch::run(&args) {
            // The job's own status, whatever it is.
            Ok(status) => return ExitCode::from(u8::try_from(status).unwrap_or(1)),
            Err(err) => Err(err),
        },
    };
    exit_code(result)
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

/// Replaces this process with `trainui-torch` beside it, given the same
/// arguments: the commands that train or run a model live there, so that
/// the others start without loading libtorch. Returns only on failure.
#[must_use]
fn exec_torch_program() -> std::process::ExitCode {
    use std::os::unix::process::CommandExt;
    let program = std::env::current_exe().map_or_else(
        |_| TORCH_PROGRAM.into(),
        |exe| exe.with_file_name(TORCH_PROGRAM),
    );
    let err = std::process::Command::new(&program)
        .args(std::env::args_os().skip(1))
        .exec();
    process::say(format!(
        "error: cannot run {}: {err}; it is built and installed with trainui \
         (cargo build --release --workspace builds both; copy both when installing)",
        program.display()
    ));
    std::process::ExitCode::FAILURE
}
