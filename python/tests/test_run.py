"""trainui.Run in one process: the files it writes, the run directories it
refuses, the control spool and its commands, the stall watchdog."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from runhelpers import (PYTHON_DIR, check_run_dir, drop_command, events, find, rank_file,
                        rank_record, status, wait_for)
import trainui
from trainui import protocol


def make_run(root: Path, **extra) -> trainui.Run:
    options = dict(max_steps=10**6, handle_signals=False, print_lines=False,
                   settings={"train": {"log_steps": 2}, "eval": {"eval_steps": 0}})
    options.update(extra)
    return trainui.Run(root, **options)


class Loop:
    """A training loop on a thread of its own: a step every `step_secs`,
    a boundary after each, evaluating, saving and stopping as told."""

    def __init__(self, run: trainui.Run, root: Path, step_secs: float = 0.02):
        self.run = run
        self.root = root
        self.step_secs = step_secs
        self.actions = []
        self.error = None
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        run = self.run
        try:
            step = 0
            while step < run.max_steps:
                time.sleep(self.step_secs)
                step += 1
                run.log_step(step, 2.0 / step, 1e-3, tokens=64)
                actions = run.boundary(step)
                self.actions.append((step, actions))
                if actions.eval:
                    run.eval_started(step, 1)
                    run.val_loss(step, 1.5, 1)
                    run.generation_started(step=step, sample=1, of=1, example=0,
                                           origin="val.jsonl:1", prompt="1+1=", golden="2",
                                           golden_tokens=1, timeout_secs=60.0)
                    run.sample(step=step, sample=1, of=1, example=0, origin="val.jsonl:1",
                               prompt="1+1=", golden="2", output="2", golden_tokens=1,
                               output_tokens=1, outcome="completed", loss=0.1,
                               elapsed_secs=0.01, timeout_secs=60.0)
                    run.eval_finished(step)
                if actions.save:
                    run.checkpoint(step, self.root / "checkpoints" / f"checkpoint-{step}")
                if actions.stop:
                    run.finish("stopped")
                    return
            run.finish()
        except BaseException as err:  # reported by join()
            self.error = err

    def join(self, timeout=30):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the loop did not end"
        if self.error:
            raise self.error

    def latest_step(self):
        return self.actions[-1][0] if self.actions else 0


def answer(root: Path, request_id: str, timeout: float = 15):
    return wait_for(lambda: find(events(root), type="control", id=request_id), timeout,
                    f"the answer to {request_id}")[0]


def ack(root: Path, command, timeout: float = 15, after: int = 0):
    """The acknowledgement of `command` after the first `after` ones."""
    return wait_for(lambda: find(events(root), type="command_ack", command=command)[after:],
                    timeout, f"the acknowledgement of {command}")[0]


def send(root: Path, command):
    """Drops a command file and waits for the trainer's acknowledgement."""
    earlier = len(find(events(root), type="command_ack", command=command))
    drop_command(root, command)
    return ack(root, command, after=earlier)


def test_a_run_writes_the_run_directory_of_the_rust_trainer(tmp_path):
    root = tmp_path / "run"
    with make_run(root, config={"lr": 0.1}, run_name="demo", max_steps=10,
                  settings={"train": {"log_steps": 3}, "eval": {"eval_steps": 4},
                            "checkpoint": {"save_steps": 5}}) as run:
        run.start(device="cpu", parameters=1234, vocab_size=41, train_examples=100,
                  val_examples=10)
        for step in range(1, 11):
            run.log_step(step, float("nan") if step == 9 else 1.0, 1e-3, tokens=10)
            actions = run.boundary(step)
            assert actions.eval == (step % 4 == 0) and actions.save == (step % 5 == 0)
            if actions.eval:
                run.eval_started(step, 2)
                run.val_loss(step, 0.9, 1)
                for sample, outcome in enumerate(["completed", ("error", "boom")], 1):
                    run.generation_started(step=step, sample=sample, of=2, example=sample,
                                           origin=f"val.jsonl:{sample}", prompt="p",
                                           golden="85", golden_tokens=2, timeout_secs=60)
                    run.generation_progress(step=step, sample=sample, text="8", tokens=1,
                                            elapsed_secs=0.0)
                    run.sample(step=step, sample=sample, of=2, example=sample,
                               origin=f"val.jsonl:{sample}", prompt="p", golden="85",
                               output=" 85 ", golden_tokens=2, output_tokens=2,
                               outcome=outcome, loss=None, elapsed_secs=0.5, timeout_secs=60)
                run.eval_finished(step)
            if actions.save:
                run.checkpoint(step, root / "checkpoints" / f"checkpoint-{step}")
    check_run_dir(root)
    lines = events(root)
    kinds = [line["type"] for line in lines]
    assert kinds[:2] == ["started", "state"]
    assert kinds[-1] == "finished"
    started = lines[0]
    assert started["producer"] == {"name": "trainui-python", "version": "0.1.0",
                                   "framework": "pytorch", "world_size": 1}
    assert started["settings"]["eval"]["eval_steps"] == 4
    assert [line["step"] for line in find(lines, type="step")] == [3, 6, 9, 10]
    assert find(lines, type="step", step=9)[0]["loss"] == "NaN", "a NaN loss is text"
    samples = find(lines, type="sample")
    assert [s["exact_match"] for s in samples] == [True, False] * 2
    assert samples[1]["outcome"] == {"kind": "error", "message": "boom"}
    assert samples[-1]["counters"] == {"generations": 4, "completed": 2, "timed_out": 0,
                                       "aborted": 0, "errors": 2}
    finished = find(lines, type="eval_finished")
    assert [(f["matches"], f["samples"], f["exact_match"]) for f in finished] == [(1, 2, 0.5)] * 2
    current = status(root)
    assert (current["state"], current["current_step"], current["run_name"]) == \
        ("finished", 10, "demo")
    assert current["evals"] == 2 and current["errors"] == 2 and current["exact_match"] == 0.5
    assert current["last_checkpoint"].endswith("checkpoint-10")
    assert current["producer"]["framework"] == "pytorch"
    assert current["eta_secs"] == 0.0 and current["pid"] == os.getpid()
    log = (root / "training_output.log").read_text()
    assert "run demo | device cpu | 1,234 parameters | vocab 41 | 100 train / 10 val examples" \
        in log
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
        return sorted((str(p.relative_to(root)), p.stat().st_mtime_ns,
                       p.read_bytes() if p.is_file() else b"") for p in root.rglob("*"))

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
    with pytest.raises(RuntimeError):
        with make_run(root) as run:
            run.start()
            run.log_step(1, 1.0, 1e-3)
            raise RuntimeError("CUDA out of memory")
    lines = events(root)
    assert lines[-1]["type"] == "failed" and lines[-1]["message"] == "CUDA out of memory"
    assert status(root)["state"] == "failed"
    assert "FAILED at step 1: CUDA out of memory" in (root / "training_output.log").read_text()
    check_run_dir(root)


def test_bad_control_files_are_rejected_and_the_run_goes_on(tmp_path):
    root = tmp_path / "run"
    run = make_run(root)
    run.start()
    loop = Loop(run, root)
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
    elsewhere.write_text('{"v":2,"id":"x","created_unix":%f,"command":"stop"}' % time.time())
    (spool / "link.json").symlink_to(elsewhere)
    linked = answer(root, "link.json")
    assert linked["message"] == "refused: a symbolic link; left in place"
    (spool / "notes.txt").write_text("hello")
    assert answer(root, "notes.txt")["message"] == \
        "refused: not a command file (NAME.json); left in place"
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


def test_commands_are_applied_at_a_step_boundary(tmp_path):
    root = tmp_path / "run"
    run = make_run(root)
    run.start()
    loop = Loop(run, root)

    evaluate = drop_command(root, "eval_now")
    assert answer(root, evaluate)["message"] == "sent to the trainer"
    acked = ack(root, "eval_now")
    assert acked["message"] == f"evaluating at step {acked['step']}"
    wait_for(lambda: find(events(root), type="eval_finished", step=acked["step"]), 15,
             "the evaluation")

    drop_command(root, "save")
    acked = ack(root, "save")
    assert acked["message"] == f"saving a checkpoint at step {acked['step']}"
    wait_for(lambda: find(events(root), type="checkpoint", step=acked["step"]), 15,
             "the checkpoint")

    change = drop_command(root, {"set": {"eval.eval_steps": 7, "train.log_steps": 5}})
    assert answer(root, change)["message"] == \
        "applied eval.eval_steps = 7, train.log_steps = 5"
    acked = ack(root, {"set": {"eval.eval_steps": 7, "train.log_steps": 5}})
    settings = find(events(root), type="settings")[-1]
    assert settings["settings"]["eval"]["eval_steps"] == 7 and settings["step"] == acked["step"]
    assert run.settings["eval"]["eval_steps"] == 7
    wait_for(lambda: [s for s in find(events(root), type="eval_started")
                      if s["step"] > acked["step"]], 15, "an evaluation every 7 steps")
    assert all(s["step"] % 7 == 0 for s in find(events(root), type="eval_started")
               if s["step"] > acked["step"])
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
    assert [r["command"] for r in find(record, type="command_ack")] == \
        [a["command"] for a in find(lines, type="command_ack")]
    check_run_dir(root)


def test_a_stall_is_marked_and_clears_when_beats_resume(tmp_path):
    root = tmp_path / "run"
    run = make_run(root, settings={"watchdog": {"stall_timeout_seconds": 1}})
    run.start()
    run.beat("generating", 7)
    stalled = wait_for(lambda: find(events(root), type="stalled"), 10, "the stall")[0]
    assert (stalled["step"], stalled["phase"], stalled["timeout_secs"]) == (7, "generating", 1.0)
    assert stalled["silent_secs"] > 1.0
    wait_for(lambda: status(root)["state"] == "stalled", 5, "the stalled state")
    assert "STALLED: no progress for 1s (watchdog.stall_timeout_seconds = 1) at step 7, while " \
           "generating" in (root / "training_output.log").read_text()
    run.beat("training", 7)
    wait_for(lambda: find(events(root), type="recovered"), 10, "the recovery")
    wait_for(lambda: status(root)["state"] == "training", 5, "the state before the stall")
    run.finish()
    assert find(rank_record(root, 0), type="stalled") and find(rank_record(root, 0),
                                                                 type="recovered")
    check_run_dir(root)


STALLING = """
import sys, time
sys.path.insert(0, {python!r})
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
    script = STALLING.format(python=str(PYTHON_DIR), root=str(root))
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == protocol.STALL_EXIT_CODE, done.stderr
    assert time.monotonic() - started < 30
    assert "exiting with 75" in done.stderr
    current = status(root)
    assert current["state"] == "stalled" and current["current_step"] == 1
    assert find(events(root), type="stalled", step=1)
    assert rank_file(root, 0)["state"] == "stalled"
    check_run_dir(root)


def test_the_rust_schemas_check_every_line_when_they_exist():
    from runhelpers import SCHEMA_DIR

    if not SCHEMA_DIR.is_dir():
        pytest.skip(f"{SCHEMA_DIR} is not generated yet: lines are checked field by field only")
    for name in ("event", "status", "control", "rank"):
        assert (SCHEMA_DIR / f"{name}.schema.json").is_file(), name
