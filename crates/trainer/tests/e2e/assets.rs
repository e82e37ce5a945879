//! The shipped demo data and tokenizer are what the repository's own tools make.
#![allow(clippy::unwrap_used)] // helpers outside #[test] functions

use crate::common::{assert_user_error, repo, trainui};

#[test]
fn demo_data_is_what_the_generator_writes() {
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("python3")
        .arg(repo().join("scripts/make_demo_data.py"))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    for name in ["train.jsonl", "val.jsonl"] {
        let made = std::fs::read(dir.path().join(name)).unwrap();
        let shipped = std::fs::read(repo().join("assets/demo").join(name)).unwrap();
        assert!(
            made == shipped,
            "assets/demo/{name} differs from the generator's output"
        );
    }
}

#[test]
fn demo_tokenizer_is_what_trainui_tokenizer_writes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tokenizer.json");
    let output = trainui()
        .args([
            "tokenizer",
            "--data",
            "assets/demo/train.jsonl",
            "--vocab-size",
            "300",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    crate::common::assert_success(&output);
    let made: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let shipped: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo().join("assets/demo/tokenizer.json")).unwrap())
            .unwrap();
    assert_eq!(made, shipped);
    assert_eq!(made["added_tokens"][0]["content"], "<|endoftext|>");
}

#[test]
fn tokenizer_mistakes_are_user_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.json");
    let output = trainui()
        .args(["tokenizer", "--data", "/nonexistent/d.jsonl", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_user_error(
        &output,
        &["/nonexistent/d.jsonl: cannot read the data file"],
    );
    let bad = crate::common::temp_file(dir.path(), "bad.jsonl", "{\"prompt\": 1}\n");
    let output = trainui()
        .args(["tokenizer", "--data"])
        .arg(&bad)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_user_error(&output, &["bad.jsonl:1: expected"]);
    let output = trainui()
        .args([
            "tokenizer",
            "--data",
            "assets/demo/val.jsonl",
            "--vocab-size",
            "100",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert_user_error(
        &output,
        &["--vocab-size 100: a byte-level tokenizer needs at least 257"],
    );
    assert!(!out.exists());
}
