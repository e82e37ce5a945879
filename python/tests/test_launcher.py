"""What `trainui run` tells a job through its environment (launcher.py),
as the run handle honours it: the stall exit, the relaunch in the run
directory that holds the run, the checkpoint to resume from, and no log
lines of the job's own."""

from __future__ import annotations

import subprocess
import sys

import pytest

import trainui
from runhelpers import check_run_dir, events, find, status
from trainui import RunDirError, protocol

STALLS = """
import time, trainui
run = trainui.Run(max_steps=10, settings={"watchdog": {"stall_timeout_seconds": 1}})
run.start()
run.log_step(1, 2.0, 1e-3)
run.boundary(1)
time.sleep(60)  # a call that never returns
"""


def launched(env: dict[str, str], root, **more) -> dict[str, str]:
    """The environment `trainui run` gives a job writing `root`."""
    return {"TRAINUI_RUN_DIR": str(root), **env, **more}


def test_trainui_on_stall_exit_wins_over_the_jobs_warn(tmp_path):
    root = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-c", STALLS],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=launched({"PATH": "/usr/bin:/bin"}, root, TRAINUI_ON_STALL="exit"),
    )
    assert done.returncode == protocol.STALL_EXIT_CODE, done.stderr
    assert find(events(root), type="stalled", step=1)


def test_a_bad_on_stall_word_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("TRAINUI_ON_STALL", "restart")
    with pytest.raises(
        ValueError, match=r"TRAINUI_ON_STALL='restart': expected \"warn\" or \"exit\""
    ):
        trainui.Run(tmp_path / "run", max_steps=1)


def test_a_relaunch_goes_on_in_the_run_directory_and_says_where_it_resumes_from(
    monkeypatch, tmp_path
):
    root = tmp_path / "run"
    monkeypatch.setenv("TRAINUI_RUN_DIR", str(root))
    with trainui.Run(max_steps=40, print_lines=False) as run:
        run.start()
        for step in range(1, 21):
            run.log_step(step, 1.0, 1e-3)
            run.boundary(step)
        run.checkpoint(20, root / "checkpoints" / "step-20")
        run.finish("stopped")
    assert trainui.resume_checkpoint() is None
    # A first start refuses a directory that holds a run ...
    with pytest.raises(RunDirError, match="already holds a run"):
        trainui.Run(max_steps=40)
    # ... a relaunch goes on in it, from the checkpoint it was handed.
    checkpoint = str(root / "checkpoints" / "step-20")
    monkeypatch.setenv("TRAINUI_RESTART", "1")
    monkeypatch.setenv("TRAINUI_RESUME_CHECKPOINT", checkpoint)
    assert trainui.resume_checkpoint() == checkpoint
    with trainui.Run(max_steps=40, print_lines=False) as run:
        assert run.restart == 1 and run.resume_checkpoint == checkpoint
        run.start(start_step=20)
        for step in range(21, 41):
            run.log_step(step, 0.5, 1e-3)
            run.boundary(step)
    written = events(root)
    starts = find(written, type="started")
    assert [s["resumed_from"] for s in starts] == [None, checkpoint]
    assert starts[1]["start_step"] == 20
    assert find(
        written,
        type="warning",
        message=(
            f"relaunched by trainui run after a stall (restart 1), from {checkpoint} at step 20"
        ),
    )
    assert status(root)["state"] == "finished" and status(root)["current_step"] == 40
    check_run_dir(root)


def test_a_restart_that_is_not_a_number_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("TRAINUI_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("TRAINUI_RESTART", "yes")
    with pytest.raises(ValueError, match=r"TRAINUI_RESTART='yes': expected a whole number"):
        trainui.Run(max_steps=1)


def test_the_job_prints_no_lines_when_trainui_prints_them(tmp_path, capfd):
    root = tmp_path / "run"
    script = (
        "import trainui\n"
        "with trainui.Run(max_steps=2, settings={'train': {'log_steps': 1}}) as run:\n"
        "    run.start()\n"
        "    for step in (1, 2):\n"
        "        run.log_step(step, 1.0, 1e-3)\n"
    )
    for quiet in (False, True):
        extra = {"TRAINUI_PRINT_LINES": "0"} if quiet else {}
        target = root / ("quiet" if quiet else "loud")
        done = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            env=launched({"PATH": "/usr/bin:/bin"}, target, **extra),
        )
        printed = "step 2/2" in done.stdout
        assert printed is not quiet, done.stdout
        assert find(events(target), type="step", step=2)
