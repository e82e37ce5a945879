"""TrainuiTracker in an Accelerate loop on the CPU: logs, evaluation, a stop command."""

from __future__ import annotations

import time

import pytest

accelerate = pytest.importorskip("accelerate")
import torch  # noqa: E402

from runhelpers import check_run_dir, drop_command, events, find, rank_record, status  # noqa: E402
from trainui.accelerate import TrainuiTracker  # noqa: E402


def test_accelerate_loop_logs_and_obeys_a_stop(tmp_path):
    from accelerate import Accelerator

    run_dir = tmp_path / "run"
    tracker = TrainuiTracker(
        run_dir,
        max_steps=10_000,
        settings={"train": {"log_steps": 5}},
        parameters=3,
        print_lines=False,
    )
    accelerator = Accelerator(cpu=True, log_with=tracker)
    accelerator.init_trackers("accel", config={"lr": 0.05, "batch": 8})
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    model, optimizer = accelerator.prepare(model, optimizer)
    x = torch.randn(64, 2)
    y = x @ torch.tensor([[1.0], [-2.0]])

    stop_step = None
    deadline = time.monotonic() + 60
    for step in range(1, 10_001):
        loss = torch.nn.functional.mse_loss(model(x), y)
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        accelerator.log({"loss": loss.detach(), "lr": 0.05, "other": 1}, step=step)
        if step == 10:
            accelerator.log({"eval_loss": 0.5}, step=step)
        if step == 12:
            drop_command(run_dir, "stop")
        actions = tracker.boundary(step)
        if actions.stop:
            stop_step = step
            break
        assert time.monotonic() < deadline, "the stop never arrived"
        time.sleep(0.01)
    accelerator.end_training()

    assert stop_step is not None and stop_step >= 12
    check_run_dir(run_dir)
    lines = events(run_dir)
    started = find(lines, type="started")[0]
    assert started["producer"]["framework"] == "accelerate"
    assert started["device"] == "cpu" and started["parameters"] == 3
    steps = find(lines, type="step")
    assert [e["step"] for e in steps][:2] == [5, 10]
    assert all(e["learning_rate"] == 0.05 for e in steps)
    assert find(lines, type="val_loss")[0]["loss"] == 0.5
    assert find(lines, type="eval_finished")[0]["step"] == 10
    ack = [e for e in rank_record(run_dir, 0) if e["type"] == "command_ack"]
    assert ack[0]["command"] == "stop" and ack[0]["step"] == stop_step
    assert find(lines, type="finished")[-1]["state"] == "stopped"
    current = status(run_dir)
    assert current["state"] == "stopped" and current["current_step"] == stop_step
    assert (run_dir / "config.json").read_text().count('"batch"') == 1


def test_a_stop_after_the_last_boundary_leaves_the_run_finished(tmp_path):
    import os
    import signal

    from accelerate import Accelerator

    run_dir = tmp_path / "run"
    tracker = TrainuiTracker(
        run_dir, max_steps=3, settings={"train": {"log_steps": 1}}, print_lines=False
    )
    accelerator = Accelerator(cpu=True, log_with=tracker)
    accelerator.init_trackers("accel", config={})
    for step in range(1, 4):
        accelerator.log({"loss": 1.0 / step, "lr": 0.1}, step=step)
        assert not tracker.boundary(step).stop
    # The job is done; an operator's Ctrl-C or a scheduler's SIGTERM now
    # comes too late to stop anything.
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.6)  # the run's beat thread handles the signal within a quarter second
    accelerator.end_training()

    check_run_dir(run_dir)
    lines = events(run_dir)
    assert find(lines, type="finished")[-1]["state"] == "finished"
    assert status(run_dir)["state"] == "finished"
