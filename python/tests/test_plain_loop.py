"""trainui.Run as a plain loop that is not a language model uses it: one
call for a validation loss, no checkpoint cadence unless configured, a save
or evaluation asked for while paused, and an ETA that is steady."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import trainui
import trainui.eta
from runhelpers import check_run_dir, drop_command, events, find, status, wait_for


def _run(root: Path, **extra) -> trainui.Run:
    return trainui.Run(root, handle_signals=False, print_lines=False, **extra)


def _ack(root: Path, command, after: int = 0, timeout: float = 15):
    return wait_for(
        lambda: find(events(root), type="command_ack", command=command)[after:],
        timeout,
        f"the acknowledgement of {command}",
    )[0]


def test_one_call_logs_a_validation_loss_as_an_evaluation_does(tmp_path):
    root = tmp_path / "run"
    with _run(root, max_steps=4, settings={"train": {"log_steps": 2}}) as run:
        run.start()
        for step in range(1, 5):
            run.log_step(step, 2.0, 1e-3)
            run.boundary(step)
            if step % 2 == 0:
                run.log_val_loss(step, 1.5 + step / 10, batches=3)
    lines = events(root)
    assert [
        e["type"] for e in lines if e["type"].startswith("eval") or e["type"] == "val_loss"
    ] == [
        "eval_started",
        "val_loss",
        "eval_finished",
    ] * 2
    val = find(lines, type="val_loss")[-1]
    assert (val["step"], val["loss"], val["batches"], val["timed_out"]) == (4, 1.9, 3, False)
    summary = find(lines, type="eval_finished")[-1]
    assert (summary["eval"], summary["val_loss"], summary["train_loss"]) == (2, 1.9, 2.0)
    assert summary["gap"] == pytest.approx(-0.1)
    assert find(lines, type="eval_started")[-1]["samples"] == 0
    # Back to training after each, as after a full evaluation.
    states = [e["state"] for e in find(lines, type="state")]
    assert states[-3:] == ["evaluating", "training", "finished"] or states[-2:] == [
        "evaluating",
        "training",
    ]
    current = status(root)
    assert (current["val_loss"], current["evals"], current["state"]) == (1.9, 2, "finished")
    log = (root / "training_output.log").read_text()
    assert "Loss Comparison: Train=2.0000 | Val=1.9000 | Gap=-0.1000" in log
    check_run_dir(root)


def test_inside_an_evaluation_it_only_records_the_loss(tmp_path):
    root = tmp_path / "run"
    with _run(root, max_steps=2) as run:
        run.start()
        run.log_step(1, 2.0, 1e-3)
        run.eval_started(1, 0)
        run.log_val_loss(1, 1.25)
        run.eval_finished(1)
    lines = events(root)
    assert len(find(lines, type="eval_started")) == 1
    assert find(lines, type="eval_finished")[0]["val_loss"] == 1.25


def test_the_package_asks_for_no_checkpoint_unless_the_job_sets_a_cadence(tmp_path):
    with _run(tmp_path / "plain", max_steps=1200) as run:
        run.start()
        saves = []
        for step in range(1, 1201):
            run.log_step(step, 1.0, 1e-3)
            if run.boundary(step).save:
                saves.append(step)
        assert saves == [], "no save the job did not ask for"
        assert run.settings["checkpoint"]["save_steps"] == 0
    started = find(events(tmp_path / "plain"), type="started")[0]
    assert started["settings"]["checkpoint"]["save_steps"] == 0

    with _run(tmp_path / "every5", max_steps=12, settings={"checkpoint": {"save_steps": 5}}) as run:
        run.start()
        saves = []
        for step in range(1, 13):
            run.log_step(step, 1.0, 1e-3)
            if run.boundary(step).save:
                saves.append(step)
        assert saves == [5, 10], "the cadence the job configured"


class PausableLoop:
    """A loop on a thread of its own that saves and evaluates as told,
    optionally while paused (`act_while_paused`)."""

    def __init__(self, run: trainui.Run, root: Path, act_while_paused=()):
        self.run, self.root, self.act = run, root, act_while_paused
        self.step = 0
        self.error = None
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        run = self.run
        try:
            while not self.halt.is_set():
                time.sleep(0.02)
                self.step += 1
                run.log_step(self.step, 1.0, 1e-3)
                # (A plain boundary() when the loop does not act while paused.)
                hold = {"act_while_paused": self.act} if self.act else {}
                actions = run.boundary(self.step, **hold)
                while True:
                    if actions.eval:
                        run.log_val_loss(self.step, 0.5)
                    if actions.save:
                        run.checkpoint(self.step, self.root / f"checkpoint-{self.step}")
                    if actions.stop or not actions.paused:
                        break
                    actions = run.boundary(self.step, **hold)
                if actions.stop:
                    break
        except BaseException as err:  # noqa: BLE001 - end() raises it in the test
            self.error = err

    def end(self):
        self.halt.set()
        if not self.run.finished:
            self.run.finish("stopped")
        self.thread.join(15)
        assert not self.thread.is_alive()
        if self.error:
            raise self.error


@pytest.fixture
def pausable():
    started = []

    def start(*args, **kwargs):
        loop = PausableLoop(*args, **kwargs)
        started.append(loop)
        return loop

    yield start
    for loop in started:
        if loop.thread.is_alive():
            loop.end()


def _pause(root: Path):
    drop_command(root, "pause")
    paused = _ack(root, "pause")
    wait_for(lambda: status(root)["state"] == "paused", 10, "the paused state")
    return paused["step"]


def test_a_save_asked_while_paused_says_it_waits_for_the_resume_and_does(tmp_path, pausable):
    root = tmp_path / "run"
    run = _run(root, max_steps=10**6, settings={"eval": {"eval_steps": 0}})
    run.start()
    loop = pausable(run, root)
    step = _pause(root)
    drop_command(root, "save")
    saved = _ack(root, "save")
    assert saved["message"] == f"saving a checkpoint when the run resumes (paused at step {step})"
    time.sleep(1.0)
    assert not find(events(root), type="checkpoint"), "the loop is held in boundary()"
    drop_command(root, "resume")
    _ack(root, "resume")
    checkpoint = wait_for(lambda: find(events(root), type="checkpoint"), 10, "the checkpoint")[0]
    assert checkpoint["step"] == step, "at the step it was paused at, once resumed"
    loop.end()


def test_a_loop_that_acts_while_paused_saves_and_evaluates_at_once_and_stays_paused(
    tmp_path, pausable
):
    root = tmp_path / "run"
    run = _run(root, max_steps=10**6, settings={"eval": {"eval_steps": 0}})
    run.start()
    loop = pausable(run, root, act_while_paused=("save", "eval"))
    step = _pause(root)
    drop_command(root, "save")
    assert _ack(root, "save")["message"] == f"saving a checkpoint at step {step}"
    checkpoint = wait_for(lambda: find(events(root), type="checkpoint"), 10, "the checkpoint")[0]
    assert checkpoint["step"] == step
    drop_command(root, "eval_now")
    assert _ack(root, "eval_now")["message"] == f"evaluating at step {step}"
    wait_for(lambda: find(events(root), type="eval_finished"), 10, "the evaluation")
    time.sleep(1.0)
    assert loop.step == step, "still paused after them"
    assert status(root)["state"] == "paused"
    drop_command(root, "save")
    assert _ack(root, "save", after=1)["message"] == f"saving a checkpoint at step {step}"
    wait_for(lambda: len(find(events(root), type="checkpoint")) == 2, 10, "the second checkpoint")
    drop_command(root, "resume")
    _ack(root, "resume")
    wait_for(lambda: loop.step > step + 3, 10, "steps after the resume")
    drop_command(root, "stop")
    _ack(root, "stop")
    loop.thread.join(10)
    assert find(events(root), type="command_ack", command="stop")[0]["step"] > step
    loop.end()


def test_the_eta_is_steady_through_pauses_and_evaluations_and_waits_for_enough_training(
    tmp_path, monkeypatch
):
    # Shorter spans than a real run's, so that the test takes seconds.
    monkeypatch.setattr(trainui.eta, "MIN_SECS", 0.3)
    monkeypatch.setattr(trainui.eta, "SPAN_SECS", 1.0)
    root = tmp_path / "run"
    max_steps = 120
    run = _run(root, max_steps=max_steps, settings={"train": {"log_steps": 4}})
    run.start()
    resumer = None
    for step in range(1, max_steps + 1):
        time.sleep(0.01)
        run.log_step(step, 1.0, 1e-3)
        if step == 60:
            # A pause of a second in the middle of a logging window.
            drop_command(root, "pause")
            resumer = threading.Timer(1.0, drop_command, (root, "resume"))
            resumer.start()
            wait_for(lambda: run._commands, 5, "the pause in the queue")
        run.boundary(step)
        if step == 30:
            run.eval_started(step, 0)
            time.sleep(1.0)  # an evaluation as long as 100 steps
            run.eval_finished(step, val_loss=1.0)
        if step == 90:
            time.sleep(1.0)  # the loop's own validation pass, then one call
            run.log_val_loss(step, 1.0)
    run.finish()
    resumer.join()
    steps = find(events(root), type="step")
    assert find(events(root), type="command_ack", command="resume"), "the pause happened"
    assert steps[0]["eta_secs"] == 0.0, "no estimate from the first window"
    per_step = [e["eta_secs"] / (max_steps - e["step"]) for e in steps if e["step"] < max_steps]
    given = [rate for rate in per_step if rate > 0]
    assert len(given) >= len(per_step) // 2, per_step
    # Steps of about 10 ms: pauses and evaluations of a second would make a
    # window's rate a hundred times slower if they counted.
    assert max(given) < 4 * min(given), per_step
    assert max(given) < 0.05, per_step
    lines = (root / "training_output.log").read_text().splitlines()
    first = next(line for line in lines if line.startswith("step 4/"))
    assert "eta" not in first, first
    assert any(" | eta " in line for line in lines if line.startswith("step "))
