//! `trainui bench` end to end, at its smallest: the PyTorch peer runs, both
//! sides compute the same function, and every figure and target is reported.
//! (No speed is asserted here; the bench itself is where speed is judged.)
#![allow(clippy::unwrap_used)]

use serde_json::Value;

fn python() -> String {
    std::env::var("TRAINUI_PYTHON").expect(
        "TRAINUI_PYTHON names a Python with torch 2.13.0 for the PyTorch peer; ./dev test sets it",
    )
}

#[test]
fn the_bench_compares_trainui_with_the_pytorch_peer_on_the_same_function() {
    let output = crate::common::trainui()
        .args([
            "bench",
            "--json",
            "--rounds",
            "1",
            "--steps",
            "2",
            "--abort-samples",
            "3",
            "--history-steps",
            "2000",
            "--python",
            &python(),
        ])
        .output()
        .unwrap();
    crate::common::assert_success(&output);
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["setup"]["parameters"], report["peer_parameters"]);
    assert!(report["setup"]["parameters"].as_u64().unwrap() > 3_000_000);
    let diff = report["logits_max_abs_diff"].as_f64().unwrap();
    assert!(diff <= 1e-4, "logits differ by {diff}");
    assert!(report["torch"].as_str().unwrap().starts_with("2.13.0"));

    for figure in [
        &report["training"]["tokens_per_sec"],
        &report["training"]["peer_tokens_per_sec"],
        &report["generation"]["tokens_per_sec"],
        &report["generation"]["peer_tokens_per_sec"],
        &report["ui"]["tui_tokens_per_sec"],
        &report["setup"]["model_matmul_gflops"],
    ] {
        assert!(figure.as_f64().unwrap() > 0.0, "{report:#}");
    }
    assert_eq!(report["abort"]["generations"], 3);
    assert_eq!(report["timeout_overshoot"]["generations"], 3);
    assert_eq!(report["ui"]["history_steps"], 2000);
    assert_eq!(report["ui"]["frames"].as_array().unwrap().len(), 2);

    // The real `watch` on a busy run, then on the same run finished.
    let watch = &report["ui"]["watch"];
    assert!(watch["busy_events"].as_u64().unwrap() > 0, "{watch}");
    assert!(watch["busy_secs"].as_f64().unwrap() > 0.0, "{watch}");
    assert!(watch["idle_cpu_share"].as_f64().unwrap() >= 0.0, "{watch}");

    // The real `watch` and `status` on a long history (here 2,000 steps).
    let history = &report["ui"]["history"];
    assert_eq!(history["steps"], 2000, "{history}");
    assert!(history["events"].as_u64().unwrap() > 2000, "{history}");
    assert!(
        history["watch_first_screen_secs"].as_f64().unwrap() > 0.0,
        "{history}"
    );
    assert!(
        history["status_max_secs"].as_f64().unwrap() > 0.0,
        "{history}"
    );

    // The same history over ssh to a loopback sshd, and a busy run
    // followed there, its copy checked byte for byte.
    let remote = &history["remote"];
    assert!(
        remote["watch_first_screen_secs"].as_f64().unwrap() > 0.0,
        "{history}"
    );
    assert!(remote["follow_events"].as_u64().unwrap() > 0, "{remote}");
    assert!(remote["copy_bytes"].as_u64().unwrap() > 0, "{remote}");
    for side in ["near_cpu_share", "far_cpu_share"] {
        assert!(remote[side].as_f64().unwrap() > 0.0, "{remote}");
    }

    let targets = report["targets"].as_array().unwrap();
    // Three of them time `query --csv` on the history, `runs` over 1,000
    // runs and `watch` over 200; three more the remote run.
    assert_eq!(targets.len(), 23, "{targets:#?}");
    for target in targets {
        assert!(target["pass"].is_boolean(), "{target}");
    }
    let verdict = |name: &str| {
        targets
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("no target {name}"))["pass"]
            .as_bool()
            .unwrap()
    };
    assert!(verdict("parameters, trainui = peer"));
    assert!(
        targets
            .iter()
            .any(|t| t["name"] == "runs, 1,000 runs, median (s)")
    );
    assert!(verdict("logits max |trainui - peer|"));
    assert!(
        targets
            .iter()
            .any(|t| t["name"] == "remote follow cost, busy run, far side (% of a core)")
    );
}

#[test]
fn a_missing_python_is_a_clear_error() {
    let output = crate::common::trainui()
        .args([
            "bench",
            "--rounds",
            "1",
            "--steps",
            "1",
            "--abort-samples",
            "1",
            "--history-steps",
            "10",
            "--python",
            "/nonexistent/python3",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot run the PyTorch peer with /nonexistent/python3"),
        "{stderr}"
    );
}
