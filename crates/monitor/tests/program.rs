//! The `trainui` program on its own, with no libtorch anywhere: its
//! version, its commands (those it hands to `trainui-torch` included, in
//! one list), and a command that reads run directories. Building these
//! tests builds the program, which the end-to-end tests of the workspace
//! (crates/trainer/tests/e2e) run beside `trainui-torch`.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

fn trainui(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trainui"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_version_is_the_workspaces_with_the_protocols() {
    let output = trainui(&["--version"]);
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        format!(
            "trainui {} (protocol {}, commands {})\n",
            env!("CARGO_PKG_VERSION"),
            trainui_protocol::events::SCHEMA_VERSION,
            trainui_protocol::control::REQUEST_VERSION
        )
    );
}

/// `trainui ARGS` run from a copy of the program in `prefix/bin` (as a
/// wheel installs it), with nothing else on PATH.
fn installed_alone(prefix: &std::path::Path, args: &[&str]) -> Output {
    let bin = prefix.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let program = bin.join("trainui");
    std::fs::copy(env!("CARGO_BIN_EXE_trainui"), &program).unwrap();
    Command::new(&program)
        .args(args)
        .env("PATH", &bin)
        .output()
        .unwrap()
}

#[test]
fn without_trainui_torch_the_trainer_commands_say_how_to_build_it() {
    let dir = tempfile::tempdir().unwrap();
    // No Python environment around it: the clone's way.
    let bare = dir.path().join("bare");
    let output = installed_alone(&bare, &["train", "--config", "x.json"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let said = String::from_utf8(output.stderr).unwrap();
    assert!(
        said.starts_with("error: `trainui train` needs trainui-torch"),
        "{said}"
    );
    assert!(
        said.contains(&bare.join("bin").join("trainui").display().to_string()),
        "{said}"
    );
    assert!(said.contains("./dev run"), "{said}");
    assert!(!said.contains("cargo install"), "{said}");

    // In a virtual environment whose torch is the libtorch it needs.
    let venv = dir.path().join("venv");
    let torch = venv.join("lib/python3.11/site-packages/torch");
    std::fs::create_dir_all(&torch).unwrap();
    std::fs::write(
        torch.join("version.py"),
        "from typing import Optional\n__version__ = '2.13.0+cu128'\ncuda: Optional[str] = '12.8'\n",
    )
    .unwrap();
    let output = installed_alone(&venv, &["generate", "--model", "m", "--prompt", "hi"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let said = String::from_utf8(output.stderr).unwrap();
    assert!(
        said.contains("`trainui generate` needs trainui-torch"),
        "{said}"
    );
    let install = format!(
        "LIBTORCH={} cargo install --locked --path crates/trainer --root {}",
        torch.display(),
        venv.display()
    );
    assert!(said.contains(&install), "{said}");
    assert!(
        said.contains("torch 2.13.0+cu128 is the libtorch it needs"),
        "{said}"
    );

    // Another torch: only the clone's way.
    std::fs::write(torch.join("version.py"), "__version__ = \"2.5.1\"\n").unwrap();
    let output = installed_alone(&venv, &["bench"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let said = String::from_utf8(output.stderr).unwrap();
    assert!(
        said.contains("This environment's torch is 2.5.1, not the 2.13.0"),
        "{said}"
    );
    assert!(!said.contains("cargo install"), "{said}");

    // The monitor's own commands need nothing more.
    let output = installed_alone(&venv, &["runs", dir.path().to_str().unwrap()]);
    assert!(output.status.success(), "{output:?}");
}

#[test]
fn the_help_lists_every_command_of_both_programs_in_one_order() {
    let output = trainui(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    let commands: Vec<&str> = help
        .split("Commands:\n")
        .nth(1)
        .unwrap()
        .lines()
        .take_while(|line| !line.is_empty())
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert_eq!(
        commands,
        [
            "train",
            "status",
            "runs",
            "diff",
            "plot",
            "query",
            "export-tensorboard",
            "tokenizer",
            "ctl",
            "watch",
            "run",
            "bench",
            "generate",
            "export",
            "serve",
            "help"
        ]
    );
}

#[test]
fn a_folder_without_runs_lists_none() {
    let dir = tempfile::tempdir().unwrap();
    let output = trainui(&["runs", "--json", dir.path().to_str().unwrap()]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8(output.stdout).unwrap().trim(), "[]");
}

/// A run directory whose events.jsonl holds `events`, as a run writes them.
fn query_run(events: &[trainui_protocol::events::Event]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut text = Vec::new();
    for event in events {
        text.extend(trainui_protocol::rundir::event_line(
            event,
            std::time::SystemTime::UNIX_EPOCH,
        ));
        text.push(b'\n');
    }
    std::fs::write(dir.path().join("events.jsonl"), text).unwrap();
    dir
}

/// Step events 1..=`steps`, a gradient norm on even steps only.
fn query_steps(steps: u64) -> Vec<trainui_protocol::events::Event> {
    use trainui_protocol::events::{Event, StepMetrics};
    (1..=steps)
        .map(|step| {
            Event::Step(StepMetrics {
                step,
                max_steps: steps,
                loss: 10.0 / step as f64,
                learning_rate: 1e-3,
                tokens_per_sec: 1000.0,
                elapsed_secs: step as f64,
                eta_secs: (steps - step) as f64,
                grad_norm: (step % 2 == 0).then_some(0.5),
                tokens_seen: Some(step * 64),
            })
        })
        .collect()
}

fn query_sample(step: u64, prompt: &str) -> trainui_protocol::events::Event {
    use trainui_protocol::events::{Event, GenerationCounters, GenerationOutcome, SampleResult};
    Event::Sample(SampleResult {
        step,
        sample: 1,
        of: 1,
        example: 3,
        origin: "val.jsonl:4".into(),
        prompt: prompt.into(),
        golden: "85".into(),
        output: "8\u{1b}[2J5".into(),
        golden_tokens: 1,
        output_tokens: 2,
        outcome: GenerationOutcome::Completed,
        exact_match: false,
        loss: Some(0.5),
        elapsed_secs: 0.25,
        tokens_per_sec: 8.0,
        timeout_secs: 60.0,
        counters: GenerationCounters::default(),
    })
}

#[test]
fn query_prints_the_fields_asked_for_between_bounds_every_n_steps() {
    let run = query_run(&query_steps(100));
    let path = run.path().to_str().unwrap();
    let bounds = "--from 20 --to 70 --every 25 --fields grad_norm,lr,loss";
    let args: Vec<&str> = ["query", path]
        .into_iter()
        .chain(bounds.split(' '))
        .collect();
    let output = trainui(&[&args[..], &["--csv"]].concat());
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        "step,grad_norm,learning_rate,loss\n25,,0.001,0.4\n50,0.5,0.001,0.2\n"
    );
    let output = trainui(&[&args[..], &["--json"]].concat());
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        "{\"step\":25,\"grad_norm\":null,\"learning_rate\":0.001,\"loss\":0.4}\n\
         {\"step\":50,\"grad_norm\":0.5,\"learning_rate\":0.001,\"loss\":0.2}\n"
    );
    // Without --fields, every field of a step event.
    let output = trainui(&["query", path, "--csv", "--to", "1"]);
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        "step,loss,learning_rate,grad_norm,tokens_seen,tokens_per_sec,elapsed_secs,eta_secs,\
         max_steps\n1,10.0,0.001,,64,1000.0,1.0,99.0,100\n"
    );
}

#[test]
fn query_samples_keep_text_as_data_quoted_in_csv_and_exact_in_json() {
    let prompt = "add 2,3 \"fast\"\nthen\u{1b}]0;owned\u{7}";
    let run = query_run(&[query_steps(1).remove(0), query_sample(1, prompt)]);
    let path = run.path().to_str().unwrap();
    let fields = ["--fields", "prompt,output,outcome,exact_match"];
    let output = trainui(&[&["query", path, "--samples", "--csv"][..], &fields].concat());
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8(output.stdout.clone()).unwrap(),
        "step,prompt,output,outcome,exact_match\n\
         1,\"add 2,3 \"\"fast\"\"\\nthen\\x1b]0;owned\\x07\",8\\x1b[2J5,completed,false\n"
    );
    let output_json = trainui(&[&["query", path, "--samples", "--json"][..], &fields].concat());
    assert!(output_json.status.success(), "{output_json:?}");
    for stdout in [&output.stdout, &output_json.stdout] {
        let controls: Vec<&u8> = stdout
            .iter()
            .filter(|&&b| (b < 0x20 && b != b'\n') || b == 0x7f)
            .collect();
        assert!(controls.is_empty(), "raw control bytes: {controls:?}");
    }
    let rows: Vec<serde_json::Value> = String::from_utf8(output_json.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(
        rows,
        [serde_json::json!({
            "step": 1,
            "prompt": prompt,
            "output": "8\u{1b}[2J5",
            "outcome": "completed",
            "exact_match": false,
        })]
    );
}

#[test]
fn query_evals_prints_a_row_per_finished_evaluation() {
    use trainui_protocol::events::{EvalSummary, Event, GenerationCounters};
    let eval = |step: u64, val_loss: Option<f64>| {
        Event::EvalFinished(EvalSummary {
            step,
            eval: step / 50,
            val_loss,
            train_loss: Some(0.5),
            gap: None,
            samples: 8,
            matches: 6,
            exact_match: 0.75,
            counters: GenerationCounters {
                generations: 8 * step / 50,
                completed: 7 * step / 50,
                timed_out: step / 50,
                aborted: 0,
                errors: 0,
            },
        })
    };
    let mut events = query_steps(100);
    events.insert(50, eval(50, Some(0.75)));
    events.push(eval(100, None));
    let run = query_run(&events);
    let output = trainui(&[
        "query",
        run.path().to_str().unwrap(),
        "--evals",
        "--csv",
        "--fields",
        "val_loss,exact_match,timed_out,generations",
    ]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        "step,val_loss,exact_match,timed_out,generations\n50,0.75,0.75,1,8\n100,,0.75,2,16\n"
    );
}

#[test]
fn query_an_unknown_field_is_a_mistake_that_lists_the_fields() {
    let run = query_run(&query_steps(3));
    let output = trainui(&[
        "query",
        run.path().to_str().unwrap(),
        "--csv",
        "--fields",
        "loss,val_loss",
    ]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(output.stdout.is_empty());
    let said = String::from_utf8(output.stderr).unwrap();
    assert!(said.contains("no field \"val_loss\""), "{said}");
    assert!(
        said.contains("step, loss, learning_rate, grad_norm, tokens_seen, tokens_per_sec"),
        "{said}"
    );
}

#[test]
fn query_a_folder_without_events_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let output = trainui(&["query", dir.path().to_str().unwrap(), "--json"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let said = String::from_utf8(output.stderr).unwrap();
    assert!(
        said.contains(&format!("{}: no events.jsonl here", dir.path().display())),
        "{said}"
    );
}

#[test]
fn query_into_a_pipe_closed_early_ends_quietly() {
    use std::io::BufRead;
    // Far more rows than a pipe and the program's buffer hold.
    let run = query_run(&query_steps(50_000));
    let mut child = Command::new(env!("CARGO_BIN_EXE_trainui"))
        .args(["query", run.path().to_str().unwrap(), "--csv"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut header = String::new();
    reader.read_line(&mut header).unwrap();
    assert!(header.starts_with("step,loss,"), "{header}");
    // As `| head -1` does.
    drop(reader);
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8(output.stderr).unwrap(), "");
}

/// `runs` and `diff` over a sweep: runs found below a folder, chosen by
/// their state, name and config keys, ordered by any of them, and what
/// differs among them.
mod sweeps {
    use std::path::{Path, PathBuf};
    use std::process::{Command, Output};
    use std::time::{Duration, SystemTime};

    use serde_json::{Value, json};
    use trainui_protocol::events::{Producer, RunState, RunStatus};

    use super::trainui;

    /// A run directory `dir/name` whose status file says `state`, `loss`
    /// and `device`, updated `age` seconds ago, with `config` as its
    /// config.json (none when null).
    fn sweep_run(
        dir: &Path,
        name: &str,
        state: RunState,
        loss: f64,
        device: &str,
        age: u64,
        config: &Value,
    ) -> PathBuf {
        let run = dir.join(name);
        std::fs::create_dir_all(run.join("status")).unwrap();
        let mut status = RunStatus::new(name.to_owned(), 3000);
        status.state = state;
        status.current_step = 1000;
        status.loss = Some(loss);
        device.clone_into(&mut status.device);
        status.producer = Some(Producer::trainui());
        status.updated_at =
            humantime::format_rfc3339_millis(SystemTime::now() - Duration::from_secs(age))
                .to_string();
        std::fs::write(
            run.join("status/training_status.json"),
            serde_json::to_vec(&status).unwrap(),
        )
        .unwrap();
        if !config.is_null() {
            std::fs::write(run.join("config.json"), config.to_string()).unwrap();
        }
        run
    }

    fn config(name: &str, learning_rate: f64) -> Value {
        json!({
            "run_dir": format!("runs/{name}"),
            "seed": 1337,
            "device": "auto",
            "train": {"max_steps": 3000, "learning_rate": learning_rate, "batch_size": 64},
        })
    }

    /// Three learning rates: lr-1e-3 finished an hour ago, lr-3e-4 and
    /// lr-1e-4 train (updated 10 s and 20 s ago).
    fn sweep() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let sweep = dir.path().join("sweep");
        for (name, state, loss, age, lr) in [
            ("lr-1e-3", RunState::Finished, 0.44, 3600, 1e-3),
            ("lr-3e-4", RunState::Training, 0.81, 10, 3e-4),
            ("lr-1e-4", RunState::Training, 1.52, 20, 1e-4),
        ] {
            sweep_run(&sweep, name, state, loss, "cpu", age, &config(name, lr));
        }
        dir
    }

    fn runs_json(dir: &Path, args: &[&str]) -> Vec<Value> {
        let mut all = vec!["runs", dir.to_str().unwrap(), "--json"];
        all.extend(args);
        let output = trainui(&all);
        assert!(output.status.success(), "{output:?}");
        serde_json::from_slice::<Vec<Value>>(&output.stdout).unwrap()
    }

    fn names(runs: &[Value]) -> Vec<&str> {
        runs.iter()
            .map(|run| run["name"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn runs_are_chosen_by_config_keys_state_and_name_and_every_filter_must_pass() {
        let dir = sweep();
        let dir = dir.path();
        let chosen = |args: &[&str]| names(&runs_json(dir, args)).join(" ");
        // Most recently updated first, as without filters.
        assert_eq!(chosen(&[]), "lr-3e-4 lr-1e-4 lr-1e-3");
        assert_eq!(
            chosen(&["--where", "train.learning_rate<1e-3"]),
            "lr-3e-4 lr-1e-4"
        );
        assert_eq!(chosen(&["--where", "train.learning_rate>=1e-3"]), "lr-1e-3");
        assert_eq!(chosen(&["--where", "state=finished"]), "lr-1e-3");
        assert_eq!(chosen(&["--where", "name=lr-1*"]), "lr-1e-4 lr-1e-3");
        assert_eq!(chosen(&["--where", "loss<1"]), "lr-3e-4 lr-1e-3");
        assert_eq!(
            chosen(&[
                "--where",
                "state=training",
                "--where",
                "train.learning_rate=1e-4"
            ]),
            "lr-1e-4"
        );
        // A key no run has: only `!=` passes.
        assert_eq!(chosen(&["--where", "train.warmup_steps=5"]), "");
        assert_eq!(
            chosen(&["--where", "train.warmup_steps!=5"]),
            "lr-3e-4 lr-1e-4 lr-1e-3"
        );
        // The config's `device` goes by config.device, the run's by device.
        assert_eq!(
            chosen(&["--where", "config.device=auto", "--where", "device=cpu"]).len(),
            23
        );
        // The table says when no run passes.
        let output = trainui(&["runs", dir.to_str().unwrap(), "--where", "state=failed"]);
        assert!(output.status.success(), "{output:?}");
        let said = String::from_utf8(output.stdout).unwrap();
        assert!(said.starts_with("no run in "), "{said}");
        assert!(said.contains("passes --where state=failed"), "{said}");
    }

    #[test]
    fn runs_sort_by_a_column_or_a_config_key_either_way_with_runs_lacking_it_last() {
        let dir = sweep();
        // A run without a config.json has no learning rate.
        sweep_run(
            &dir.path().join("sweep"),
            "no-config",
            RunState::Training,
            0.1,
            "cpu",
            5,
            &Value::Null,
        );
        let dir = dir.path();
        let order = |args: &[&str]| names(&runs_json(dir, args)).join(" ");
        assert_eq!(
            order(&["--sort", "train.learning_rate"]),
            "lr-1e-4 lr-3e-4 lr-1e-3 no-config"
        );
        for descending in [
            &["--sort=-train.learning_rate"][..],
            &["--sort", "-train.learning_rate"],
            &["--sort", "train.learning_rate", "--reverse"],
        ] {
            assert_eq!(
                order(descending),
                "lr-1e-3 lr-3e-4 lr-1e-4 no-config",
                "{descending:?}"
            );
        }
        assert_eq!(
            order(&["--sort", "loss"]),
            "no-config lr-1e-3 lr-3e-4 lr-1e-4"
        );
        assert_eq!(
            order(&["--sort", "name"]),
            "lr-1e-3 lr-1e-4 lr-3e-4 no-config"
        );
        // Ties keep the default order: most recently updated first.
        assert_eq!(
            order(&["--sort", "-state"]),
            "no-config lr-3e-4 lr-1e-4 lr-1e-3"
        );
        // Oldest first.
        assert_eq!(order(&["--reverse"]), "lr-1e-3 lr-1e-4 lr-3e-4 no-config");
        // The table lists them in the same order.
        let output = trainui(&[
            "runs",
            dir.to_str().unwrap(),
            "--sort",
            "train.learning_rate",
        ]);
        let table = String::from_utf8(output.stdout).unwrap();
        let rows: Vec<&str> = table
            .lines()
            .skip(1)
            .filter_map(|line| line.split_whitespace().next())
            .collect();
        assert_eq!(
            rows,
            ["lr-1e-4", "lr-3e-4", "lr-1e-3", "no-config"],
            "{table}"
        );
    }

    #[test]
    fn the_config_keys_and_producer_details_that_differ_get_columns_of_their_own() {
        let dir = sweep();
        // One run on a GPU.
        let gpu = dir.path().join("gpu");
        sweep_run(
            &gpu,
            "lr-1e-3-gpu",
            RunState::Training,
            0.6,
            "cuda:0",
            30,
            &config("lr-1e-3-gpu", 1e-3),
        );
        let dir = dir.path();
        let output = Command::new(env!("CARGO_BIN_EXE_trainui"))
            .args(["runs", dir.to_str().unwrap()])
            .env_remove("COLUMNS")
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let table = String::from_utf8(output.stdout).unwrap();
        let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
        // run_dir differs too, but the path says it; the rest is the same.
        assert_eq!(
            header,
            [
                "run",
                "state",
                "step",
                "loss",
                "val",
                "loss",
                "timeouts",
                "updated",
                "train.learning_rate",
                "device",
                "path"
            ],
            "{table}"
        );
        let row = |name: &str| {
            table
                .lines()
                .find(|line| line.starts_with(&format!("{name} ")))
                .unwrap()
                .split_whitespace()
                .collect::<Vec<_>>()
        };
        let gpu_row = row("lr-1e-3-gpu");
        assert_eq!(
            gpu_row[gpu_row.len() - 3..gpu_row.len() - 1],
            ["0.001", "cuda:0"]
        );
        let cpu_row = row("lr-1e-4");
        assert_eq!(
            cpu_row[cpu_row.len() - 3..cpu_row.len() - 1],
            ["0.0001", "cpu"]
        );

        // The JSON gives each run its values of the same keys.
        let runs = runs_json(dir, &["--sort", "name"]);
        let differing: Vec<Value> = runs.iter().map(|run| run["differing"].clone()).collect();
        assert_eq!(
            differing,
            [
                json!({"device": "cpu", "train.learning_rate": 0.001}),
                json!({"device": "cuda:0", "train.learning_rate": 0.001}),
                json!({"device": "cpu", "train.learning_rate": 0.0001}),
                json!({"device": "cpu", "train.learning_rate": 0.0003}),
            ]
        );
        assert_eq!(runs[1]["device"], "cuda:0");
        assert_eq!(runs[1]["producer"]["framework"], "trainui");
        // Among the runs chosen only: the CPU runs differ in learning rate alone.
        let cpu = runs_json(dir, &["--where", "device=cpu"]);
        assert!(
            cpu.iter()
                .all(|run| run["differing"].as_object().unwrap().len() == 1)
        );

        // On a narrow terminal the keys that do not fit are named below.
        let output = Command::new(env!("CARGO_BIN_EXE_trainui"))
            .args(["runs", dir.to_str().unwrap()])
            .env("COLUMNS", "135")
            .output()
            .unwrap();
        let table = String::from_utf8(output.stdout).unwrap();
        // train.learning_rate does not fit beside the usual columns, device does.
        assert!(
            table.lines().next().unwrap().contains(" device "),
            "{table}"
        );
        for line in table.lines().take(5) {
            assert!(line.chars().count() <= 135, "{line}\n{table}");
        }
        assert!(
            table.contains(
                "1 more differing key, too wide for the terminal (trainui diff or runs --json \
                 shows them): train.learning_rate"
            ),
            "{table}"
        );
    }

    #[test]
    fn runs_are_found_below_the_folder_down_to_the_depth_but_not_inside_a_run() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let at = |path: &str| {
            let path = root.join(path);
            let (parent, name) = (path.parent().unwrap(), path.file_name().unwrap());
            sweep_run(
                parent,
                name.to_str().unwrap(),
                RunState::Finished,
                1.0,
                "cpu",
                60,
                &Value::Null,
            );
        };
        at("top");
        at("top/inside");
        at("a/two");
        at("a/b/three");
        at("a/b/c/four");
        at(".hidden/two");
        let found = |depth: &[&str]| {
            let mut names = names(&runs_json(root, depth))
                .iter()
                .map(|name| (*name).to_owned())
                .collect::<Vec<_>>();
            names.sort();
            names.join(" ")
        };
        assert_eq!(found(&[]), "three top two");
        assert_eq!(found(&["--depth", "1"]), "top");
        assert_eq!(found(&["--depth", "4"]), "four three top two");
        // A run directory stands for itself.
        let top = root.join("top");
        assert_eq!(names(&runs_json(&top, &[])), ["top"]);
    }

    #[test]
    fn a_malformed_filter_or_sort_is_a_usage_error_that_names_it_and_shows_one_that_works() {
        let dir = sweep();
        for (flag, text, says) in [
            ("--where", "learning_rate", "no comparison"),
            ("--where", "state=", "no value after the comparison"),
            ("--where", "loss=<3", "one comparison only"),
            ("--sort", "--loss", "give one column"),
        ] {
            let output = trainui(&["runs", dir.path().to_str().unwrap(), flag, text]);
            assert_eq!(output.status.code(), Some(2), "{output:?}");
            let said = String::from_utf8(output.stderr).unwrap();
            assert!(said.contains(&format!("{text:?}: {says}")), "{said}");
            assert!(said.contains("e.g. --"), "{said}");
        }
    }

    fn diff(args: &[&Path], flags: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_trainui"));
        command
            .arg("diff")
            .args(args)
            .args(flags)
            .env_remove("COLUMNS");
        command.output().unwrap()
    }

    #[test]
    fn diff_prints_the_keys_that_differ_a_column_per_run() {
        let dir = sweep();
        let sweep = dir.path().join("sweep");
        let [a, b, c] = ["lr-1e-3", "lr-3e-4", "lr-1e-4"].map(|name| sweep.join(name));
        let output = diff(&[&a, &b], &[]);
        assert!(output.status.success(), "{output:?}");
        assert_eq!(
            String::from_utf8(output.stdout).unwrap(),
            "key                  lr-1e-3  lr-3e-4\n\
             train.learning_rate  0.001    0.0003\n"
        );
        // A third run with a key of its own, on another device.
        let mut third = config("lr-1e-4", 1e-4);
        third["train"]["warmup_steps"] = json!(100);
        sweep_run(
            &sweep,
            "lr-1e-4",
            RunState::Training,
            1.0,
            "cuda:1",
            0,
            &third,
        );
        let output = diff(&[&a, &b, &c], &[]);
        assert_eq!(
            String::from_utf8(output.stdout).unwrap(),
            "key                  lr-1e-3  lr-3e-4  lr-1e-4\n\
             train.learning_rate  0.001    0.0003   0.0001\n\
             train.warmup_steps   -        -        100\n\
             device               cpu      cpu      cuda:1\n"
        );
        // --all: every key, the same ones too.
        let output = diff(&[&a, &b], &["--all"]);
        let all = String::from_utf8(output.stdout).unwrap();
        let keys: Vec<&str> = all
            .lines()
            .skip(1)
            .filter_map(|line| line.split_whitespace().next())
            .collect();
        assert_eq!(
            keys,
            [
                "config.device",
                "run_dir",
                "seed",
                "train.batch_size",
                "train.learning_rate",
                "train.max_steps",
                "framework",
                "device",
                "world_size",
            ],
            "{all}"
        );
        // --json: the keys, and each run's values of them.
        let output = diff(&[&a, &c], &["--json"]);
        let report: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(
            report["keys"],
            json!(["train.learning_rate", "train.warmup_steps", "device"])
        );
        assert_eq!(report["runs"][0]["name"], "lr-1e-3");
        assert_eq!(
            report["runs"][0]["values"],
            json!({"device": "cpu", "train.learning_rate": 0.001})
        );
        assert_eq!(
            report["runs"][1]["values"],
            json!({"device": "cuda:1", "train.learning_rate": 0.0001, "train.warmup_steps": 100})
        );
        // Runs with the same settings say so.
        let output = diff(&[&a, &a], &[]);
        let said = String::from_utf8(output.stdout).unwrap();
        assert!(
            said.starts_with("the 2 runs have the same config"),
            "{said}"
        );
    }

    #[test]
    fn diff_refuses_a_run_without_config_json_and_a_single_run() {
        let dir = sweep();
        let sweep = dir.path().join("sweep");
        let bare = sweep_run(
            &sweep,
            "bare",
            RunState::Training,
            1.0,
            "cpu",
            0,
            &Value::Null,
        );
        let output = diff(&[&sweep.join("lr-1e-3"), &bare], &[]);
        assert_eq!(output.status.code(), Some(2), "{output:?}");
        let said = String::from_utf8(output.stderr).unwrap();
        assert!(
            said.contains(&format!("{}: no config.json", bare.display())),
            "{said}"
        );
        std::fs::write(bare.join("config.json"), "{not json").unwrap();
        let output = diff(&[&sweep.join("lr-1e-3"), &bare], &[]);
        assert_eq!(output.status.code(), Some(2), "{output:?}");
        let said = String::from_utf8(output.stderr).unwrap();
        assert!(
            said.contains(&format!("{}: not JSON", bare.join("config.json").display())),
            "{said}"
        );
        let output = diff(&[&sweep.join("lr-1e-3")], &[]);
        assert_eq!(output.status.code(), Some(2), "{output:?}");
    }
}
