//! trainui's monitor: the `trainui` program, which reads and steers run
//! directories (`status`, `watch`, `ctl`, `run`, `runs`, `plot`, `query`,
//! TensorBoard files, alerts) and never loads libtorch, so it answers at
//! once and builds without it. The commands that train or run a model
//! belong to `trainui-torch` (the trainer crate), installed beside it:
//! `trainui` hands them over by exec. An error's kind decides the exit code
//! (2 for the user's mistakes, 1 for failures while running).

pub mod alerts;
pub mod cli;
pub mod client;
pub mod diff;
pub mod differing;
pub mod follow;
pub mod headless;
pub mod launch;
pub mod machine;
pub mod plot;
pub mod query;
pub mod recorder;
pub mod remote;
pub mod run_filter;
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
        MonitorCommand::Status(mut args) => remote::one_run(&args.run_dir, remote::Depth::Small)
            .and_then(|(copy, remote)| {
                args.run_dir = copy;
                remote::naming(remote.as_ref(), client::status(&args))
            }),
        MonitorCommand::Runs(args) => run_list::run(&args),
        MonitorCommand::Diff(mut args) => remote::localize(&args.runs, remote::Depth::Small)
            .and_then(|(copies, remote)| {
                if let Some(remote) = &remote {
                    remote.wait_synced()?;
                }
                args.runs = copies;
                remote::naming(remote.as_ref(), diff::run(&args))
            }),
        MonitorCommand::ExportTensorboard(args) => {
            tensorboard::export(&args.run_dir, args.out.as_deref()).map(|path| {
                process::print(format!(
                    "wrote {}\n",
                    text::escape(&path.display().to_string())
                ));
            })
        }
        MonitorCommand::Plot(args) => {
            let depth = cli::DEFAULT_DEPTH;
            remote::localize_folders(&args.runs, depth, remote::Depth::Thinned).and_then(
                |(runs, remote)| {
                    if let Some(remote) = &remote {
                        remote.wait_synced()?;
                    }
                    let plotted = plot::run(&plot::PlotOptions {
                        runs,
                        out: args.out,
                        width: args.width,
                        height: args.height,
                        log_scale: args.log,
                        smoothing: args.smoothing,
                        series: plot::series_named(&args.series),
                        x_axis: plot::x_axis_named(&args.x_axis),
                        title: args.title,
                    });
                    remote::naming(remote.as_ref(), plotted)
                },
            )
        }
        MonitorCommand::Query(args) => remote::one_run(&args.run_dir, remote::Depth::Full)
            .and_then(|(copy, remote)| {
                remote::naming(remote.as_ref(), query::run(&copy, &query_of(&args)))
            }),
        MonitorCommand::Ctl(mut args) => remote::one_run(&args.run_dir, remote::Depth::Thinned)
            .and_then(|(copy, remote)| {
                args.run_dir = copy;
                remote::naming(remote.as_ref(), client::ctl(&args))
            }),
        MonitorCommand::Watch(args) => watch::run(&args),
        MonitorCommand::Serve(_) => remote::serve::serve_stdio(),
        MonitorCommand::Run(args) => match launch::run(&args) {
            // The job's own status, whatever it is.
            Ok(status) => return ExitCode::from(u8::try_from(status).unwrap_or(1)),
            Err(err) => Err(err),
        },
    };
    exit_code(result)
}

/// What `trainui query`'s arguments ask for.
fn query_of(args: &cli::QueryArgs) -> query::Query {
    use query::{Format, Kind};
    query::Query {
        kind: if args.rows.evals {
            Kind::Evals
        } else if args.rows.samples {
            Kind::Samples
        } else {
            Kind::Steps
        },
        format: if args.format.json {
            Format::Json
        } else {
            Format::Csv
        },
        fields: args.fields.clone(),
        from: args.from,
        to: args.to,
        every: args.every,
    }
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

/// Replaces this process with `trainui-torch`, given the same arguments:
/// the commands that train or run a model live there, so that the others
/// start without loading libtorch. The one beside this program comes first
/// (a build, `cargo install`, `--root` a virtual environment), then one on
/// PATH. Returns only on failure: exit 2, saying how to get it.
#[must_use]
fn exec_torch_program() -> std::process::ExitCode {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().ok();
    let beside = exe.as_ref().map(|exe| exe.with_file_name(TORCH_PROGRAM));
    let program = match beside {
        Some(path) if path.is_file() => path,
        _ => TORCH_PROGRAM.into(),
    };
    let err = std::process::Command::new(&program)
        .args(std::env::args_os().skip(1))
        .exec();
    let word = std::env::args()
        .skip(1)
        .find(|arg| !arg.starts_with('-'))
        .unwrap_or_else(|| "train".into());
    if err.kind() == std::io::ErrorKind::NotFound {
        let here = exe
            .as_deref()
            .unwrap_or_else(|| std::path::Path::new("trainui"));
        process::say(torch_program_missing(
            &word,
            here,
            environment_torch(here).as_ref(),
        ));
        return std::process::ExitCode::from(2);
    }
    process::say(format!(
        "error: cannot run {}: {err}",
        text::escape(&program.display().to_string())
    ));
    std::process::ExitCode::FAILURE
}

/// The libtorch version `trainui-torch` links (what the `tch` crate needs).
pub const LIBTORCH_VERSION: &str = "2.13.0";

/// The torch of the Python environment `exe` is installed in (a wheel puts
/// `trainui` in its `bin/`): its folder and version, read from
/// `torch/version.py` without running anything.
#[derive(Debug, PartialEq)]
pub struct EnvironmentTorch {
    pub folder: std::path::PathBuf,
    pub version: String,
}

/// See [`EnvironmentTorch`]; None when there is none (or it cannot be read).
#[must_use]
pub fn environment_torch(exe: &std::path::Path) -> Option<EnvironmentTorch> {
    let prefix = exe.parent()?.parent()?;
    let lib = std::fs::read_dir(prefix.join("lib")).ok()?;
    let mut pythons: Vec<_> = lib
        .filter_map(|entry| Some(entry.ok()?.path()))
        .filter(|path| {
            path.file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("python3"))
        })
        .collect();
    pythons.sort();
    pythons.into_iter().find_map(|python| {
        let folder = python.join("site-packages").join("torch");
        let version = torch_version(&folder.join("version.py"))?;
        Some(EnvironmentTorch { folder, version })
    })
}

/// `__version__` of a torch `version.py` (a small file; a larger or
/// unreadable one is none).
fn torch_version(path: &std::path::Path) -> Option<String> {
    use std::io::Read as _;
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(64 * 1024)
        .read_to_string(&mut text)
        .ok()?;
    text.lines().find_map(|line| {
        let value = line.strip_prefix("__version__")?.trim_start();
        let value = value.strip_prefix('=')?.trim();
        let quote = value.chars().next().filter(|c| *c == '\'' || *c == '"')?;
        let value = &value[1..];
        Some(value[..value.find(quote)?].to_owned())
    })
}

/// What `trainui WORD` says when there is no `trainui-torch`: what the
/// program installed here does, and how to build the other half.
#[must_use]
pub fn torch_program_missing(
    word: &str,
    exe: &std::path::Path,
    torch: Option<&EnvironmentTorch>,
) -> String {
    use std::fmt::Write as _;
    let shown = |path: &std::path::Path| text::escape(&path.display().to_string()).into_owned();
    let mut out = format!(
        "error: `trainui {}` needs {TORCH_PROGRAM}, the program that links libtorch; \
         there is none beside {} nor on PATH.\n\
         The trainui installed here reads and steers runs (watch, status, ctl, run, runs, \
         plot). Build {TORCH_PROGRAM} from a clone of trainui (Rust, a few minutes):\n",
        text::escape(word),
        shown(exe),
    );
    let own = format!(
        "with its own libtorch {LIBTORCH_VERSION} (installed once, about 4.7 GB):\n  \
         ./dev run, then use target/release/trainui ({TORCH_PROGRAM} is beside it)"
    );
    match torch {
        Some(torch) if torch.version.split('+').next() == Some(LIBTORCH_VERSION) => {
            let root = exe
                .parent()
                .and_then(std::path::Path::parent)
                .unwrap_or(std::path::Path::new("DIR"));
            let _ = write!(
                out,
                "  LIBTORCH={} cargo install --locked --path crates/trainer --root {}\n    \
                 (this environment's torch {} is the libtorch it needs)\nOr, {own}",
                shown(&torch.folder),
                shown(root),
                text::escape(&torch.version),
            );
        }
        Some(torch) => {
            let _ = write!(
                out,
                "This environment's torch is {}, not the {LIBTORCH_VERSION} it needs; {own}",
                text::escape(&torch.version)
            );
        }
        None => {
            let _ = write!(out, "With {own}", own = own.trim_start_matches("with "));
        }
    }
    out
}
