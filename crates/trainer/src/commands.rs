//! The one-shot commands: `generate`, `export`, `tokenizer` and `bench`,
//! each from its arguments to what it prints.

use crate::bench;
use crate::data;
use crate::trainer::inference;
use trainui::cli::{BenchArgs, ExportArgs, GenerateArgs, TokenizerArgs};
use trainui_protocol::error::{Error, Result};
use trainui_protocol::events::GenerationOutcome;
use trainui_protocol::{process, text};

use std::io::IsTerminal as _;

/// Prints a completion; a generation that did not complete is a failure.
pub fn generate(args: &GenerateArgs) -> Result<()> {
    let generation = inference::generate_text(
        &args.model,
        args.device,
        &inference::TextRequest {
            prompt: &args.prompt,
            max_new_tokens: args.max_new_tokens,
            min_new_tokens: args.min_new_tokens,
            temperature: args.temperature,
            timeout: args.timeout.duration(),
            seed: args.seed,
        },
    )?;
    // Model text reaches a terminal escaped; a pipe or a file gets it as
    // it is (JSON is escaped either way).
    if args.json {
        let json = serde_json::to_string(&generation).expect("a generation serialises");
        process::print(format!("{}\n", text::json_safe(json)));
    } else if std::io::stdout().is_terminal() {
        process::print(format!("{}\n", text::escape_lines(&generation.completion)));
    } else {
        process::print(format!("{}\n", generation.completion));
    }
    let how = match &generation.outcome {
        GenerationOutcome::Completed => return Ok(()),
        GenerationOutcome::TimedOut => format!("timed out (--timeout {}s)", args.timeout),
        GenerationOutcome::Aborted => "was aborted".to_owned(),
        GenerationOutcome::Error { message } => format!("failed ({message})"),
    };
    Err(Error::Failed(format!(
        "the generation {how} after {:.1}s and {} tokens",
        generation.elapsed_secs,
        generation.token_ids.len()
    )))
}

pub fn export(args: &ExportArgs) -> Result<()> {
    inference::export(&args.checkpoint, &args.out)?;
    process::print(format!(
        "exported {} to {}\n",
        args.checkpoint.display(),
        args.out.display()
    ));
    Ok(())
}

pub fn tokenizer(args: TokenizerArgs) -> Result<()> {
    let options = data::TokenizerTraining {
        data: args.data,
        vocab_size: args.vocab_size,
        out: args.out,
    };
    let size = data::train_tokenizer(&options)?;
    process::print(format!("wrote {} ({size} tokens)\n", options.out.display()));
    Ok(())
}

/// Runs the bench and prints its table (or JSON). Succeeds even when a
/// target is missed: the table says which, and why is for a person to find.
pub fn bench(args: BenchArgs) -> Result<()> {
    if args.history_only {
        let figures = bench::history_only(args.history_steps.max(1))?;
        if args.json {
            let json = serde_json::to_string_pretty(&figures).expect("the figures serialise");
            process::print(format!("{json}\n"));
        } else {
            process::print(bench::table::history_table(&figures));
        }
        return Ok(());
    }
    let report = bench::run(&bench::BenchOptions {
        config: args.config,
        overrides: args.overrides,
        python: args.python,
        peer: args.peer,
        rounds: args.rounds.max(1),
        steps: args.steps.max(1),
        threads: args.threads.max(1),
        vocab_size: args.vocab_size,
        abort_samples: args.abort_samples.max(1),
        history_steps: args.history_steps,
    })?;
    if args.json {
        let json = serde_json::to_string_pretty(&report).expect("the report serialises");
        process::print(format!("{json}\n"));
    } else {
        process::print(bench::table::report_table(&report));
    }
    Ok(())
}
