"""A multi-process job whose rank 1 raises (issue 22, item 11): the run's
failure names rank 1 and its own error, not only rank 0's news of a lost
peer, and rank 1 reads `FAILED`, not `done`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from runhelpers import (
    check_run_dir,
    events,
    free_port,
    rank_file,
    rank_record,
    status,
    torchrun,
    trainui_program,
)

STARTUP = 120  # importing torch on two loaded cores, twice
WORKER = Path(__file__).resolve().parent / "failing_rank_worker.py"
ERROR = "bad batch 7: shapes (3, 4) and (5,) do not match"
TRAINUI = trainui_program()


@pytest.mark.slow
def test_the_rank_that_failed_first_is_named_with_its_own_error(children, tmp_path):
    root = tmp_path / "run"
    command = [
        *torchrun(),
        "--nproc-per-node",
        "2",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(free_port()),
        str(WORKER),
        str(root),
    ]
    process = children.start(command, tmp_path / "torchrun.log", env={"GLOO_SOCKET_IFNAME": "lo"})
    code = process.wait(STARTUP + 120)
    log = (tmp_path / "torchrun.log").read_text()[-4000:]
    assert code != 0, log
    assert ERROR in log, "rank 1 raised: " + log
    own = rank_record(root, 1)[-1]
    assert own["type"] == "failed" and own["message"] == f"ValueError: {ERROR}", own
    assert rank_file(root, 1)["state"] == "failed" and rank_file(root, 1)["phase"] == "done"

    failed = events(root)[-1]
    assert failed["type"] == "failed", failed
    message = failed["message"]
    assert message.startswith(
        f"rank 1 failed at step {own['step']}: ValueError: {ERROR} (then rank 0: "
    ), message
    current = status(root)
    assert current["state"] == "failed" and current["last_message"] == message
    assert (
        f"FAILED at step {failed['step']}: rank 1 failed"
        in (root / "training_output.log").read_text()
    )
    check_run_dir(root, ranks=2)

    if not TRAINUI.is_file():
        pytest.skip(
            f"{TRAINUI} is not built (cargo build --release -p trainui): `trainui status` not "
            "checked; the run directory above names rank 1"
        )
    shown = subprocess.run(
        [str(TRAINUI), "status", str(root)], capture_output=True, text=True, timeout=60, check=False
    )
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    rank_one = [line for line in lines if "rank 1 (" in line]
    assert rank_one and "FAILED at step" in rank_one[0] and "done" not in rank_one[0], shown.stdout
    assert any(
        line.startswith("last")
        and f"rank 1 failed at step {own['step']}: ValueError: {ERROR}" in line
        for line in lines
    ), shown.stdout
    assert "state      failed" in shown.stdout
