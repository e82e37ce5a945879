//! Rates and ETA measured on a real training run. Alone in its test
//! program, so that no other test shares the CPUs while it measures (test
//! programs run one after another; the tests of one run side by side).

use crate::common::{events_of, tiny_run};

#[test]
fn rates_and_eta_leave_out_evaluations_and_steps_report_their_grad_norm() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    // An evaluation at step 15, inside the window logged at step 20, whose
    // one generation runs to its 2-second deadline: far longer than the
    // ten training steps around it.
    let output = tiny_run(
        &run,
        &[
            "train.max_steps=30",
            "train.log_steps=10",
            "eval.eval_steps=15",
            "eval.samples=1",
            "eval.eval_timeout_seconds=2",
            "eval.min_new_tokens=1000000",
            "eval.max_new_tokens=1000000",
        ],
    )
    .output()
    .unwrap();
    crate::common::assert_success(&output);
    let steps = events_of(&run, "step");
    let field =
        |name: &str| -> Vec<f64> { steps.iter().map(|e| e[name].as_f64().unwrap()).collect() };
    let (rates, etas) = (field("tokens_per_sec"), field("eta_secs"));
    assert_eq!(rates.len(), 3, "{steps:?}");
    // Counted over wall time, the window with the evaluation would be tens
    // of times slower; over training time it is about as fast as the others.
    let slowest_other = rates[0].min(rates[2]);
    assert!(rates[1] > 0.3 * slowest_other, "tokens/s {rates:?}");
    // 10 steps left at step 20, and 10 steps in the window before it: an
    // ETA over wall time would be the whole window, evaluation included
    // (at least 2 s of it); over training time it is that much shorter,
    // however slow the machine.
    let elapsed = field("elapsed_secs");
    let window = elapsed[1] - elapsed[0];
    assert!(etas[1] < window - 1.0, "eta {etas:?}, window {window:.2}s");
    let norms = field("grad_norm");
    assert!(norms.iter().all(|n| n.is_finite() && *n > 0.0), "{norms:?}");
    // The tokens seen so far, counted on from the start: more at each step
    // event.
    let seen: Vec<u64> = steps
        .iter()
        .map(|e| e["tokens_seen"].as_u64().unwrap())
        .collect();
    assert!(
        seen[0] > 0 && seen.windows(2).all(|w| w[1] > w[0]),
        "{seen:?}"
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("| grad norm "), "{stdout}");
}
