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
fn the_version_is_the_workspaces() {
    let output = trainui(&["--version"]);
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        format!("trainui {}\n", env!("CARGO_PKG_VERSION"))
    );
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
            "plot",
            "export-tensorboard",
            "tokenizer",
            "ctl",
            "watch",
            "run",
            "bench",
            "generate",
            "export",
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
