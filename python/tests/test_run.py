"""trainui.Run in one process: the files it writes, the run directories it
refuses, the control spool and its commands, the stall watchdog."""

from __future__ import annotations

import fcntl
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import trainui
from runhelpers import (
    check_run_dir,
    drop_command,
    events,
    find,
    rank_file,
    rank_record,
    status,
    wait_for,
)
from trainui import control, protocol


def make_run(root: Path, **extra) -> trainui.Run:
    options = dict(
        max_steps=10**6,
        handle_signals=False,
        print_lines=False,
        settings={"train": {"log_steps": 2}, "eval": {"eval_steps": 0}},
    )
    options.update(extra)
    return trainui.Run(root, **options)


class Loop:
    """A training loop on a thread of its own: a step every `step_secs`,
    a boundary after each, evaluating, saving and stopping as told. Made by
    the `loops` fixture, which ends it whatever the test did."""

    def __init__(self, run: trainui.Run, root: Path, step_secs: float = 0.02):
        self.run = run
        self.root = root
        self.step_secs = step_secs
        self.actions = []
        self.error = None
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        run = self.run
        try:
            step = 0
            while step < run.max_steps and not self.halt.is_set():
                time.sleep(self.step_secs)
                step += 1
                run.log_step(step, 2.0 / step, 1e-3, tokens=64)
                actions = run.boundary(step)
                self.actions.append((step, actions))
                if actions.eval:
                    run.eval_started(step, 1)
                    run.val_loss(step, 1.5, 1)
                    run.generation_started(
                        step=step,
                        sample=1,
                        of=1,
                        example=0,
                        origin="val.jsonl:1",
                        prompt="1+1=",
                        golden="2",
                        golden_tokens=1,
                        timeout_secs=60.0,
                    )
                    run.sample(
                        step=step,
                        sample=1,
                        of=1,
                        example=0,
                        origin="val.jsonl:1",
                        prompt="1+1=",
                        golden="2",
                        output="2",
                        golden_tokens=1,
                        output_tokens=1,
                        outcome="completed",
                        loss=0.1,
                        elapsed_secs=0.01,
                        timeout_secs=60.0,
                    )
                    run.eval_finished(step)
                if actions.save:
                    run.checkpoint(step, self.root / "checkpoints" / f"checkpoint-{step}")
                if actions.stop:
                    run.finish("stopped")
                    return
            run.finish()
        except BaseException as err:  # noqa: BLE001 - join() raises it in the test
            self.error = err

    def join(self, timeout=30):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the loop did not end"
        if self.error:
            raise self.error

    def latest_step(self):
        return self.actions[-1][0] if self.actions else 0

    def end(self):
        """Stops the loop and finishes its run (the fixture's teardown)."""
        self.halt.set()
        if not self.run.finished:
            self.run.finish("stopped")  # also ends a boundary held by a pause
        self.thread.join(15)


@pytest.fixture
def loops():
    """Starts Loops; every one is stopped and its run finished at teardown,
    also when the test failed half-way."""
    started = []

    def start(run, root, **options):
        loop = Loop(run, root, **options)
        started.append(loop)
        return loop

    yield start
    for loop in started:
        loop.end()


def answer(root: Path, request_id: str, timeout: float = 15):
    return wait_for(
        lambda: find(events(root), type="control", id=request_id),
        timeout,
        f"the answer to {request_id}",
    )[0]


def ack(root: Path, command, timeout: float = 15, after: int = 0):
    """The acknowledgement of `command` after the first `after` ones."""
    return wait_for(
        lambda: find(events(root), type="command_ack", command=command)[after:],
        timeout,
        f"the acknowledgement of {command}",
    )[0]


def send(root: Path, command):
    """Drops a command file and waits for the trainer's acknowledgement."""
    earlier = len(find(events(root), type="command_ack", command=command))
    drop_command(root, command)
    return ack(root, command, after=earlier)


def test_a_run_writes_the_run_directory_of_the_rust_trainer(tmp_path):
    root = tmp_path / "run"
    with make_run(
        root,
        config={"lr": 0.1},
        run_name="demo",
        max_steps=10,
        settings={
            "train": {"log_steps": 3},
            "eval": {"eval_steps": 4},
            "checkpoint": {"save_steps": 5},
        },
    ) as run:
        run.start(device="cpu", parameters=1234, vocab_size=41, train_examples=100, val_examples=10)
        for step in range(1, 11):
            run.log_step(step, float("nan") if step == 9 else 1.0, 1e-3, tokens=10)
            actions = run.boundary(step)
            assert actions.eval == (step % 4 == 0) and actions.save == (step % 5 == 0)
            if actions.eval:
                run.eval_started(step, 2)
                run.val_loss(step, 0.9, 1)
                for sample, outcome in enumerate(["completed", ("error", "boom")], 1):
                    run.generation_started(
                        step=step,
                        sample=sample,
                        of=2,
                        example=sample,
                        origin=f"val.jsonl:{sample}",
                        prompt="p",
                        golden="85",
                        golden_tokens=2,
                        timeout_secs=60,
                    )
                    run.generation_progress(
                        step=step, sample=sample, text="8", tokens=1, elapsed_secs=0.0
                    )
                    run.sample(
                        step=step,
                        sample=sample,
                        of=2,
                        example=sample,
                        origin=f"val.jsonl:{sample}",
                        prompt="p",
                        golden="85",
                        output=" 85 ",
                        golden_tokens=2,
                        output_tokens=2,
                        outcome=outcome,
                        loss=None,
                        elapsed_secs=0.5,
                        timeout_secs=60,
                    )
                run.eval_finished(step)
            if actions.save:
                run.checkpoint(step, root / "checkpoints" / f"checkpoint-{step}")
    check_run_dir(root)
    lines = events(root)
    kinds = [line["type"] for line in lines]
    assert kinds[:2] == ["started", "state"]
    assert kinds[-1] == "finished"
    started = lines[0]
    assert started["producer"] == {
        "name": "trainui-python",
        "version": "0.1.0",
        "framework": "pytorch",
        "world_size": 1,
    }
    assert started["settings"]["eval"]["eval_steps"] == 4
    assert [line["step"] for line in find(lines, type="step")] == [3, 6, 9, 10]
    assert find(lines, type="step", step=9)[0]["loss"] == "NaN", "a NaN loss is text"
    # 10 tokens a step, counted from the start: the tokens axis of plots.
    assert [line["tokens_seen"] for line in find(lines, type="step")] == [30, 60, 90, 100]
    samples = find(lines, type="sample")
    assert [s["exact_match"] for s in samples] == [True, False] * 2
    assert samples[1]["outcome"] == {"kind": "error", "message": "boom"}
    assert samples[-1]["counters"] == {
        "generations": 4,
        "completed": 2,
        "timed_out": 0,
        "aborted": 0,
        "errors": 2,
    }
    finished = find(lines, type="eval_finished")
    assert [(f["matches"], f["samples"], f["exact_match"]) for f in finished] == [(1, 2, 0.5)] * 2
    current = status(root)
    assert (current["state"], current["current_step"], current["run_name"]) == (
        "finished",
        10,
        "demo",
    )
    assert current["evals"] == 2 and current["errors"] == 2 and current["exact_match"] == 0.5
    assert current["last_checkpoint"].endswith("checkpoint-10")
    assert current["producer"]["framework"] == "pytorch"
    assert current["eta_secs"] == 0.0 and current["pid"] == os.getpid()
    log = (root / "training_output.log").read_text()
    assert (
        "run demo | device cpu | 1,234 parameters | vocab 41 | 100 train / 10 val examples" in log
    )
    assert "\nMATCH\n" in log and "ERROR: generation failed at step 4" in log
    assert "finished at step 10/10" in log
    assert (root / "config.json").read_text().strip() == '{\n  "lr": 0.1\n}'
    assert (root / "lock").read_text().strip() == str(os.getpid())
    assert oct((root / "control").stat().st_mode & 0o777) == "0o700"
    record = rank_record(root, 0)
    assert {"started", "sample", "finished"} <= {line["type"] for line in record}
    assert rank_file(root, 0)["phase"] == "done" and rank_file(root, 0)["state"] == "finished"


def test_the_lock_is_held_while_the_process_lives(tmp_path):
    root = tmp_path / "run"
    run = make_run(root)
    run.start()
    probe = os.open(root / "lock", os.O_RDONLY)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)
    finally:
        os.close(probe)
    run.finish()


@pytest.mark.parametrize("holds", ["events.jsonl", "checkpoints"])
def test_a_directory_that_holds_a_run_is_refused_untouched(tmp_path, holds):
    root = tmp_path / "old"
    root.mkdir()
    if holds == "checkpoints":
        (root / "checkpoints" / "checkpoint-5").mkdir(parents=True)
    else:
        (root / "events.jsonl").write_text('{"v":2,"type":"state"}\n')
    (root / "training_output.log").write_text("old lines\n")

    def snapshot():
        return sorted(
            (str(p.relative_to(root)), p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else b"")
            for p in root.rglob("*")
        )

    before = snapshot()
    with pytest.raises(trainui.RunDirError) as refused:
        make_run(root)
    message = str(refused.value)
    assert str(root) in message and "already holds a run" in message
    assert "pick another run directory" in message
    assert snapshot() == before, "nothing in a refused directory is touched"


def test_a_directory_of_trainui_run_or_nothing_is_fine(tmp_path):
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "job_output.log").write_text("launcher\n")
    for root in (tmp_path / "job", tmp_path / "missing" / "deeper"):
        run = make_run(root)
        run.start()
        run.finish()
        assert status(root)["state"] == "finished"


def test_no_run_directory_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("TRAINUI_RUN_DIR", raising=False)
    with pytest.raises(trainui.RunDirError, match="TRAINUI_RUN_DIR"):
        trainui.Run(max_steps=1)
    monkeypatch.setenv("TRAINUI_RUN_DIR", str(tmp_path / "env"))
    run = trainui.Run(max_steps=1, handle_signals=False, print_lines=False)
    run.fail("stopped early")
    assert status(tmp_path / "env")["state"] == "failed"


def test_a_control_folder_open_to_others_is_refused(tmp_path):
    root = tmp_path / "run"
    (root / "control").mkdir(parents=True)
    (root / "control").chmod(0o777)
    with pytest.raises(trainui.RunDirError, match="other users can use it"):
        make_run(root)


def test_an_exception_in_the_block_fails_the_run(tmp_path):
    root = tmp_path / "run"
    with pytest.raises(RuntimeError):  # noqa: PT012 - what raises is the whole with block
        with make_run(root) as run:
            run.start()
            run.log_step(1, 1.0, 1e-3)
            raise RuntimeError("CUDA out of memory")
    lines = events(root)
    failed = lines[-1]
    assert failed["type"] == "failed" and failed["message"] == "RuntimeError: CUDA out of memory"
    assert status(root)["state"] == "failed"
    log = (root / "training_output.log").read_text()
    assert "FAILED at step 1: RuntimeError: CUDA out of memory" in log
    check_run_dir(root)


@pytest.mark.slow
def test_bad_control_files_are_rejected_and_the_run_goes_on(tmp_path, loops):
    root = tmp_path / "run"
    run = make_run(root)
    run.start()
    loop = loops(run, root)
    spool = root / "control"
    (spool / "junk.json").write_text("not json at all")
    rejected = answer(root, "junk.json")
    assert not rejected["accepted"] and rejected["message"].startswith("not a command")
    drop_command(root, "stop", version=9, name="future")
    # A file that cannot be read as a request is answered under its file name.
    assert answer(root, "future.json")["message"] == "unknown request version 9"
    stale = drop_command(root, "stop", created_unix=time.time() - 120, name="stale")
    message = answer(root, stale)["message"]
    assert message.startswith("stale: written 12") and message.endswith("s ago; send it again")
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(f'{{"v":2,"id":"x","created_unix":{time.time():f},"command":"stop"}}')
    (spool / "link.json").symlink_to(elsewhere)
    linked = answer(root, "link.json")
    assert linked["message"] == "refused: a symbolic link; left in place"
    (spool / "notes.txt").write_text("hello")
    assert (
        answer(root, "notes.txt")["message"]
        == "refused: not a command file (NAME.json); left in place"
    )
    time.sleep(0.6)
    assert len(find(events(root), type="control", id="notes.txt")) == 1, "reported once"
    assert not (spool / "junk.json").exists() and not (spool / "future.json").exists()
    assert (spool / "link.json").is_symlink() and (spool / "notes.txt").exists()
    step = loop.latest_step()
    wait_for(lambda: loop.latest_step() > step + 5, 15, "steps after the bad files")
    assert not find(events(root), type="command_ack"), "no bad file was obeyed"
    stop = drop_command(root, "stop")
    assert answer(root, stop)["accepted"]
    loop.join()
    assert status(root)["state"] == "stopped"
    check_run_dir(root)


@pytest.mark.slow
def test_commands_are_applied_at_a_step_boundary(tmp_path, loops):
    root = tmp_path / "run"
    run = make_run(root)
    run.start()
    loop = loops(run, root)

    evaluate = drop_command(root, "eval_now")
    assert answer(root, evaluate)["message"] == "sent to the trainer"
    acked = ack(root, "eval_now")
    assert acked["message"] == f"evaluating at step {acked['step']}"
    wait_for(
        lambda: find(events(root), type="eval_finished", step=acked["step"]), 15, "the evaluation"
    )

    drop_command(root, "save")
    acked = ack(root, "save")
    assert acked["message"] == f"saving a checkpoint at step {acked['step']}"
    wait_for(
        lambda: find(events(root), type="checkpoint", step=acked["step"]), 15, "the checkpoint"
    )

    change = drop_command(root, {"set": {"eval.eval_steps": 7, "train.log_steps": 5}})
    assert answer(root, change)["message"] == "applied eval.eval_steps = 7, train.log_steps = 5"
    acked = ack(root, {"set": {"eval.eval_steps": 7, "train.log_steps": 5}})
    settings = find(events(root), type="settings")[-1]
    assert settings["settings"]["eval"]["eval_steps"] == 7 and settings["step"] == acked["step"]
    assert run.settings["eval"]["eval_steps"] == 7
    wait_for(
        lambda: [s for s in find(events(root), type="eval_started") if s["step"] > acked["step"]],
        15,
        "an evaluation every 7 steps",
    )
    assert all(
        s["step"] % 7 == 0
        for s in find(events(root), type="eval_started")
        if s["step"] > acked["step"]
    )
    bad = drop_command(root, {"set": {"model.n_layer": 2}})
    refused = answer(root, bad)
    assert not refused["accepted"] and "model.n_layer is not a setting" in refused["message"]

    drop_command(root, "pause")
    paused = ack(root, "pause")
    assert paused["message"] == f"paused at step {paused['step']}"
    wait_for(lambda: status(root)["state"] == "paused", 10, "the paused state")
    before = loop.latest_step()
    time.sleep(1.5)
    assert loop.latest_step() == before == paused["step"] - 1, "blocked in boundary(paused step)"
    assert run.step == paused["step"]
    assert rank_file(root, 0)["phase"] == "paused"
    assert send(root, "pause")["message"] == "already paused"
    resumed = send(root, "resume")
    assert resumed["message"] == f"resumed at step {paused['step']}"
    wait_for(lambda: loop.latest_step() > paused["step"] + 2, 10, "steps after resume")
    assert send(root, "resume")["message"] == "not paused"

    drop_command(root, "abort_generation")
    assert ack(root, "abort_generation")["message"] == "no generation was running"

    drop_command(root, "stop")
    stopped = ack(root, "stop")
    assert stopped["message"] == f"stopping at step {stopped['step']}"
    loop.join()
    lines = events(root)
    assert find(lines, type="checkpoint", step=stopped["step"]), "a stop saves"
    assert lines[-1]["type"] == "finished" and lines[-1]["state"] == "stopped"
    assert status(root)["state"] == "stopped"
    record = rank_record(root, 0)
    assert [r["command"] for r in find(record, type="command_ack")] == [
        a["command"] for a in find(lines, type="command_ack")
    ]
    check_run_dir(root)


@pytest.mark.slow
def test_a_stall_is_marked_and_clears_when_beats_resume(tmp_path):
    root = tmp_path / "run"
    run = make_run(root, settings={"watchdog": {"stall_timeout_seconds": 2}})
    run.start()
    run.beat("generating", 7)
    stalled = wait_for(lambda: find(events(root), type="stalled"), 10, "the stall")[0]
    assert (stalled["step"], stalled["phase"], stalled["timeout_secs"]) == (7, "generating", 2.0)
    assert stalled["silent_secs"] > 2.0
    wait_for(lambda: status(root)["state"] == "stalled", 5, "the stalled state")
    log = (root / "training_output.log").read_text()
    # A loaded machine may notice the silence a little late.
    assert any(
        f"STALLED: no progress for {secs}s (watchdog.stall_timeout_seconds = 2) at step "
        "7, while generating" in log
        for secs in (2, 3)
    ), log
    run.beat("training", 7)
    wait_for(lambda: find(events(root), type="recovered"), 10, "the recovery")
    wait_for(lambda: status(root)["state"] == "training", 5, "the state before the stall")
    run.finish()
    assert find(rank_record(root, 0), type="stalled") and find(
        rank_record(root, 0), type="recovered"
    )
    check_run_dir(root)


# The scripts below run in tmp_path, so that they import the installed trainui
# (the current directory comes first on a `python -c` child's sys.path).
STALLING = """
import time
import trainui
run = trainui.Run({root!r}, max_steps=100, on_stall="exit",
                  settings={{"watchdog": {{"stall_timeout_seconds": 1}}}})
run.start()
run.log_step(1, 2.0, 1e-3)
run.boundary(1)
time.sleep(60)  # a call that never returns
"""


def test_on_stall_exit_records_the_stall_and_exits_75(tmp_path):
    root = tmp_path / "run"
    script = STALLING.format(root=str(root))
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == protocol.STALL_EXIT_CODE, done.stderr
    assert time.monotonic() - started < 30
    assert "exiting with 75" in done.stderr
    current = status(root)
    assert current["state"] == "stalled" and current["current_step"] == 1
    assert find(events(root), type="stalled", step=1)
    assert rank_file(root, 0)["state"] == "stalled"
    check_run_dir(root)


def test_the_rust_schemas_are_there_and_catch_a_bad_line():
    import jsonschema

    from runhelpers import SCHEMAS, schema, schema_validate

    for name in SCHEMAS:
        assert schema(name), name  # a missing schema fails here, never skips
    good = {
        "v": 3,
        "time": "2026-11-29T15:00:01.123Z",
        "type": "warning",
        "step": 1,
        "message": "x",
    }
    schema_validate("event", good)
    with pytest.raises(jsonschema.ValidationError):
        schema_validate("event", {**good, "step": -1})
    with pytest.raises(jsonschema.ValidationError):
        schema_validate("control", {"v": 2, "id": "x", "created_unix": 1.0, "command": "dance"})


def test_values_json_cannot_hold_never_stop_the_writer(tmp_path):
    """An origin that is a path, a prompt of bytes, an infinite loss, a
    message JSON cannot hold: written as serde would write them (or reported
    and passed over), and everything after them is written too. (A NaN
    learning rate or an infinite deadline, which the protocol cannot carry,
    is refused before anything is written: test_trust.py.)"""
    root = tmp_path / "run"
    run = make_run(root, max_steps=4, settings={"train": {"log_steps": 2}})
    run.start()
    with pytest.raises(ValueError, match="learning_rate must be a finite number"):
        run.log_step(1, 1.0, math.nan)
    run.log_step(1, 1.0, 1e-3)
    run.log_step(2, 1.0, 1e-3)
    run.boundary(2)
    run.eval_started(2, 1)
    run.generation_started(
        step=2,
        sample=1,
        of=1,
        example=0,
        origin=Path("val.jsonl"),
        prompt=b"1+1=",
        golden=2,
        golden_tokens=1,
        timeout_secs=60,
    )
    run.sample(
        step=2,
        sample=1,
        of=1,
        example=0,
        origin=Path("val.jsonl"),
        prompt="1+1=",
        golden=2,
        output=2,
        golden_tokens=1,
        output_tokens=1,
        outcome="completed",
        loss=math.inf,
        elapsed_secs=0.1,
        timeout_secs=60,
    )
    run.eval_finished(2)
    run._writer.event({"type": "warning", "step": 2, "message": object()})
    assert run._writer.flush(10)
    run._status.status["exact_match"] = math.nan  # a status-only NaN
    run.log_step(3, 1.0, 1e-3)
    run.log_step(4, 1.0, 1e-3)
    run.boundary(4)
    run.finish()
    lines = events(root)
    started = find(lines, type="generation_started")[0]
    assert (started["origin"], started["prompt"], started["timeout_secs"]) == (
        "val.jsonl",
        "b'1+1='",
        60.0,
    )
    sample = find(lines, type="sample")[0]
    assert sample["loss"] == "inf" and sample["exact_match"] is True
    assert find(lines, type="step", step=4), "the writer lives on"
    assert lines[-1]["type"] == "finished"
    assert status(root)["state"] == "finished"
    assert "TIMEOUT" not in (root / "training_output.log").read_text()
    # events() and status() read strictly: no bare NaN anywhere.
    assert status(root)["exact_match"] is None
    check_run_dir(root)


def test_a_bad_event_is_reported_and_the_writer_goes_on(tmp_path, capfd):
    root = tmp_path / "run"
    run = make_run(root)
    run.start()
    run._writer.event({"type": "sample"})  # fields missing: the fold and the log fail
    run.warning("after the bad one")
    run.finish()
    assert find(events(root), type="warning", message="after the bad one")
    assert status(root)["state"] == "finished"
    assert "trainui: warning: cannot write" in capfd.readouterr().err


def test_the_gradient_norm_reaches_the_step_events_the_status_and_the_log(tmp_path):
    root = tmp_path / "run"
    run = make_run(root, max_steps=12, settings={"train": {"log_steps": 4}})
    run.start()
    norms = [0.5, math.inf, 1.5, None, 1.0, 2.0, None, 3.0, None, None, None, None]
    for step, norm in enumerate(norms, 1):
        run.log_step(step, 1.0, 1e-3, grad_norm=norm)
        run.boundary(step)
    run.finish()
    steps = find(events(root), type="step")
    # The mean of each window's finite norms, as trainui's own steps; none
    # reported, none written.
    assert [s.get("grad_norm") for s in steps] == [1.0, 2.0, None]
    assert status(root)["grad_norm"] == 2.0, "a window without one keeps the last"
    log = (root / "training_output.log").read_text()
    assert "| grad norm 1.000" in log and "| grad norm 2.000" in log
    check_run_dir(root)


def test_non_finite_steps_are_reported_and_counted(tmp_path):
    torch = pytest.importorskip("torch")
    root = tmp_path / "run"
    run = make_run(root, max_steps=8, settings={"train": {"log_steps": 4}})
    run.start()
    values = [
        (1.0, None),
        (math.nan, None),
        (math.inf, None),
        (1.0, None),
        (1.0, torch.tensor(2.0)),
        (torch.tensor(1.0), torch.tensor(math.inf)),
        (torch.tensor(1.0), None),
        (1.0, 0.5),
    ]
    for step, (loss, norm) in enumerate(values, 1):
        run.log_step(step, loss, 1e-3, grad_norm=norm)
        run.boundary(step)
    run.finish()
    lines = events(root)
    reported = find(lines, type="non_finite")
    assert reported == [
        {**reported[0], "step": 2, "loss": "NaN", "grad_norm": "NaN", "action": "warn", "count": 2},
        {**reported[1], "step": 6, "loss": 1.0, "grad_norm": "inf", "action": "warn", "count": 3},
    ]
    assert [s["loss"] for s in find(lines, type="step")] == ["NaN", 1.0]
    assert status(root)["nonfinite_steps"] == 3
    log = (root / "training_output.log").read_text()
    assert (
        "WARNING at step 2: NON-FINITE loss NaN, gradient norm NaN: its update was applied "
        "(train.on_nonfinite = warn; 2 such steps in the run)"
    ) in log
    check_run_dir(root)


def test_a_setup_failure_on_rank_0_is_a_run_dir_error_and_frees_the_lock(tmp_path):
    root = tmp_path / "run"
    root.mkdir()
    (root / "status").write_text("a file where a folder must be")
    with pytest.raises(trainui.RunDirError, match="cannot set up the run directory"):
        make_run(root)
    probe = os.open(root / "lock", os.O_RDONLY)
    try:
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody holds it
    finally:
        os.close(probe)


def test_missing_folders_are_made_0755_whatever_the_umask(tmp_path):
    old = os.umask(0o002)
    try:
        root = tmp_path / "a" / "b" / "run"
        run = make_run(root)
        run.finish()
    finally:
        os.umask(old)
    for folder in (tmp_path / "a", tmp_path / "a" / "b", root):
        assert folder.stat().st_mode & 0o777 == 0o755, folder


def test_the_lock_is_given_back_when_the_run_ends(tmp_path):
    root = tmp_path / "run"
    run = make_run(root)
    run.start()
    run.finish()
    probe = os.open(root / "lock", os.O_RDONLY)
    try:
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(probe)


@pytest.mark.slow
def test_a_stop_ends_the_rest_of_an_evaluation(tmp_path):
    """Rust ends an evaluation between samples on a stop: here every
    remaining generation ends at once as aborted, not at its deadline."""
    root = tmp_path / "run"
    run = make_run(root)
    run.start()
    run.log_step(1, 1.0, 1e-3)
    run.boundary(1)
    outcomes = []

    def evaluate():
        run.eval_started(1, 4)
        for sample in range(1, 5):
            run.generation_started(
                step=1,
                sample=sample,
                of=4,
                example=sample,
                origin="v:1",
                prompt="p",
                golden="g",
                golden_tokens=1,
                timeout_secs=30,
            )
            deadline = time.monotonic() + 30
            while not run.abort.is_set() and time.monotonic() < deadline:
                time.sleep(0.01)
            outcomes.append("aborted" if run.abort.is_set() else "timed_out")
            run.sample(
                step=1,
                sample=sample,
                of=4,
                example=sample,
                origin="v:1",
                prompt="p",
                golden="g",
                output="",
                golden_tokens=1,
                output_tokens=0,
                outcome=outcomes[-1],
                elapsed_secs=0.1,
                timeout_secs=30,
            )
        run.eval_finished(1)

    thread = threading.Thread(target=evaluate, daemon=True)
    thread.start()
    wait_for(lambda: find(events(root), type="generation_started"), 10, "the first generation")
    started = time.monotonic()
    drop_command(root, "stop")
    thread.join(20)
    assert not thread.is_alive() and time.monotonic() - started < 15
    assert outcomes == ["aborted"] * 4
    assert not run.stop_requested, "only agreed at the next boundary"
    actions = run.boundary(2)
    assert actions.stop and run.stop_requested
    run.finish("stopped")
    check_run_dir(root)


def test_signals_only_count_and_the_beat_thread_acts(tmp_path):
    root = tmp_path / "run"
    run = make_run(root)
    run.start()
    run.generation_started(
        step=0,
        sample=1,
        of=1,
        example=0,
        origin="v:1",
        prompt="p",
        golden="g",
        golden_tokens=1,
        timeout_secs=30,
    )
    run._on_signal(signal.SIGUSR2, None)  # as the handler would be called
    assert run.abort.is_set(), "the abort reads as raised at once"
    assert not threading.Event.is_set(run.abort), "the handler sets no Event itself"
    wait_for(lambda: threading.Event.is_set(run.abort), 5, "the beat thread raising the flag")
    run.generation_started(
        step=0,
        sample=1,
        of=1,
        example=0,
        origin="v:1",
        prompt="p",
        golden="g",
        golden_tokens=1,
        timeout_secs=30,
    )
    assert not run.abort.is_set(), "a new generation lowers the flag"
    # Signals caught between two boundaries are applied once, none lost.
    run._on_signal(signal.SIGUSR1, None)
    run._on_signal(signal.SIGUSR1, None)
    assert run.boundary(1).eval
    assert not run.boundary(2).eval
    run._on_signal(signal.SIGUSR1, None)
    assert run.boundary(3).eval
    run._on_signal(signal.SIGTERM, None)  # one stop signal (a second would exit)
    assert not run.stop_requested, "a signal is agreed at the boundary"
    assert run.abort.is_set()
    actions = run.boundary(4)
    assert actions.stop and run.stop_requested
    run.finish("stopped")


def test_sigusr2_on_rank_0_writes_the_abort_mark(tmp_path):
    root = tmp_path / "run"
    run = make_run(root)
    run.world_size = 2  # as if other ranks were there to hear it
    run._on_signal(signal.SIGUSR2, None)
    mark = wait_for(lambda: control.read_abort_mark(root), 5, "the abort mark")
    assert mark["command"] == "abort_generation" and mark["seq"] == 1
    run._abort_everywhere("stop")
    assert control.read_abort_mark(root)["command"] == "stop"
    run._abort_everywhere("abort_generation")
    assert control.read_abort_mark(root) == {
        **control.read_abort_mark(root),
        "seq": 3,
        "command": "stop",
    }, "a stop stays marked"
    run.world_size = 1
    run.finish()


def test_an_abort_mark_hits_only_a_generation_that_began_before_it(tmp_path):
    root = tmp_path / "run"
    run = make_run(root)
    (root / "ranks").mkdir(exist_ok=True)
    control.write_abort_mark(root, 1)
    time.sleep(0.05)
    run.generation_started(
        step=0,
        sample=1,
        of=1,
        example=0,
        origin="v:1",
        prompt="p",
        golden="g",
        golden_tokens=1,
        timeout_secs=30,
    )
    run._watch_abort_mark()
    assert not run.abort.is_set(), "the mark is older than this generation"
    control.write_abort_mark(root, 2)
    run._watch_abort_mark()
    assert run.abort.is_set()
    run.generation_started(
        step=0,
        sample=2,
        of=2,
        example=0,
        origin="v:1",
        prompt="p",
        golden="g",
        golden_tokens=1,
        timeout_secs=30,
    )
    run._watch_abort_mark()
    assert not run.abort.is_set(), "the same mark is applied once"
    control.write_abort_mark(root, 3, "stop")
    run._watch_abort_mark()
    run.generation_started(
        step=0,
        sample=3,
        of=3,
        example=0,
        origin="v:1",
        prompt="p",
        golden="g",
        golden_tokens=1,
        timeout_secs=30,
    )
    assert run.abort.is_set(), "after a stop mark, every generation ends"
    run.finish()


def test_commands_after_the_last_boundary_are_answered_at_the_end(tmp_path):
    root = tmp_path / "run"
    run = make_run(root)
    run.start()
    run.log_step(1, 1.0, 1e-3)
    run.boundary(1)
    request = drop_command(root, "save")
    assert answer(root, request)["accepted"]
    run.finish()
    acked = find(events(root), type="command_ack", command="save")
    assert [a["message"] for a in acked] == ["the run ended before it could apply this"]
    assert events(root)[-1]["type"] == "finished"
    check_run_dir(root)


@pytest.mark.slow
def test_finish_is_bounded_when_the_disk_hangs(tmp_path, monkeypatch):
    from trainui import run as run_module
    from trainui import rundir

    root = tmp_path / "run"
    run = make_run(root)
    run.start()
    hang = threading.Event()
    record = run._writer._rank_record
    monkeypatch.setattr(record, "append", lambda line: hang.wait())
    original = rundir.write_atomically

    def stuck_rank_file(path, contents):
        if path.name.startswith("rank-"):
            hang.wait()
        return original(path, contents)

    monkeypatch.setattr(rundir, "write_atomically", stuck_rank_file)
    monkeypatch.setattr(run_module, "FINISH_SECS", 2.0)
    run.warning("this one hangs")
    started = time.monotonic()
    run.finish()
    took = time.monotonic() - started
    hang.set()
    assert took < 8, f"finish took {took:.1f}s"


def test_the_writer_gathers_a_busy_loops_events_and_a_flush_does_not_wait(monkeypatch):
    from trainui import rundir
    from trainui.rundir import Writer

    written = []

    class Record:
        def append(self, line):
            written.append(json.loads(line))

        def close(self):
            pass

    batches = []
    original_take = Writer._take

    def counted_take(self):
        items = original_take(self)
        batches.append(len(items))
        return items

    monkeypatch.setattr(Writer, "_take", counted_take)
    monkeypatch.setattr(rundir, "GATHER_SECS", 0.2)
    writer = Writer(None, Record(), 0, False)
    for step in range(100):  # a loop logging every 2 ms
        writer.event({"type": "warning", "step": step, "message": "m"}, rank=True)
        time.sleep(0.002)
    started = time.monotonic()
    assert writer.flush(10)
    flushed_in = time.monotonic() - started
    assert [line["step"] for line in written] == list(range(100))
    # Woken once an event, the thread would take about 100 batches.
    assert len(batches) <= 30, batches
    # A flush cuts the gathering short (it lasts 0.2 s here; a slow machine
    # may take longer for other reasons, hence the margin).
    assert flushed_in < 5, flushed_in
    writer.close(10)
    started = time.monotonic()
    writer2 = Writer(None, Record(), 0, False)
    writer2.event({"type": "warning", "step": 0, "message": "m"}, rank=True)
    time.sleep(0.05)  # the thread is gathering now
    writer2.event({"type": "warning", "step": 1, "message": "m"}, rank=True)
    assert writer2.close(10)
    assert time.monotonic() - started < 5


def test_a_full_writer_queue_drops_progress_first_and_says_so(tmp_path):
    from trainui.rundir import Writer

    written = []
    gate = threading.Event()

    class Record:
        def append(self, line):
            gate.wait(10)
            written.append(json.loads(line))

        def close(self):
            pass

    writer = Writer(None, Record(), 0, False, max_queued=3)
    writer.event({"type": "warning", "step": 0, "message": "first"}, rank=True)
    wait_for(lambda: not writer._items, 5, "the writer taking the first item")
    progress = {
        "type": "generation_progress",
        "step": 0,
        "sample": 1,
        "text": "",
        "tokens": 0,
        "elapsed_secs": 0.0,
    }
    writer.event(progress, rank=True)
    for name in ("a", "b", "c", "d"):
        writer.event({"type": "warning", "step": 0, "message": name}, rank=True)
    assert writer.dropped == 2
    gate.set()
    assert writer.flush(10)
    writer.close(10)
    messages = [line.get("message") for line in written]
    reports = [m for m in messages if "events were dropped" in m]
    assert len(reports) == 1 and "2 events were dropped" in reports[0], messages
    assert [m for m in messages if m not in reports] == ["first", "a", "b", "c"], (
        "progress went first, then the newest"
    )
    assert not find(written, type="generation_progress")


@pytest.mark.slow
def test_a_lasting_spool_error_is_reported_once_with_the_step(tmp_path, monkeypatch):
    root = tmp_path / "run"
    run = make_run(root)
    run.start()
    run.log_step(5, 1.0, 1e-3)
    run.boundary(5)

    def broken(_directory):
        raise RuntimeError("the disk is gone")

    monkeypatch.setattr(control, "pending", broken)
    wait_for(lambda: find(events(root), type="warning"), 10, "the warning")
    time.sleep(1.5)
    warnings = find(events(root), type="warning")
    assert len(warnings) == 1 and warnings[0]["step"] == 5
    assert warnings[0]["message"] == "control spool: RuntimeError: the disk is gone"
    monkeypatch.undo()
    run.finish()


SIGNALLED = """
import signal, time
import trainui
run = trainui.Run({root!r}, max_steps=100, print_lines=False)
print("SIGHUP", "ignored" if signal.getsignal(signal.SIGHUP) == signal.SIG_IGN else "handled",
      flush=True)
run.start()
run.log_step(1, 2.0, 1e-3)
run.boundary(1)
time.sleep(120)  # a step that does not end
"""


@pytest.mark.parametrize(
    ("first", "second", "code"),
    [(signal.SIGTERM, signal.SIGINT, 130), (signal.SIGHUP, signal.SIGTERM, 143)],
)
def test_a_second_stop_signal_exits_at_once(tmp_path, first, second, code):
    root = tmp_path / "run"
    script = SIGNALLED.format(root=str(root))
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert process.stdout.readline().strip() == "SIGHUP handled"
        wait_for(
            lambda: (rank_file(root, 0) or {}).get("state") == "training", 60, "the run training"
        )
        process.send_signal(first)
        time.sleep(1.0)
        assert process.poll() is None, "one signal only asks for a stop"
        process.send_signal(second)
        assert process.wait(30) == code
        err = process.stderr.read()
        assert "stopping after the current step" in err and "second signal" in err
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_sighup_stays_ignored_under_nohup(tmp_path):
    root = tmp_path / "run"
    script = SIGNALLED.format(root=str(root))
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,
        # As nohup does. preexec_fn is unsafe with threads when it needs a lock that
        # another thread held at the fork; signal() takes none.
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN),  # noqa: PLW1509
    )
    try:
        assert process.stdout.readline().strip() == "SIGHUP ignored"
    finally:
        process.kill()
        process.wait()


def test_a_long_window_of_tensor_losses_is_read_back_right(tmp_path):
    torch = pytest.importorskip("torch")
    root = tmp_path / "run"
    run = make_run(root, max_steps=600, settings={"train": {"log_steps": 600}})
    run.start()
    for step in range(1, 601):
        loss = torch.tensor(math.nan if step == 300 else float(step), requires_grad=True)
        run.log_step(step, loss * 1.0, 1e-3)
    run.boundary(600)
    run.finish()
    lines = events(root)
    assert [(n["step"], n["count"]) for n in find(lines, type="non_finite")] == [(300, 1)]
    assert find(lines, type="step")[0]["loss"] == "NaN"
    run2 = make_run(tmp_path / "run2", max_steps=600, settings={"train": {"log_steps": 600}})
    run2.start()
    for step in range(1, 601):
        run2.log_step(step, torch.tensor([float(step)]), 1e-3)
    run2.finish()
    assert find(events(tmp_path / "run2"), type="step")[0]["loss"] == 300.5


def test_under_trainui_run_the_environments_run_directory_wins_and_the_other_is_named(
    tmp_path, monkeypatch
):
    watched = tmp_path / "watched"
    monkeypatch.setenv("TRAINUI_RUN_DIR", str(watched))
    run = make_run(tmp_path / "asked", max_steps=2)
    run.start()
    for step in (1, 2):
        run.log_step(step, 1.0, 1e-3)
        run.boundary(step)
    run.finish()
    assert not (tmp_path / "asked").exists(), "nothing is written where no one looks"
    assert status(watched)["state"] == "finished"
    said = [w["message"] for w in find(events(watched), type="warning")]
    assert len(said) == 1, said
    assert str(tmp_path / "asked") in said[0] and "TRAINUI_RUN_DIR" in said[0], said
    assert str(watched) in said[0], said


def test_the_same_run_directory_given_both_ways_is_no_warning(tmp_path, monkeypatch):
    root = tmp_path / "run"
    monkeypatch.setenv("TRAINUI_RUN_DIR", str(root))
    run = make_run(root, max_steps=1)
    run.start()
    run.log_step(1, 1.0, 1e-3)
    run.boundary(1)
    run.finish()
    assert find(events(root), type="warning") == []
