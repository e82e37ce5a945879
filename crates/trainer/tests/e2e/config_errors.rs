//! Every configuration and data mistake ends with a message naming the file,
//! the key or line, and the fix, exit code 2, and no panic.
#![allow(clippy::unwrap_used)] // helpers outside #[test] functions

use crate::common::{assert_user_error, temp_file, tiny_run, trainui};

fn train_with_config(text: &str, sets: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let config = temp_file(dir.path(), "config.json", text);
    let mut command = trainui();
    command
        .args(["train", "--no-tui", "--run-dir"])
        .arg(dir.path().join("run"));
    command.arg("--config").arg(&config);
    for set in sets {
        command.args(["--set", set]);
    }
    command.output().unwrap()
}

#[test]
fn unknown_key_is_named_with_the_nearest_valid_one() {
    let output = train_with_config(r#"{"eval": {"eval_timeout_second": 60}}"#, &[]);
    assert_user_error(
        &output,
        &[
            "config.json",
            "unknown key \"eval.eval_timeout_second\"",
            "did you mean \"eval.eval_timeout_seconds\"",
        ],
    );
}

#[test]
fn wrong_type_names_the_dotted_path() {
    let output = train_with_config(r#"{"train": {"batch_size": "big"}}"#, &[]);
    assert_user_error(
        &output,
        &["config.json: train.batch_size: invalid type: string \"big\""],
    );
}

#[test]
fn out_of_range_value_names_the_key() {
    let output = train_with_config(r#"{"train": {"log_steps": 0}}"#, &[]);
    assert_user_error(&output, &["train.log_steps must be at least 1 (got 0)"]);
    let output = train_with_config(r#"{"train": {"learning_rate": -1}}"#, &[]);
    assert_user_error(
        &output,
        &["train.learning_rate must be a number greater than 0"],
    );
}

#[test]
fn set_goes_through_the_same_validation() {
    let output = train_with_config("{}", &["model.n_layers=2"]);
    assert_user_error(
        &output,
        &[
            "--set model.n_layers=2: unknown key",
            "did you mean \"model.n_layer\"",
        ],
    );
    let output = train_with_config("{}", &["eval.temperature=hot"]);
    assert_user_error(
        &output,
        &["--set eval.temperature=hot: eval.temperature: invalid type"],
    );
    let output = train_with_config("{}", &["train.max_steps"]);
    assert_user_error(&output, &["--set train.max_steps: expected KEY=VALUE"]);
}

#[test]
fn invalid_json_gives_line_and_column() {
    let output = train_with_config("{\n  \"seed\": 1,\n}\n", &[]);
    assert_user_error(&output, &["config.json:3:1: invalid JSON"]);
}

#[test]
fn missing_config_file_is_named() {
    let output = trainui()
        .args(["train", "--config", "/nonexistent/c.json"])
        .output()
        .unwrap();
    assert_user_error(
        &output,
        &["/nonexistent/c.json: cannot read the config file"],
    );
}

#[test]
fn unknown_or_missing_device_is_a_config_error() {
    let output = train_with_config(r#"{"device": "tpu"}"#, &[]);
    assert_user_error(&output, &["device: \"tpu\" is not a device"]);
    // No machine this runs on has 100 GPUs.
    let output = train_with_config("{}", &["device=cuda:99"]);
    assert_user_error(&output, &["device: \"cuda:99\""]);
}

#[test]
fn usage_errors_exit_with_2() {
    let output = trainui()
        .args(["train", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

fn train_with_data(train: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let data = temp_file(dir.path(), "bad.jsonl", train);
    let set = format!("data.train_file={}", data.display());
    tiny_run(&dir.path().join("run"), &[&set]).output().unwrap()
}

#[test]
fn malformed_data_line_names_file_and_line() {
    let output = train_with_data(
        "{\"prompt\": \"1+1=\", \"completion\": \"2\"}\n{\"prompt\": \"2+2=\", \"completion\": 4}\n",
    );
    assert_user_error(&output, &["bad.jsonl:2: expected {\"prompt\""]);
    let output = train_with_data("{\"prompt\": \"1+1=\", \"completion\": \"2\"}\nnot json\n");
    assert_user_error(&output, &["bad.jsonl:2:"]);
}

#[test]
fn empty_data_file_is_an_error() {
    let output = train_with_data("");
    assert_user_error(&output, &["bad.jsonl: the file has no examples"]);
}

#[test]
fn overlong_example_names_its_line_unless_skipping_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let data = temp_file(
        dir.path(),
        "long.jsonl",
        "{\"prompt\": \"1+1=\", \"completion\": \"2\"}\n\
         {\"prompt\": \"rev 12345678901234567890=\", \"completion\": \"09876543210987654321\"}\n",
    );
    let set = format!("data.train_file={}", data.display());
    let output = tiny_run(&dir.path().join("a"), &[&set]).output().unwrap();
    assert_user_error(
        &output,
        &[
            "long.jsonl:2: example is",
            "model.block_size = 32",
            "data.overlong",
        ],
    );

    let output = tiny_run(
        &dir.path().join("b"),
        &[&set, "data.overlong=skip", "train.max_steps=2"],
    )
    .output()
    .unwrap();
    crate::common::assert_success(&output);
    let started = &crate::common::events_of(&dir.path().join("b"), "started")[0];
    assert_eq!(started["skipped_overlong"], 1);
    assert_eq!(started["train_examples"], 1);
}

#[test]
fn missing_tokenizer_says_how_to_make_one() {
    let dir = tempfile::tempdir().unwrap();
    let output = tiny_run(
        &dir.path().join("run"),
        &["data.tokenizer=/nonexistent/tok.json"],
    )
    .output()
    .unwrap();
    assert_user_error(
        &output,
        &[
            "/nonexistent/tok.json: tokenizer file not found",
            "trainui tokenizer",
        ],
    );
    assert!(
        !dir.path().join("run").exists(),
        "nothing is written for a run that cannot start"
    );
}

#[test]
fn an_existing_run_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    tiny_run(&run, &["train.max_steps=2"]).assert().success();
    let before = std::fs::read(run.join("events.jsonl")).unwrap();
    let output = tiny_run(&run, &["train.max_steps=2"]).output().unwrap();
    assert_user_error(&output, &["already holds a run", "--resume latest"]);
    assert_eq!(std::fs::read(run.join("events.jsonl")).unwrap(), before);
}

#[test]
fn a_key_given_twice_names_both_lines() {
    let output = train_with_config(
        "{\n  \"train\": {\n    \"max_steps\": 10,\n    \"max_steps\": 20\n  }\n}\n",
        &[],
    );
    assert_user_error(
        &output,
        &["config.json:4: \"train.max_steps\" is given twice (lines 3 and 4)"],
    );
}

#[test]
fn a_mistake_in_a_set_value_is_blamed_on_the_set() {
    let output = tiny_run(
        &tempfile::tempdir().unwrap().path().join("run"),
        &["train.min_learning_rate=1"],
    )
    .output()
    .unwrap();
    assert_user_error(
        &output,
        &["error: --set train.min_learning_rate=1: train.min_learning_rate (1) must not exceed"],
    );
}
