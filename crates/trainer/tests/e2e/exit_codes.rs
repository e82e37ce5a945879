//! Every error carries its exit code from where it was made: a mistake in
//! what the user asked for exits 2, a failure while running exits 1, and
//! neither panics.
#![allow(clippy::unwrap_used)] // helpers outside #[test] functions

use std::path::{Path, PathBuf};

use crate::common::{assert_runtime_error, assert_user_error, tiny_run, trainui};

/// A checkpoint of a 2-step tiny run.
fn checkpoint(dir: &Path) -> PathBuf {
    let run = dir.join("run");
    crate::common::assert_success(
        &tiny_run(&run, &["train.max_steps=2", "eval.eval_steps=0"])
            .output()
            .unwrap(),
    );
    run.join("checkpoints/checkpoint-2")
}

#[test]
fn durations_beyond_a_year_are_refused_with_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let output = tiny_run(&dir.path().join("run"), &["eval.eval_timeout_seconds=1e30"])
        .output()
        .unwrap();
    assert_user_error(
        &output,
        &[
            "--set eval.eval_timeout_seconds=1e30: eval.eval_timeout_seconds:",
            "at most 31536000 (one year)",
        ],
    );
    assert!(!dir.path().join("run").exists(), "nothing is written");

    let output = trainui()
        .args(["ctl", "no/such/run", "eval", "--timeout", "inf"])
        .output()
        .unwrap();
    assert_user_error(&output, &["--timeout", "at most 31536000 (one year)"]);

    let output = trainui()
        .args(["generate", "--model", "no/such/model", "--prompt", "1+1="])
        .args(["--timeout", "1e30"])
        .output()
        .unwrap();
    assert_user_error(&output, &["--timeout", "at most 31536000 (one year)"]);
}

#[test]
fn export_and_generate_failures_while_running_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = checkpoint(dir.path());

    // A folder that cannot be created (even by root): /sys is read-only.
    let output = trainui()
        .arg("export")
        .arg(&checkpoint)
        .args(["--out", "/sys/trainui-export-test"])
        .output()
        .unwrap();
    assert_runtime_error(
        &output,
        &["/sys/trainui-export-test", "cannot create the folder"],
    );

    // Weights of the right size that libtorch cannot read.
    let weights = checkpoint.join("model.safetensors");
    let size = std::fs::metadata(&weights).unwrap().len();
    std::fs::write(&weights, vec![0u8; size as usize]).unwrap();
    let output = trainui()
        .arg("generate")
        .arg("--model")
        .arg(&checkpoint)
        .args(["--prompt", "1+1="])
        .output()
        .unwrap();
    assert_runtime_error(&output, &["model.safetensors"]);

    // What the user got wrong is still exit 2.
    let output = trainui()
        .arg("export")
        .arg(&checkpoint)
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_user_error(&output, &["already exists"]);
}

#[test]
fn a_bench_that_cannot_write_its_scratch_folder_exits_1() {
    let output = trainui()
        .args(["bench", "--rounds", "1", "--steps", "1"])
        .env("TMPDIR", "/sys")
        .output()
        .unwrap();
    assert_runtime_error(
        &output,
        &["/sys/trainui-bench-", "cannot create the bench's folder"],
    );
}

#[test]
fn a_temperature_that_is_not_a_finite_number_of_0_or_more_is_refused() {
    for bad in [
        "nan", "NaN", "inf", "-inf", "infinity", "-0.5", "1e400", "warm", "",
    ] {
        let output = trainui()
            .args(["generate", "--model", "no/such/model", "--prompt", "1+1="])
            .arg(format!("--temperature={bad}"))
            .output()
            .unwrap();
        assert_user_error(&output, &["--temperature"]);
    }
    let output = trainui()
        .args(["generate", "--model", "no/such/model", "--prompt", "1+1="])
        .args(["--temperature", "nan"])
        .output()
        .unwrap();
    assert_user_error(&output, &["--temperature", "finite number of 0 or more"]);
}
