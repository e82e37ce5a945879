"""TrainuiCallback on a real transformers.Trainer job (examples/hf_trainer.py), read back
from the run directory: events, status counters, log lines, per-rank records."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from runhelpers import (
    REPO,
    acked,
    check_run_dir,
    command_acked,
    drop_command,
    events,
    find,
    free_port,
    rank_record,
    status,
    torchrun,
    wait_exit,
    wait_for,
)

HF_EXAMPLE = REPO / "examples" / "hf_trainer.py"
INCIDENT = REPO / "examples" / "incident" / "train.py"
ENV = {"OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "TOKENIZERS_PARALLELISM": "false"}


def _types(lines):
    return [line["type"] for line in lines]


@pytest.mark.slow
def test_fine_tune_that_never_stops_generating_times_out_and_trains_on(tmp_path, children):
    run = tmp_path / "run"
    log = tmp_path / "job.log"
    process = children.start(
        [
            sys.executable,
            str(HF_EXAMPLE),
            "--run-dir",
            str(run),
            "--max-steps",
            "30",
            "--eval-steps",
            "15",
            "--save-steps",
            "15",
            "--logging-steps",
            "5",
            "--eval-timeout",
            "1",
            "--samples",
            "2",
            "--fault",
            "never_eos",
        ],
        log,
        env=ENV,
    )
    assert wait_exit(process, log) == 0, log.read_text()[-4000:]
    check_run_dir(run)

    lines = events(run)
    kinds = _types(lines)
    for kind in (
        "started",
        "step",
        "eval_started",
        "val_loss",
        "sample",
        "eval_finished",
        "checkpoint",
        "finished",
    ):
        assert kind in kinds, f"no {kind} event in {sorted(set(kinds))}"
    started = find(lines, type="started")[0]
    assert started["producer"]["framework"] == "transformers"
    assert started["max_steps"] == 30 and started["parameters"] > 0
    assert started["settings"]["train"]["log_steps"] == 5
    assert started["settings"]["eval"]["eval_steps"] == 15
    assert [e["step"] for e in find(lines, type="step")] == [5, 10, 15, 20, 25, 30]
    # The Trainer's gradient norm, as the callback reads it from its logs.
    norms = [e.get("grad_norm") for e in find(lines, type="step")]
    assert all(isinstance(n, float) and n > 0 for n in norms), norms
    assert status(run)["grad_norm"] == norms[-1]
    _check_eta(lines)
    assert [e["step"] for e in find(lines, type="checkpoint")] == [15, 30]
    assert find(lines, type="checkpoint")[-1]["path"] == str(run / "checkpoints" / "checkpoint-30")
    assert (run / "checkpoints" / "checkpoint-30" / "model.safetensors").is_file()
    # val_loss comes inside its evaluation, after eval_started.
    assert kinds.index("eval_started") < kinds.index("val_loss") < kinds.index("sample")

    samples = find(lines, type="sample")
    assert len(samples) == 4, "2 samples at each of steps 15 and 30"
    assert [s["example"] for s in samples] == [0, 1, 2, 3], "each evaluation takes the next ones"
    for sample in samples:
        assert sample["outcome"] == {"kind": "timed_out"}
        assert sample["output_tokens"] > 0 and len(sample["output"]) == sample["output_tokens"]
        assert 1.0 <= sample["elapsed_secs"] < 20
        assert isinstance(sample["loss"], float)
    finished = find(lines, type="finished")[-1]
    assert finished["state"] == "finished" and finished["step"] == 30

    current = status(run)
    assert current["state"] == "finished" and current["current_step"] == 30
    assert current["timeouts"] == 4 and current["generations"] == 4 and current["evals"] == 2
    assert current["last_checkpoint"] == str(run / "checkpoints" / "checkpoint-30")
    text = (run / "training_output.log").read_text()
    timeouts = [
        line for line in text.splitlines() if line.startswith("TIMEOUT: Model generation exceeded")
    ]
    assert len(timeouts) == 4, text[-3000:]
    assert "at step 15" in timeouts[0] and "at step 30" in timeouts[-1]
    assert "tokens so far" in timeouts[0], "the partial output is counted"
    record = rank_record(run, 0)
    assert [e["type"] for e in record].count("sample") == 4


def _check_eta(lines) -> None:
    """No ETA before trainui.eta.MIN_SECS of training (the events' elapsed
    time bounds it): `eta_secs` 0 with steps left; an ETA given counts the
    steps left at the pace of training (never at that of a window with an
    evaluation or a checkpoint in it)."""
    from trainui.eta import MIN_SECS

    steps = find(lines, type="step")
    assert steps, "step events to check the ETA of"
    for line in steps:
        left = line["max_steps"] - line["step"]
        if left == 0 or line["elapsed_secs"] < MIN_SECS:
            assert line["eta_secs"] == 0.0, line
        elif line["eta_secs"] > 0:
            assert line["eta_secs"] / left <= 2 * line["elapsed_secs"] / line["step"], line


@pytest.mark.slow
def test_commands_eval_save_set_and_stop(tmp_path, children):
    run = tmp_path / "run"
    log = tmp_path / "job.log"
    process = children.start(
        [
            sys.executable,
            str(HF_EXAMPLE),
            "--run-dir",
            str(run),
            "--max-steps",
            "100000",
            "--eval-steps",
            "0",
            "--save-steps",
            "0",
            "--logging-steps",
            "5",
            "--samples",
            "2",
            "--eval-timeout",
            "30",
        ],
        log,
        env=ENV,
    )
    wait_for(lambda: find(events(run), type="step"), 120, "the first step event")

    eval_ack = command_acked(run, "eval_now")[0]
    wait_for(lambda: find(events(run), type="eval_finished"), 60, "the evaluation")
    lines = events(run)
    evaluation = find(lines, type="eval_finished")[0]
    assert evaluation["step"] == eval_ack["step"]
    assert evaluation["samples"] == 2 and isinstance(evaluation["val_loss"], float)
    assert [s["outcome"]["kind"] for s in find(lines, type="sample")] == ["completed"] * 2

    save_ack = command_acked(run, "save")[0]
    checkpoint = wait_for(lambda: find(events(run), type="checkpoint"), 60, "the checkpoint")[0]
    assert checkpoint["step"] == save_ack["step"]
    assert Path(checkpoint["path"], "model.safetensors").is_file()

    change = {"set": {"train.learning_rate": 0.0005, "eval.samples": 1, "train.log_steps": 7}}
    set_ack = command_acked(run, change)[0]
    assert "train.learning_rate" in set_ack["message"]
    after = wait_for(
        lambda: [e for e in find(events(run), type="step") if e["step"] > set_ack["step"] + 7],
        60,
        "steps after the set",
    )
    assert all(e["step"] % 7 == 0 for e in after), "train.log_steps = 7 is what the Trainer logs by"
    assert after[-1]["learning_rate"] <= 0.0005 + 1e-12

    stop_ack = command_acked(run, "stop")[0]
    assert wait_exit(process, log) == 0, log.read_text()[-3000:]
    check_run_dir(run)
    lines = events(run)
    finished = find(lines, type="finished")[-1]
    assert finished["state"] == "stopped" and finished["step"] == stop_ack["step"]
    last = find(lines, type="checkpoint")[-1]
    assert last["step"] == stop_ack["step"], "a stop writes a final checkpoint"
    assert Path(last["path"], "model.safetensors").is_file()
    current = status(run)
    assert current["state"] == "stopped"
    assert current["last_checkpoint"] == last["path"]
    assert current["settings"]["train"]["learning_rate"] == 0.0005


@pytest.mark.slow
def test_torchrun_two_ranks_apply_commands_at_the_same_step(tmp_path, children):
    run = tmp_path / "run"
    log = tmp_path / "job.log"
    process = children.start(
        torchrun()
        + [
            "--nproc-per-node",
            "2",
            "--master-addr",
            "127.0.0.1",
            "--master-port",
            str(free_port()),
            str(HF_EXAMPLE),
            "--run-dir",
            str(run),
            "--max-steps",
            "100000",
            "--eval-steps",
            "0",
            "--save-steps",
            "0",
            "--logging-steps",
            "5",
            "--samples",
            "1",
            "--eval-timeout",
            "2",
            "--fault",
            "never_eos_on_rank:1",
        ],
        log,
        env=ENV,
    )
    wait_for(lambda: find(events(run), type="step"), 150, "the first step event")
    both = (0, 1)

    evals = command_acked(run, "eval_now", ranks=both)
    assert evals[0]["step"] == evals[1]["step"]
    # Rank 1's model cannot stop: its generation ends at the deadline, rank 0's
    # completes; neither rank hangs, and training goes on.
    sample1 = wait_for(lambda: find(rank_record(run, 1), type="sample"), 60, "rank 1's sample")[0]
    sample0 = wait_for(lambda: find(rank_record(run, 0), type="sample"), 60, "rank 0's sample")[0]
    assert sample1["outcome"] == {"kind": "timed_out"} and sample1["output_tokens"] > 0
    assert sample0["outcome"] == {"kind": "completed"}
    assert sample0["step"] == sample1["step"] == evals[0]["step"]

    saves = command_acked(run, "save", ranks=both)
    assert saves[0]["step"] == saves[1]["step"] > evals[0]["step"]
    change = {"set": {"eval.eval_timeout_seconds": 3}}
    sets = command_acked(run, change, ranks=both)
    assert sets[0]["step"] == sets[1]["step"]
    wait_for(
        lambda: [e for e in find(events(run), type="step") if e["step"] > sets[0]["step"]],
        60,
        "a step after the set",
    )
    stops = command_acked(run, "stop", ranks=both)
    assert stops[0]["step"] == stops[1]["step"]
    assert wait_exit(process, log) == 0, log.read_text()[-4000:]

    check_run_dir(run, ranks=2)
    for rank in both:
        record = rank_record(run, rank)
        assert find(record, type="finished")[-1]["state"] == "stopped"
        assert find(record, type="finished")[-1]["step"] == stops[0]["step"]
    lines = events(run)
    checkpoints = [e["step"] for e in find(lines, type="checkpoint")]
    assert saves[0]["step"] in checkpoints and checkpoints[-1] == stops[0]["step"]
    assert status(run)["state"] == "stopped"
    assert status(run)["settings"]["eval"]["eval_timeout_seconds"] == 3


@pytest.mark.slow
def test_incident_script_with_the_callback(tmp_path, children):
    run = tmp_path / "run"
    log = tmp_path / "job.log"
    process = children.start(
        [
            sys.executable,
            str(INCIDENT),
            "--run-dir",
            str(run),
            "--max-steps",
            "20",
            "--eval-steps",
            "10",
            "--eval-timeout",
            "1",
            "--pathological",
        ],
        log,
        env=ENV,
    )
    assert wait_exit(process, log) == 0, log.read_text()[-4000:]
    check_run_dir(run)
    current = status(run)
    assert current["state"] == "finished" and current["current_step"] == 20
    assert current["timeouts"] > 0 and current["completed"] > 0
    text = (run / "training_output.log").read_text()
    assert any(line.startswith("TIMEOUT: Model generation exceeded") for line in text.splitlines())
    assert os.path.isdir(run / "checkpoints" / "checkpoint-20")


def test_set_learning_rate_moves_the_schedule_to_the_new_height():
    import torch
    from transformers import get_linear_schedule_with_warmup

    from trainui.hf import set_learning_rate

    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=0.01)
    scheduler = get_linear_schedule_with_warmup(
        optimizer, num_warmup_steps=10, num_training_steps=100
    )
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.005)
    set_learning_rate(optimizer, scheduler, 0.002)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.001), "halfway up the warmup"
    assert scheduler.base_lrs == [0.002]
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.002), (
        "the warmup's top is the new rate"
    )


@pytest.mark.slow
def test_save_and_eval_while_paused_act_at_once_and_the_pause_holds(tmp_path, children):
    run = tmp_path / "run"
    log = tmp_path / "job.log"
    process = children.start(
        [
            sys.executable,
            str(HF_EXAMPLE),
            "--run-dir",
            str(run),
            "--max-steps",
            "100000",
            "--eval-steps",
            "0",
            "--save-steps",
            "0",
            "--logging-steps",
            "5",
            "--samples",
            "1",
        ],
        log,
        env=ENV,
    )
    wait_for(lambda: find(events(run), type="step"), 120, "the first step event")
    paused = command_acked(run, "pause")[0]
    step = paused["step"]
    wait_for(lambda: status(run)["state"] == "paused", 30, "the paused state")

    saved = command_acked(run, "save")[0]
    assert saved["message"] == f"saving a checkpoint at step {step}"
    checkpoint = wait_for(lambda: find(events(run), type="checkpoint"), 60, "the checkpoint")[0]
    assert checkpoint["step"] == step, "written while paused, at the paused step"
    assert Path(checkpoint["path"], "model.safetensors").is_file()

    evaluated = command_acked(run, "eval_now")[0]
    assert evaluated["message"] == f"evaluating at step {step}"
    summary = wait_for(lambda: find(events(run), type="eval_finished"), 60, "the evaluation")[0]
    assert summary["step"] == step and isinstance(summary["val_loss"], float)

    # A second save right after the first: the state is the one just saved.
    drop_command(run, "save")
    again = wait_for(lambda: acked(run, "save")[1:], 60, "the second save")[0]
    assert again["message"] == f"saving a checkpoint at step {step}"
    wait_for(lambda: len(find(events(run), type="checkpoint")) == 2, 60, "its checkpoint event")

    time.sleep(2.0)
    current = status(run)
    assert current["state"] == "paused" and current["current_step"] == step, current
    assert max(e["step"] for e in find(events(run), type="step")) <= step, "nothing trained"

    command_acked(run, "resume")
    wait_for(lambda: [e for e in find(events(run), type="step") if e["step"] > step], 60, "steps")
    command_acked(run, "stop")
    assert wait_exit(process, log) == 0, log.read_text()[-3000:]
    check_run_dir(run)
