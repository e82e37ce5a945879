//! Fine-tuning Hugging Face model folders end to end with the real binary:
//! train from a folder, resume, export, generate, and the mistakes a user
//! can make with a folder. The folders are tiny random models that
//! tests/hf/tiny_models.py builds with transformers.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn python() -> String {
    std::env::var("TRAINUI_PYTHON").expect(
        "TRAINUI_PYTHON names a Python with torch 2.13.0 and transformers; ./dev test sets it",
    )
}

/// `dir/gpt2` and `dir/llama`, with the demo tokenizer.
fn make_models(dir: &Path) {
    let output = Command::new(python())
        .arg(crate::common::repo().join("crates/trainer/tests/hf/tiny_models.py"))
        .arg("make")
        .arg(dir)
        .arg(crate::common::repo().join("assets/demo/tokenizer.json"))
        .output()
        .unwrap();
    crate::common::assert_success(&output);
}

fn finetune(model: &Path, run_dir: &Path, extra: &[&str]) -> std::process::Output {
    let init = format!("model.init_from={}", model.display());
    let mut args = vec![
        "train",
        "--no-tui",
        "--run-dir",
        run_dir.to_str().unwrap(),
        "--set",
        &init,
    ];
    for set in [
        "train.max_steps=30",
        "train.batch_size=16",
        "train.warmup_steps=5",
        "train.learning_rate=0.003",
        "train.log_steps=5",
        "eval.eval_steps=15",
        "eval.samples=2",
        "eval.max_new_tokens=8",
        "checkpoint.save_steps=15",
    ] {
        args.extend(["--set", set]);
    }
    args.extend(extra);
    crate::common::trainui().args(&args).output().unwrap()
}

/// A copy of `dir/name` with its config.json changed by `edit`.
fn edited(dir: &Path, name: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    edited_file(dir, name, "config.json", edit)
}

/// A copy of `dir/name` with its JSON file `file` changed by `edit`.
fn edited_file(dir: &Path, name: &str, file: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let copy = dir.join(format!("{name}-edited-{}", rand_suffix()));
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(dir.join(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    let path = copy.join(file);
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(&path, config.to_string()).unwrap();
    copy
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[test]
fn a_llama_folder_fine_tunes_resumes_exports_and_generates_as_transformers_does() {
    let dir = tempfile::tempdir().unwrap();
    make_models(dir.path());
    let run = dir.path().join("run");
    let output = finetune(&dir.path().join("llama"), &run, &[]);
    crate::common::assert_success(&output);
    let losses = crate::common::step_losses(&run);
    assert_eq!(losses.len(), 6, "{losses:?}");
    assert!(
        losses[5] < 0.8 * losses[0],
        "fine-tuning lowers the loss: {losses:?}"
    );
    let started = &crate::common::events_of(&run, "started")[0];
    assert_eq!(started["vocab_size"], 262, "the folder's tokenizer");
    assert_eq!(crate::common::events_of(&run, "eval_finished").len(), 2);

    // The checkpoint resumes.
    let resumed = crate::common::trainui()
        .args(["train", "--no-tui", "--run-dir", run.to_str().unwrap()])
        .args(["--resume", "latest", "--set", "train.max_steps=35"])
        .output()
        .unwrap();
    crate::common::assert_success(&resumed);
    assert_eq!(crate::common::status(&run)["current_step"], 35);

    // Export it, and compare transformers' greedy tokens with trainui generate.
    let checkpoint = run.join("checkpoints/checkpoint-35");
    let exported = dir.path().join("exported");
    let export = crate::common::trainui()
        .arg("export")
        .arg(&checkpoint)
        .arg("--out")
        .arg(&exported)
        .output()
        .unwrap();
    crate::common::assert_success(&export);
    // End-of-text held back on both sides: 16 real tokens to compare.
    let generation = generate_json(&checkpoint, "rev 498455=", 16);
    assert_eq!(generation["prompt"], "rev 498455=");
    let theirs = Command::new(python())
        .arg(crate::common::repo().join("crates/trainer/tests/hf/tiny_models.py"))
        .arg("greedy")
        .arg(&exported)
        .arg(generation["prompt_ids"].to_string())
        .args(["16", "16"])
        .output()
        .unwrap();
    crate::common::assert_success(&theirs);
    let theirs: Value = serde_json::from_slice(&theirs.stdout).unwrap();
    assert_eq!(theirs.as_array().unwrap().len(), 16, "{theirs}");
    assert_eq!(generation["token_ids"], theirs, "{generation}");
    // trainui reads its own export back too. (Logits of exported folders
    // against transformers: the unit tests in crates/trainer/src/trainer/inference.rs.)
    let again = generate_json(&exported, "rev 498455=", 16);
    assert_eq!(again["token_ids"], generation["token_ids"]);
}

/// `trainui generate --json` with end-of-text held back for all `tokens`.
fn generate_json(model: &Path, prompt: &str, tokens: u32) -> Value {
    let tokens = tokens.to_string();
    let output = crate::common::trainui()
        .args([
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--prompt",
            prompt,
        ])
        .args([
            "--max-new-tokens",
            &tokens,
            "--min-new-tokens",
            &tokens,
            "--json",
        ])
        .output()
        .unwrap();
    crate::common::assert_success(&output);
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn generate_reads_a_model_folder_and_reports_a_timeout_as_in_evaluation() {
    let dir = tempfile::tempdir().unwrap();
    make_models(dir.path());
    let gpt2 = dir.path().join("gpt2");
    let output = crate::common::trainui()
        .args(["generate", "--model", gpt2.to_str().unwrap()])
        .args(["--prompt", "7+8=", "--max-new-tokens", "5", "--json"])
        .output()
        .unwrap();
    crate::common::assert_success(&output);
    let generation: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(generation["outcome"]["kind"], "completed");
    assert!(generation["token_ids"].as_array().unwrap().len() <= 5);

    // A deadline far below one decoding step: the outcome is timed_out.
    let output = crate::common::trainui()
        .args(["generate", "--model", gpt2.to_str().unwrap()])
        .args([
            "--prompt",
            "7+8=",
            "--max-new-tokens",
            "60",
            "--timeout",
            "0.000001",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let generation: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(generation["outcome"]["kind"], "timed_out");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the generation timed out (--timeout 0.000001s)"),
        "{stderr}"
    );
}

#[test]
fn folder_mistakes_are_clear_errors_naming_the_key_or_tensor() {
    let dir = tempfile::tempdir().unwrap();
    make_models(dir.path());
    let train = |folder: &Path, extra: &[&str]| {
        let run = dir.path().join(format!("run-{}", rand_suffix()));
        finetune(folder, &run, extra)
    };

    let bert = edited(dir.path(), "llama", |c| {
        c["architectures"] = serde_json::json!(["BertModel"]);
    });
    crate::common::assert_user_error(
        &train(&bert, &[]),
        &["architecture \"BertModel\" is not supported", "config.json"],
    );
    let generate = crate::common::trainui()
        .args([
            "generate",
            "--model",
            bert.to_str().unwrap(),
            "--prompt",
            "1+1=",
        ])
        .output()
        .unwrap();
    crate::common::assert_user_error(&generate, &["architecture \"BertModel\" is not supported"]);

    crate::common::assert_user_error(
        &train(&dir.path().join("llama"), &["--set", "model.n_layer=3"]),
        &["model.n_layer is 3", "says 2", "remove model.n_layer"],
    );

    // 40 more tokens than the model's vocabulary of 262.
    let big_tokenizer = edited_file(dir.path(), "gpt2", "tokenizer.json", |t| {
        let added = t["added_tokens"].as_array_mut().unwrap();
        for id in 262..302 {
            added.push(serde_json::json!({
                "id": id, "content": format!("<extra_{id}>"), "single_word": false,
                "lstrip": false, "rstrip": false, "normalized": false, "special": true
            }));
        }
    });
    crate::common::assert_user_error(
        &train(&big_tokenizer, &[]),
        &["the tokenizer has 302 tokens", "a vocabulary of 262"],
    );

    // Weights that do not fit config.json: refused from the weight files'
    // headers before anything is written.
    let failure = |folder: &Path, needles: &[&str]| {
        let run = dir.path().join(format!("run-{}", rand_suffix()));
        crate::common::assert_user_error(&finetune(folder, &run, &[]), needles);
        assert!(!run.exists(), "nothing is written for a refused folder");
    };
    let deeper = edited(dir.path(), "llama", |c| c["num_hidden_layers"] = 3.into());
    failure(
        &deeper,
        &["tensor model.layers.2.", "is missing from the weights"],
    );
    let shallower = edited(dir.path(), "llama", |c| c["num_hidden_layers"] = 1.into());
    failure(
        &shallower,
        &["tensor model.layers.1.", "is not a parameter"],
    );
    let narrower = edited(dir.path(), "llama", |c| c["intermediate_size"] = 40.into());
    failure(
        &narrower,
        &["has shape [32, 48], but config.json makes it [32, 40]"],
    );
    let truncated = edited(dir.path(), "llama", |_| {});
    let weights = truncated.join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() - 100]).unwrap();
    failure(
        &truncated,
        &["model.safetensors: tensor", "the file is truncated"],
    );
}

#[test]
fn generate_names_a_missing_model_folder() {
    let output = crate::common::trainui()
        .args(["generate", "--model", "no/such/model", "--prompt", "1+1="])
        .output()
        .unwrap();
    crate::common::assert_user_error(
        &output,
        &["no/such/model: no such folder", "Hugging Face model folder"],
    );
}
