//! The commands that talk to a run started elsewhere through its run
//! directory: `trainui ctl` (a command file, then the run's answer in
//! events.jsonl) and `trainui status` (the status file).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::cli::{CtlArgs, StatusArgs};
use trainui_protocol::config;
use trainui_protocol::control;
use trainui_protocol::error::{Error, Result};
use trainui_protocol::events::{Command, CommandKind, Event, RunStatus};
use trainui_protocol::lines::{duration, thousands};
use trainui_protocol::process;
use trainui_protocol::ranks::{self, RankView};
use trainui_protocol::rundir::{self, EventTail};
use trainui_protocol::runfile;
use trainui_protocol::text;

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
        if let Some(why) = crate::remote::refused_command(&args.run_dir, &id) {
            return Err(Error::Rejected(format!(
                "{word}: not delivered: {}",
                text::escape(&why)
            )));
        }
        for event in tail.read_new(1 << 20) {
            match event {
                Event::Control {
                    id: answer,
                    accepted,
                    message,
                    ..
                } if answer == id => {
                    if !accepted {
                        return Err(Error::Rejected(format!(
                            "{word}: rejected: {}",
                            text::escape(&message)
                        )));
                    }
                    answered = true;
                    if matches!(command, Command::Set(_)) {
                        process::print(format!("{word}: {}\n", text::escape(&message)));
                        return Ok(());
                    }
                }
                Event::CommandAck {
                    command: acked,
                    message,
                    ..
                } if answered && acked == command => {
                    process::print(format!("{word}: {}\n", text::escape(&message)));
                    return Ok(());
                }
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if answered {
        process::print(format!(
            "{word}: accepted; the trainer acts at its next step boundary\n"
        ));
        return Ok(());
    }
    // A command sent to another machine may be in its run's spool by now:
    // it is withdrawn only if it was still here.
    let spooled = control::spool_dir(&args.run_dir).join(format!("{id}.json"));
    let handed_over = crate::remote::is_copy(&args.run_dir) && !spooled.exists();
    control::withdraw(&args.run_dir, &id);
    let fate = if handed_over {
        "the command was handed to the far side, and the run may still apply it \
         within a minute (then it is stale)"
    } else {
        "the command was withdrawn"
    };
    let why = match (rundir::read_status(&args.run_dir), &tail.problem) {
        // Its answer, if any, cannot be read.
        (_, Some(problem)) => problem.clone(),
        (Ok(status), None) if crate::remote::run_alive(&args.run_dir, status.pid) => {
            format!("process {} is alive but did not answer", status.pid)
        }
        (Ok(status), None) => format!("its process {} is not running", status.pid),
        (Err(err), None) => err.to_string(),
    };
    Err(Error::Failed(format!(
        "no answer from the run in {} within {}s: {why}; {fate}",
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

/// `trainui status`: the status file parsed and printed again as JSON
/// (`--json`), or a summary that says whether the run's process is still
/// alive. Text from the file never reaches the terminal unescaped.
pub fn status(args: &StatusArgs) -> Result<()> {
    if args.json {
        let path = args.run_dir.join(rundir::STATUS_FILE);
        let bytes = runfile::read(&path, runfile::STATUS_LIMIT).map_err(|err| {
            Error::Usage(format!("{}: cannot read the status file", err.at(&path)))
        })?;
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|err| {
            Error::Input(format!(
                "{}: not a trainui status file: {err}",
                path.display()
            ))
        })?;
        let json = serde_json::to_string_pretty(&value).expect("a JSON value serialises");
        process::print(format!("{}\n", text::json_safe(json)));
        return Ok(());
    }
    let (status, unknown) = rundir::read_status_fields(&args.run_dir)?;
    let alive = crate::remote::run_alive(&args.run_dir, status.pid);
    let stall_timeout = status
        .settings
        .as_ref()
        .map_or(300.0, |s| s.watchdog.stall_timeout_seconds);
    let ranks = ranks::read(&args.run_dir, control::unix_now(), stall_timeout);
    for field in &unknown {
        process::say(format!(
            "warning: {}: field {}; shown as ?",
            args.run_dir.join(rundir::STATUS_FILE).display(),
            field.why
        ));
    }
    let unknown: Vec<String> = unknown.into_iter().map(|field| field.name).collect();
    process::print(describe_status(&status, alive, &ranks, &unknown));
    Ok(())
}

/// The summary `status` prints; the fields in `unknown` (which the file
/// held in a form this trainui cannot take) show as `?`.
fn describe_status(
    status: &RunStatus,
    alive: bool,
    ranks: &[RankView],
    unknown: &[String],
) -> String {
    let shown = |field: &str, text: String| {
        if unknown.iter().any(|u| u == field) {
            "?".to_owned()
        } else {
            text
        }
    };
    let number = |field: &str, value: Option<f64>, digits: usize| {
        shown(
            field,
            value.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}")),
        )
    };
    let mut out = String::new();
    let process = if alive { "running" } else { "not running" };
    let _ = writeln!(
        out,
        "run        {} (pid {}, {process})",
        shown("run_name", text::escape(&status.run_name).into_owned()),
        shown("pid", status.pid.to_string())
    );
    if let Some(producer) = status.producer.as_ref().filter(|p| p.name != "trainui") {
        let _ = writeln!(
            out,
            "job        {} {} ({}), {} rank{}",
            text::escape(&producer.name),
            text::escape(&producer.version),
            text::escape(&producer.framework),
            producer.world_size,
            if producer.world_size == 1 { "" } else { "s" }
        );
    }
    let _ = writeln!(
        out,
        "state      {}",
        shown("state", status.state.as_str().to_owned())
    );
    if !alive && !status.state.is_final() {
        let _ = writeln!(
            out,
            "           the process is gone without a final state: it was killed or crashed"
        );
    }
    let percent = 100.0 * status.current_step as f64 / status.max_steps.max(1) as f64;
    let _ = writeln!(
        out,
        "step       {} / {} ({})",
        shown("current_step", status.current_step.to_string()),
        shown("max_steps", status.max_steps.to_string()),
        shown(
            if unknown.iter().any(|u| u == "max_steps") {
                "max_steps"
            } else {
                "current_step"
            },
            format!("{percent:.1}%")
        )
    );
    let _ = writeln!(
        out,
        "loss       {}  (val {})",
        number("loss", status.loss, 4),
        number("val_loss", status.val_loss, 4)
    );
    let _ = writeln!(
        out,
        "lr         {}",
        shown(
            "learning_rate",
            status
                .learning_rate
                .map_or_else(|| "-".to_owned(), |lr| format!("{lr:.2e}"))
        )
    );
    // A job that counts no tokens (not a language model) has no speed
    // line, and one that generates nothing no match or generation lines.
    if status.tokens_per_sec != Some(0.0) {
        let _ = writeln!(
            out,
            "speed      {} tok/s",
            shown(
                "tokens_per_sec",
                status
                    .tokens_per_sec
                    .map_or_else(|| "-".to_owned(), |t| thousands(t as u64))
            )
        );
    }
    // trainui's own trainer always evaluates samples; a job, once it has.
    let native = status.producer.as_ref().is_none_or(|p| p.name == "trainui");
    let generates = native || status.generations > 0 || unknown.iter().any(|u| u == "generations");
    // A run that has ended (or whose process is gone) has no time left to
    // estimate: its line says how long it ran.
    let eta = if status.state.is_final() || !alive {
        String::new()
    } else {
        format!(
            ", eta {}",
            shown(
                "eta_secs",
                status.eta_secs.map_or_else(|| "-".to_owned(), duration)
            )
        )
    };
    let _ = writeln!(
        out,
        "time       elapsed {}{eta}",
        shown("elapsed_secs", duration(status.elapsed_secs)),
    );
    let matched = if generates {
        format!(
            ", exact match {}",
            shown(
                "exact_match",
                status
                    .exact_match
                    .map_or_else(|| "-".to_owned(), |m| format!("{:.1}%", 100.0 * m))
            )
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "eval       {} evals{matched}",
        shown("evals", status.evals.to_string()),
    );
    let warns = status.settings.as_ref().map_or_else(String::new, |s| {
        format!(", warns above {:.1}%", 100.0 * s.eval.timeout_warn_rate)
    });
    if generates {
        let _ = writeln!(
            out,
            "generate   {} generations: {} completed, {} timeouts, {} aborts, {} errors \
             (timeout rate {}{warns})",
            shown("generations", status.generations.to_string()),
            shown("completed", status.completed.to_string()),
            shown("timeouts", status.timeouts.to_string()),
            shown("aborts", status.aborts.to_string()),
            shown("errors", status.errors.to_string()),
            shown(
                "timeout_rate",
                format!("{:.1}%", 100.0 * status.timeout_rate)
            )
        );
    }
    if let Some(path) = &status.last_checkpoint {
        let _ = writeln!(out, "checkpoint {}", text::escape(path));
    }
    if let Some(message) = &status.last_message {
        let _ = writeln!(out, "last       {}", text::escape(message));
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
            text::escape(&beat.beat),
            beat.step,
            beat.phase.as_str(),
            if first.verdict == ranks::Verdict::Gone {
                " (its process ended)"
            } else {
                " (the others wait for it)"
            }
        );
    }
    let _ = writeln!(
        out,
        "updated    {}",
        shown("updated_at", text::escape(&status.updated_at).into_owned())
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use trainui_protocol::events::RunState;

    #[test]
    fn status_summary_flags_a_dead_process() {
        let mut status = RunStatus::new("demo".into(), 100);
        status.state = RunState::Training;
        status.current_step = 40;
        let text = describe_status(&status, false, &[], &[]);
        assert!(text.contains("step       40 / 100 (40.0%)"), "{text}");
        assert!(text.contains("gone without a final state"), "{text}");
        assert!(!describe_status(&status, true, &[], &[]).contains("gone"));
    }

    #[test]
    fn a_job_that_counts_no_tokens_and_generates_nothing_gets_no_such_lines() {
        let mut status = RunStatus::new("mlp".into(), 100);
        status.producer = Some(trainui_protocol::events::Producer {
            name: "trainui-python".into(),
            version: "0.1.0".into(),
            framework: "pytorch".into(),
            world_size: 1,
        });
        status.state = RunState::Training;
        status.tokens_per_sec = Some(0.0);
        status.evals = 3;
        status.exact_match = Some(0.0);
        let text = describe_status(&status, true, &[], &[]);
        assert!(text.contains("eval       3 evals\n"), "{text}");
        for absent in ["tok/s", "exact match", "generate", "generations"] {
            assert!(!text.contains(absent), "{absent}: {text}");
        }
        // trainui's own trainer generates at every evaluation: its lines
        // are there before the first one.
        let mut native = status.clone();
        native.producer = None;
        let text = describe_status(&native, true, &[], &[]);
        assert!(text.contains("generate   0 generations"), "{text}");
        // A language model's run has them all.
        status.tokens_per_sec = Some(1234.0);
        status.generations = 8;
        status.completed = 8;
        let text = describe_status(&status, true, &[], &[]);
        assert!(text.contains("speed      1,234 tok/s\n"), "{text}");
        assert!(
            text.contains("eval       3 evals, exact match 0.0%\n"),
            "{text}"
        );
        assert!(
            text.contains("generate   8 generations: 8 completed"),
            "{text}"
        );
    }

    #[test]
    fn only_a_run_that_goes_on_has_an_eta() {
        let mut status = RunStatus::new("demo".into(), 100);
        status.elapsed_secs = 65.0;
        status.eta_secs = Some(120.0);
        status.state = RunState::Training;
        let text = describe_status(&status, true, &[], &[]);
        assert!(
            text.contains("time       elapsed 0:01:05, eta 0:02:00\n"),
            "{text}"
        );
        let gone = describe_status(&status, false, &[], &[]);
        assert!(gone.contains("time       elapsed 0:01:05\n"), "{gone}");
        for state in [RunState::Finished, RunState::Stopped, RunState::Failed] {
            status.state = state;
            let text = describe_status(&status, true, &[], &[]);
            assert!(
                text.contains("time       elapsed 0:01:05\n"),
                "{state:?}: {text}"
            );
            assert!(!text.contains("eta"), "{state:?}: {text}");
        }
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
