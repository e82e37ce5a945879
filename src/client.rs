//! The commands that talk to a run started elsewhere through its run
//! directory: `trainui ctl` (a command file, then the run's answer in
//! events.jsonl) and `trainui status` (the status file).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::cli::{CtlArgs, StatusArgs};
use crate::config;
use crate::control;
use crate::error::{Error, Result};
use crate::events::{Command, CommandKind, Event, RunStatus};
use crate::lines::{duration, thousands};
use crate::ranks::{self, RankView};
use crate::rundir::{self, EventTail};

/// Sends a command file to a running job and waits for its answer: first
/// the spool's (accepted or rejected), then the trainer's acknowledgement
/// (for `set`, the spool's answer is the whole answer: it checked and
/// applied the change).
pub fn ctl(args: &CtlArgs) -> Result<()> {
    let word = args.command.word();
    let command = command_of(args.command, &args.assignments)?;
    let offset = std::fs::metadata(args.run_dir.join(rundir::EVENTS_FILE)).map_or(0, |m| m.len());
    let id = control::send(&args.run_dir, &command)?;
    let deadline = Instant::now() + args.timeout.duration();
    let mut tail = EventTail::new(&args.run_dir, offset);
    let mut answered = false;
    while Instant::now() < deadline {
        for event in tail.read_new(1 << 20) {
            match event {
                Event::Control {
                    id: answer,
                    accepted,
                    message,
                    ..
                } if answer == id => {
                    if !accepted {
                        return Err(Error::Rejected(format!("{word}: rejected: {message}")));
                    }
                    answered = true;
                    if matches!(command, Command::Set(_)) {
                        println!("{word}: {message}");
                        return Ok(());
                    }
                }
                Event::CommandAck {
                    command: acked,
                    message,
                    ..
                } if answered && acked == command => {
                    println!("{word}: {message}");
                    return Ok(());
                }
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if answered {
        println!("{word}: accepted; the trainer acts at its next step boundary");
        return Ok(());
    }
    control::withdraw(&args.run_dir, &id);
    let why = match rundir::read_status(&args.run_dir) {
        Ok(status) if rundir::run_alive(&args.run_dir, status.pid) => {
            format!("process {} is alive but did not answer", status.pid)
        }
        Ok(status) => format!("its process {} is not running", status.pid),
        Err(_) => "it has no status file".to_owned(),
    };
    Err(Error::Failed(format!(
        "no answer from the run in {} within {}s: {why}; the command was withdrawn",
        args.run_dir.display(),
        args.timeout
    )))
}

/// The command `ctl` words and assignments name.
fn command_of(kind: CommandKind, assignments: &[String]) -> Result<Command> {
    let word = kind.word();
    if let Some(command) = kind.command() {
        if let Some(extra) = assignments.first() {
            return Err(Error::Usage(format!(
                "ctl {word} takes no KEY=VALUE (got {extra:?}); only set does"
            )));
        }
        return Ok(command);
    }
    if assignments.is_empty() {
        return Err(Error::Usage(format!(
            "ctl {word} needs KEY=VALUE, e.g. ctl RUN_DIR {word} eval.eval_steps=100"
        )));
    }
    let changes = assignments
        .iter()
        .map(|assignment| {
            config::parse_assignment(assignment)
                .map_err(|e| Error::Usage(format!("ctl {word} {e}")))
        })
        .collect::<Result<BTreeMap<_, _>>>()?;
    Ok(Command::Set(changes))
}

/// `trainui status`: the status file as it is (`--json`), or a summary
/// that says whether the run's process is still alive.
pub fn status(args: &StatusArgs) -> Result<()> {
    if args.json {
        let path = args.run_dir.join(rundir::STATUS_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::Usage(format!(
                "{}: cannot read the status file: {e}",
                path.display()
            ))
        })?;
        print!("{text}");
        return Ok(());
    }
    let status = rundir::read_status(&args.run_dir)?;
    let alive = rundir::run_alive(&args.run_dir, status.pid);
    let stall_timeout = status
        .settings
        .as_ref()
        .map_or(300.0, |s| s.watchdog.stall_timeout_seconds);
    let ranks = ranks::read(&args.run_dir, control::unix_now(), stall_timeout);
    print!("{}", describe_status(&status, alive, &ranks));
    Ok(())
}

fn describe_status(status: &RunStatus, alive: bool, ranks: &[RankView]) -> String {
    let number = |value: Option<f64>, digits: usize| {
        value.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
    };
    let mut out = String::new();
    let process = if alive { "running" } else { "not running" };
    let _ = writeln!(
        out,
        "run        {} (pid {}, {process})",
        status.run_name, status.pid
    );
    if let Some(producer) = status.producer.as_ref().filter(|p| p.name != "trainui") {
        let _ = writeln!(
            out,
            "job        {} {} ({}), {} rank{}",
            producer.name,
            producer.version,
            producer.framework,
            producer.world_size,
            if producer.world_size == 1 { "" } else { "s" }
        );
    }
    let _ = writeln!(out, "state      {}", status.state.as_str());
    if !alive && !status.state.is_final() {
        let _ = writeln!(
            out,
            "           the process is gone without a final state: it was killed or crashed"
        );
    }
    let percent = 100.0 * status.current_step as f64 / status.max_steps.max(1) as f64;
    let _ = writeln!(
        out,
        "step       {} / {} ({percent:.1}%)",
        status.current_step, status.max_steps
    );
    let _ = writeln!(
        out,
        "loss       {}  (val {})",
        number(status.loss, 4),
        number(status.val_loss, 4)
    );
    let _ = writeln!(
        out,
        "lr         {}",
        status
            .learning_rate
            .map_or_else(|| "-".to_owned(), |lr| format!("{lr:.2e}"))
    );
    let _ = writeln!(
        out,
        "speed      {} tok/s",
        status
            .tokens_per_sec
            .map_or_else(|| "-".to_owned(), |t| thousands(t as u64))
    );
    let _ = writeln!(
        out,
        "time       elapsed {}, eta {}",
        duration(status.elapsed_secs),
        status.eta_secs.map_or_else(|| "-".to_owned(), duration)
    );
    let _ = writeln!(
        out,
        "eval       {} evals, exact match {}",
        status.evals,
        status
            .exact_match
            .map_or_else(|| "-".to_owned(), |m| format!("{:.1}%", 100.0 * m))
    );
    let warns = status.settings.as_ref().map_or_else(String::new, |s| {
        format!(", warns above {:.1}%", 100.0 * s.eval.timeout_warn_rate)
    });
    let _ = writeln!(
        out,
        "generate   {} generations: {} completed, {} timeouts, {} aborts, {} errors \
         (timeout rate {:.1}%{warns})",
        status.generations,
        status.completed,
        status.timeouts,
        status.aborts,
        status.errors,
        100.0 * status.timeout_rate
    );
    if let Some(path) = &status.last_checkpoint {
        let _ = writeln!(out, "checkpoint {path}");
    }
    if let Some(message) = &status.last_message {
        let _ = writeln!(out, "last       {message}");
    }
    for view in ranks {
        let _ = writeln!(
            out,
            "{:<10} {}",
            if view.beat.rank == 0 { "ranks" } else { "" },
            view.describe()
        );
    }
    if let Some(first) = ranks::first_stuck(ranks) {
        let beat = &first.beat;
        let _ = writeln!(
            out,
            "           rank {} went silent first: last beat {} at step {}, {}{}",
            beat.rank,
            beat.beat,
            beat.step,
            beat.phase.as_str(),
            if first.verdict == ranks::Verdict::Gone {
                " (its process ended)"
            } else {
                " (the others wait for it)"
            }
        );
    }
    let _ = writeln!(out, "updated    {}", status.updated_at);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::RunState;

    #[test]
    fn status_summary_flags_a_dead_process() {
        let mut status = RunStatus::new("demo".into(), 100);
        status.state = RunState::Training;
        status.current_step = 40;
        let text = describe_status(&status, false, &[]);
        assert!(text.contains("step       40 / 100 (40.0%)"), "{text}");
        assert!(text.contains("gone without a final state"), "{text}");
        assert!(!describe_status(&status, true, &[]).contains("gone"));
    }

    #[test]
    fn ctl_words_become_commands() {
        assert_eq!(
            command_of(CommandKind::EvalNow, &[]).unwrap(),
            Command::EvalNow
        );
        let set = command_of(
            CommandKind::Set,
            &["eval.samples=4".into(), "device=cpu".into()],
        );
        assert_eq!(
            set.unwrap(),
            Command::Set(BTreeMap::from([
                ("device".to_owned(), "cpu".into()),
                ("eval.samples".to_owned(), 4.into()),
            ]))
        );
        let error = command_of(CommandKind::Set, &[]).unwrap_err();
        assert_eq!(error.exit_code(), 2);
        let error = command_of(CommandKind::Save, &["a=1".into()]).unwrap_err();
        assert!(error.to_string().contains("takes no KEY=VALUE"), "{error}");
        let error = command_of(CommandKind::Set, &["eval.samples".into()]).unwrap_err();
        assert!(error.to_string().contains("expected KEY=VALUE"), "{error}");
    }
}
