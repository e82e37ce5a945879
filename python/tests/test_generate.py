"""generate(): every outcome, the deadline's honesty, the abort flag from another thread."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from hf_fixtures import always_eos, char_tokenizer, failing, never_eos, slow, tiny_gpt2
from trainui.generate import DeadlineCriteria, Generation, generate

PROMPT = "rev 498455="


@pytest.fixture(scope="module")
def tokenizer():
    return char_tokenizer()


def endless(tokenizer):
    return never_eos(tiny_gpt2(tokenizer), tokenizer.eos_token_id)


def test_never_ending_generation_times_out_with_partial_text(tokenizer):
    model = endless(tokenizer)
    started = time.monotonic()
    result = generate(
        model,
        tokenizer=tokenizer,
        prompt=PROMPT,
        timeout=1.0,
        max_new_tokens=10**6,
        min_new_tokens=10**6,
        do_sample=False,
    )
    wall = time.monotonic() - started
    assert result.outcome == "timed_out"
    assert result.run_outcome == "timed_out"
    assert 1.0 <= result.elapsed_secs <= wall
    assert wall < 10.0, "one decoding step of a tiny model is far below 9 s"
    assert result.tokens > 0
    assert len(result.text) == result.tokens, "one character per token, none lost"
    assert "<|endoftext|>" not in result.text


def test_slow_forward_overruns_the_deadline_by_at_most_one_step(tokenizer):
    delay = 0.4
    model = slow(endless(tokenizer), delay)
    result = generate(
        model,
        tokenizer=tokenizer,
        prompt=PROMPT,
        timeout=1.0,
        max_new_tokens=1000,
        do_sample=False,
    )
    assert result.outcome == "timed_out"
    # The deadline is checked after every step: it is overrun by at most the
    # step during which it passed (plus bookkeeping; generous for a loaded box).
    assert result.elapsed_secs < 1.0 + delay + 1.5
    # Each forward takes at least `delay`, so the deadline comes by the 3rd
    # token; on a loaded machine it may come during the 1st.
    assert 1 <= result.tokens <= 3


def test_abort_from_another_thread(tokenizer):
    model = endless(tokenizer)
    abort = threading.Event()
    timer = threading.Timer(0.5, abort.set)
    timer.start()
    try:
        result = generate(
            model,
            tokenizer=tokenizer,
            prompt=PROMPT,
            timeout=60,
            abort=abort,
            max_new_tokens=10**6,
            min_new_tokens=10**6,
        )
    finally:
        timer.cancel()
    assert result.outcome == "aborted"
    assert 0.5 <= result.elapsed_secs < 30
    assert result.tokens > 0 and len(result.text) == result.tokens


def test_abort_already_set_generates_nothing(tokenizer):
    abort = threading.Event()
    abort.set()
    result = generate(
        endless(tokenizer), tokenizer=tokenizer, prompt=PROMPT, timeout=60, abort=abort
    )
    assert (result.outcome, result.tokens, result.text) == ("aborted", 0, "")


def test_runs_off_the_main_thread(tokenizer):
    model = endless(tokenizer)
    results: list[Generation] = []
    worker = threading.Thread(
        target=lambda: results.append(
            generate(
                model,
                tokenizer=tokenizer,
                prompt=PROMPT,
                timeout=0.5,
                max_new_tokens=10**6,
                min_new_tokens=10**6,
            )
        )
    )
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive()
    assert results[0].outcome == "timed_out"


def test_completed_at_max_new_tokens(tokenizer):
    result = generate(
        endless(tokenizer),
        tokenizer=tokenizer,
        prompt=PROMPT,
        timeout=60,
        max_new_tokens=7,
        do_sample=False,
    )
    assert result.outcome == "completed"
    assert result.tokens == 7 and len(result.text) == 7
    assert result.message is None


def test_completed_at_end_of_text_does_not_count_it(tokenizer):
    model = always_eos(tiny_gpt2(tokenizer), tokenizer.eos_token_id)
    result = generate(model, tokenizer=tokenizer, prompt=PROMPT, timeout=60, max_new_tokens=50)
    assert (result.outcome, result.tokens, result.text) == ("completed", 0, "")


def test_input_ids_without_tokenizer(tokenizer):
    ids = tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    result = generate(endless(tokenizer), ids, timeout=60, max_new_tokens=5)
    assert result.outcome == "completed" and result.tokens == 5
    assert result.token_ids == result.sequences[0, ids.shape[1] :].tolist()


def test_error_inside_generate_is_an_outcome_with_partial_tokens(tokenizer):
    model = failing(endless(tokenizer), after=4)
    result = generate(model, tokenizer=tokenizer, prompt=PROMPT, timeout=60, max_new_tokens=100)
    assert result.outcome == "error"
    assert "device-side assert" in result.message
    assert result.run_outcome == ("error", result.message)
    assert result.tokens == 4, (
        "prefill + 3 decoding steps made 4 tokens before the 5th forward failed"
    )


@pytest.mark.parametrize(
    "timeout", [float("nan"), float("inf"), -float("inf"), 0, -1.0, 1e30, "60", True, None]
)
def test_a_timeout_that_is_no_deadline_is_refused(tokenizer, timeout):
    """A NaN deadline is never reached: the generation would run as long as
    it likes and report `completed`. Refused as the CLI refuses it."""
    model = endless(tokenizer)
    with pytest.raises(
        ValueError, match="timeout must be a number of seconds greater than 0 and at most 31536000"
    ):
        generate(model, tokenizer=tokenizer, prompt=PROMPT, timeout=timeout, max_new_tokens=5)


@pytest.mark.parametrize(
    "temperature", [float("nan"), float("inf"), -float("inf"), -0.5, "hot", True]
)
def test_a_temperature_that_is_no_finite_number_of_0_or_more_is_refused(tokenizer, temperature):
    model = endless(tokenizer)
    with pytest.raises(ValueError, match="temperature must be a finite number of 0 or more"):
        generate(
            model,
            tokenizer=tokenizer,
            prompt=PROMPT,
            timeout=60,
            max_new_tokens=5,
            do_sample=True,
            temperature=temperature,
        )


def test_a_finite_temperature_samples(tokenizer):
    result = generate(
        endless(tokenizer),
        tokenizer=tokenizer,
        prompt=PROMPT,
        timeout=60,
        max_new_tokens=5,
        do_sample=True,
        temperature=0.7,
    )
    assert result.outcome == "completed" and result.tokens == 5


def test_progress_is_rate_limited(tokenizer):
    reports = []
    result = generate(
        endless(tokenizer),
        tokenizer=tokenizer,
        prompt=PROMPT,
        timeout=1.2,
        max_new_tokens=10**6,
        min_new_tokens=10**6,
        progress=lambda text, tokens, elapsed: reports.append((text, tokens, elapsed)),
        progress_interval=0.25,
    )
    assert result.outcome == "timed_out"
    assert 1 <= len(reports) <= 5
    for text, tokens, elapsed in reports:
        assert len(text) == tokens and 0 < elapsed <= result.elapsed_secs
    times = [r[2] for r in reports]
    assert all(b - a >= 0.25 for a, b in zip(times, times[1:]))


def test_criterion_stops_every_row(tokenizer):
    criterion = DeadlineCriteria(deadline=time.monotonic() - 1)
    ids = torch.zeros((3, 4), dtype=torch.long)
    assert criterion(ids, None).tolist() == [True, True, True]
    assert criterion.reason == "timed_out"
    going = DeadlineCriteria(deadline=time.monotonic() + 60)
    assert going(ids, None).tolist() == [False, False, False]


def test_batch_of_prompts_all_stop(tokenizer):
    ids = tokenizer(["12+3=", "rev 1="], return_tensors="pt", padding=True)["input_ids"]
    result = generate(
        endless(tokenizer), ids, timeout=0.5, max_new_tokens=10**6, min_new_tokens=10**6
    )
    assert result.outcome == "timed_out"
    assert result.sequences.shape[0] == 2


# --------------------------------------------------------------------------
# Synced generation (synced_gpus, as under FSDP / ZeRO-3): 2 ranks, gloo.

SCENARIOS = ("timeout_on_rank1", "abort_on_rank0", "wrapped_timeout_on_rank1", "error_on_both")


@pytest.fixture(scope="module")
def synced(tmp_path_factory) -> dict[int, dict]:
    """Every scenario of dist_generate_worker.py, run once by one torchrun job."""
    from runhelpers import Children

    children = Children()
    try:
        yield _torchrun(tmp_path_factory.mktemp("synced"), children, *SCENARIOS)
    finally:
        children.kill_all()


def _torchrun(tmp_path, children, *scenarios: str) -> dict[int, dict]:
    import json
    import subprocess
    from pathlib import Path

    from runhelpers import free_port, torchrun

    here = Path(__file__).parent
    log = tmp_path / "torchrun.log"
    # Children kills every descendant at teardown: torch elastic starts the
    # ranks in sessions of their own, which killing torchrun's group misses.
    process = children.start(
        torchrun()
        + [
            "--nproc-per-node",
            "2",
            "--master-addr",
            "127.0.0.1",
            "--master-port",
            str(free_port()),
            str(here / "dist_generate_worker.py"),
            str(tmp_path),
            *scenarios,
        ],
        log,
        env={"GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"},
    )
    try:
        code = process.wait(180)
    except subprocess.TimeoutExpired:
        pytest.fail(f"a rank hung:\n{log.read_text()[-3000:]}")
    assert code == 0, log.read_text()[-3000:]
    return {r: json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in (0, 1)}


@pytest.mark.slow
def test_synced_generation_stops_every_rank_after_the_same_step(synced):
    ranks = synced
    # Rank 0's sequence ended at once, so it only kept stepping for rank 1;
    # rank 1's deadline ended the loop for both, no rank left in a collective.
    first = {r: ranks[r]["timeout_on_rank1"] for r in (0, 1)}
    assert first[0]["outcome"] == "completed" and first[0]["tokens"] == 0
    assert first[1]["outcome"] == "timed_out" and first[1]["tokens"] > 0
    assert first[0]["seconds"] < 30 and first[1]["seconds"] < 30
    # The finished rank beats at every forward pass it makes for the others.
    assert first[0]["beats"] >= max(first[1]["tokens"] // 2, 2)
    # Rank 0's abort stops rank 1 too, after the same number of tokens.
    second = {r: ranks[r]["abort_on_rank0"] for r in (0, 1)}
    assert second[0]["outcome"] == second[1]["outcome"] == "aborted"
    assert second[0]["tokens"] == second[1]["tokens"] > 0
    assert second[0]["seconds"] < 30 and second[1]["seconds"] < 30
    assert not second[0]["warnings"] and not second[1]["warnings"]


@pytest.mark.slow
def test_synced_generation_whose_hook_never_runs_keeps_each_ranks_deadline(synced):
    wrapped = {r: synced[r]["wrapped_timeout_on_rank1"] for r in (0, 1)}
    assert wrapped[0]["outcome"] == "completed"
    assert wrapped[1]["outcome"] == "timed_out" and wrapped[1]["tokens"] > 0
    assert wrapped[1]["seconds"] < 30
    for rank in (0, 1):
        assert any("forward hook" in w for w in wrapped[rank]["warnings"]), wrapped[rank]


@pytest.mark.slow
def test_synced_generation_raises_a_failure_instead_of_an_error_outcome(synced):
    for rank in (0, 1):
        failed = synced[rank]["error_on_both"]
        assert failed["outcome"] is None, "raised, not an outcome"
        assert "device-side assert" in failed["raised"]


# --------------------------------------------------------------------------
# evaluate_samples with a real run directory, in-process.


@pytest.mark.slow
def test_evaluate_samples_rotates_examples_reports_and_keeps_the_mode(tmp_path, tokenizer):
    import trainui
    from runhelpers import check_run_dir, events, find, status
    from trainui.generate import evaluate_samples

    examples = [
        {"prompt": f"{i}+1=", "completion": str(i + 1), "origin": f"val.jsonl:{i + 1}"}
        for i in range(5)
    ]
    run = trainui.Run(
        tmp_path / "run",
        max_steps=10,
        handle_signals=False,
        print_lines=False,
        settings={"eval": {"samples": 2, "max_new_tokens": 3, "eval_timeout_seconds": 30}},
    )
    run.start(device="cpu")
    model = tiny_gpt2(tokenizer)
    model.train()
    first = evaluate_samples(run, model, tokenizer, examples, 1)
    assert model.training, "the model is left in train mode, as it was found"
    model.eval()
    evaluate_samples(run, model, tokenizer, examples, 2, val_loss=1.5, val_batches=3)
    evaluate_samples(run, model, tokenizer, examples, 3)
    assert not model.training
    run.finish()

    assert [g.outcome for g in first] == ["completed", "completed"]
    assert all(g.tokens <= 3 for g in first)
    check_run_dir(tmp_path / "run")
    lines = events(tmp_path / "run")
    samples = find(lines, type="sample")
    assert [s["example"] for s in samples] == [0, 1, 2, 3, 4, 0], "the next examples each time"
    assert samples[0]["origin"] == "val.jsonl:1" and samples[0]["golden_tokens"] == 1
    assert all(isinstance(s["loss"], float) and s["loss"] > 0 for s in samples)
    kinds = [line["type"] for line in lines]
    second = kinds.index("eval_started", kinds.index("eval_finished"))
    assert kinds[second + 1] == "val_loss"
    assert find(lines, type="val_loss")[0]["loss"] == 1.5
    assert find(lines, type="eval_finished")[1]["val_loss"] == 1.5
    assert status(tmp_path / "run")["completed"] == 6


def test_evaluate_samples_deadline_from_settings(tmp_path, tokenizer):
    import trainui
    from trainui.generate import evaluate_samples

    run = trainui.Run(
        tmp_path / "run",
        max_steps=10,
        handle_signals=False,
        print_lines=False,
        settings={
            "eval": {
                "samples": 1,
                "max_new_tokens": 10**6,
                "min_new_tokens": 10**6,
                "eval_timeout_seconds": 1,
            }
        },
    )
    run.start(device="cpu")
    [result] = evaluate_samples(
        run, endless(tokenizer), tokenizer, [{"prompt": PROMPT, "completion": "554894"}], 5
    )
    run.finish()
    assert result.outcome == "timed_out" and result.tokens > 0
    text = (tmp_path / "run" / "training_output.log").read_text()
    assert "TIMEOUT: Model generation exceeded 1s at step 5" in text


@pytest.mark.slow
def test_stop_ends_the_evaluation_between_samples(tmp_path, tokenizer):
    import trainui
    from runhelpers import check_run_dir, drop_command, events, find
    from trainui.generate import evaluate_samples

    root = tmp_path / "run"
    run = trainui.Run(
        root,
        max_steps=10,
        handle_signals=False,
        print_lines=False,
        settings={
            "eval": {
                "samples": 3,
                "max_new_tokens": 10**6,
                "min_new_tokens": 10**6,
                "eval_timeout_seconds": 60,
            }
        },
    )
    run.start(device="cpu")
    examples = [{"prompt": PROMPT, "completion": "554894"}] * 3
    timer = threading.Timer(1.0, drop_command, (root, "stop"))
    timer.start()
    started = time.monotonic()
    try:
        results = evaluate_samples(run, endless(tokenizer), tokenizer, examples, 4)
    finally:
        timer.cancel()
    assert time.monotonic() - started < 30, "the stop ended the evaluation"
    # The generation running when the stop came ends as aborted; no other starts.
    assert [g.outcome for g in results] == ["aborted"] and results[0].tokens > 0
    assert run.boundary(4).stop, "the stop is applied at the next boundary"
    run.finish("stopped")

    check_run_dir(root)
    lines = events(root)
    assert len(find(lines, type="generation_started")) == 1
    assert [s["outcome"]["kind"] for s in find(lines, type="sample")] == ["aborted"]
    assert find(lines, type="eval_finished")[0]["samples"] == 1
    assert find(lines, type="finished")[0]["state"] == "stopped"
