"""examples/torchrun_loop.py: alone (signals) and under torchrun with two
gloo ranks (commands agreed across ranks, a generation that never ends, a
rank that dies). The rank records (ranks/rank-N.jsonl) prove what every
rank did."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from runhelpers import (
    EXAMPLE,
    check_run_dir,
    drop_command,
    events,
    find,
    free_port,
    rank_file,
    rank_record,
    status,
    torchrun,
    trainui_program,
    wait_for,
)

# Every test here starts the example as a process of its own (two ranks under
# torchrun for most), for 5 to 20 s each.
pytestmark = pytest.mark.slow

STARTUP = 120  # importing torch on two loaded cores, twice


def example(run_dir, *args):
    return [str(EXAMPLE), "--run-dir", str(run_dir), *map(str, args)]


def start_torchrun(children, tmp_path, *args):
    command = [
        *torchrun(),
        "--nproc-per-node",
        "2",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(free_port()),
        *example(tmp_path / "run", *args),
    ]
    return children.start(command, tmp_path / "torchrun.log", env={"GLOO_SOCKET_IFNAME": "lo"})


def log_of(tmp_path, name):
    try:
        return (tmp_path / name).read_text()[-4000:]
    except FileNotFoundError:
        return ""


def training(root, ranks, min_step=1):
    """Every rank's heartbeat says training at min_step or later."""
    beats = [rank_file(root, rank) for rank in range(ranks)]
    return all(b and b["state"] == "training" and b["step"] >= min_step for b in beats)


def ack_on(root, rank, command, after=0):
    found = find(rank_record(root, rank), type="command_ack", command=command)
    return found[after] if len(found) > after else None


def test_signals_evaluate_and_stop_a_single_process_run(children, tmp_path):
    root = tmp_path / "run"
    process = children.start(
        [
            sys.executable,
            *example(
                root,
                "--max-steps",
                100000,
                "--eval-steps",
                0,
                "--log-steps",
                5,
                "--step-sleep",
                0.05,
            ),
        ],
        tmp_path / "out.log",
    )
    wait_for(lambda: training(root, 1, 3), STARTUP, "training")
    process.send_signal(signal.SIGUSR1)
    evaluated = wait_for(lambda: ack_on(root, 0, "eval_now"), 30, "the SIGUSR1 evaluation")
    assert evaluated["message"] == f"evaluating at step {evaluated['step']}"
    wait_for(
        lambda: find(events(root), type="eval_finished", step=evaluated["step"]),
        60,
        "the evaluation's end",
    )
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0, log_of(tmp_path, "out.log")
    stopped = ack_on(root, 0, "stop")
    assert stopped["message"] == f"stopping at step {stopped['step']}"
    assert (root / "checkpoints" / f"checkpoint-{stopped['step']}" / "model.pt").is_file()
    assert not [p for p in (root / "checkpoints").iterdir() if p.name.startswith(".")]
    lines = events(root)
    assert find(lines, type="checkpoint", step=stopped["step"])
    assert lines[-1]["type"] == "finished" and lines[-1]["state"] == "stopped"
    assert status(root)["state"] == "stopped"
    assert "stopping after the current step" in log_of(tmp_path, "out.log")
    check_run_dir(root)


def test_torchrun_ranks_apply_every_command_at_the_same_step(children, tmp_path):
    root = tmp_path / "run"
    process = start_torchrun(
        children,
        tmp_path,
        "--max-steps",
        100000,
        "--eval-steps",
        0,
        "--log-steps",
        5,
        "--step-sleep",
        0.05,
        "--samples",
        1,
    )
    wait_for(lambda: training(root, 2, 2), STARTUP, "both ranks training")
    applied = []

    def apply(command, sender):
        earlier = len(find(rank_record(root, 1), type="command_ack", command=command))
        sender()
        acks = wait_for(
            lambda: (
                all(ack_on(root, r, command, earlier) for r in (0, 1))
                and [ack_on(root, r, command, earlier) for r in (0, 1)]
            ),
            60,
            f"both ranks applying {command}",
        )
        assert acks[0]["step"] == acks[1]["step"], f"{command}: {acks}"
        assert acks[0]["message"] == acks[1]["message"]
        applied.append((command, acks[0]["step"]))
        return acks[0]

    apply("eval_now", lambda: drop_command(root, "eval_now"))
    apply("save", lambda: drop_command(root, "save"))
    change = {"set": {"eval.samples": 2, "train.learning_rate": 0.001}}
    acked = apply(change, lambda: drop_command(root, change))
    assert acked["message"] == "applied eval.samples = 2, train.learning_rate = 0.001"
    for rank in (0, 1):
        settings = find(rank_record(root, rank), type="settings")[-1]
        assert settings["step"] == acked["step"]
        assert settings["settings"]["eval"]["samples"] == 2
        assert settings["settings"]["train"]["learning_rate"] == 0.001
    # A signal caught by rank 1 alone is applied by both ranks.
    rank1 = rank_file(root, 1)["pid"]
    apply("eval_now", lambda: os.kill(rank1, signal.SIGUSR1))
    paused = apply("pause", lambda: drop_command(root, "pause"))
    wait_for(
        lambda: all(rank_file(root, r)["phase"] == "paused" for r in (0, 1)),
        10,
        "both ranks paused",
    )
    time.sleep(1.5)
    assert [rank_file(root, r)["step"] for r in (0, 1)] == [paused["step"]] * 2
    apply("resume", lambda: drop_command(root, "resume"))
    stopped = apply("stop", lambda: drop_command(root, "stop"))
    assert process.wait(120) == 0, log_of(tmp_path, "torchrun.log")

    for rank in (0, 1):
        record = rank_record(root, rank)
        acks = [(a["command"], a["step"]) for a in find(record, type="command_ack")]
        assert acks == applied, f"rank {rank}"
        assert record[-1]["type"] == "finished" and record[-1]["state"] == "stopped"
        # Each rank evaluated at both eval_now steps, 1 then 2 samples.
        samples = [(s["step"], s["of"]) for s in find(record, type="sample")]
        assert samples[0] == (applied[0][1], 1), samples
        assert samples[-1] == (applied[3][1], 2), samples
        assert rank_file(root, rank)["phase"] == "done"
    lines = events(root)
    assert find(lines, type="checkpoint", step=applied[1][1]), "saved on `save`"
    assert find(lines, type="checkpoint", step=stopped["step"]), "saved on `stop`"
    assert lines[-1]["type"] == "finished" and lines[-1]["state"] == "stopped"
    assert lines[0]["producer"]["world_size"] == 2
    check_run_dir(root, ranks=2)


def test_a_generation_that_never_ends_on_rank_1_is_aborted_or_timed_out(children, tmp_path):
    root = tmp_path / "run"
    # Steps of 0.25 s: ranks agree at every boundary (faster steps are
    # agreed every few steps, and the `set` below could miss step 12).
    process = start_torchrun(
        children,
        tmp_path,
        "--max-steps",
        12,
        "--eval-steps",
        6,
        "--log-steps",
        6,
        "--samples",
        1,
        "--eval-timeout",
        600,
        "--fault",
        "never_eos_on_rank:1",
        "--step-sleep",
        0.25,
    )
    # The first evaluation: rank 1's generation would run for 600 s. An
    # abort sent to rank 0's spool reaches it at once (through the run
    # directory), and the next evaluation gets a 2 s deadline.
    wait_for(
        lambda: (rank_file(root, 1) or {}).get("phase") == "generating",
        STARTUP,
        "rank 1 generating",
    )
    drop_command(root, "abort_generation")
    drop_command(root, {"set": {"eval.eval_timeout_seconds": 2}})
    assert process.wait(180) == 0, log_of(tmp_path, "torchrun.log")
    zero = find(rank_record(root, 0), type="sample")
    one = find(rank_record(root, 1), type="sample")
    assert [s["outcome"]["kind"] for s in zero] == ["completed", "completed"]
    assert [s["outcome"]["kind"] for s in one] == ["aborted", "timed_out"]
    assert one[0]["elapsed_secs"] < 60 and one[0]["output_tokens"] > 0
    assert 1.9 < one[1]["elapsed_secs"] < 10 and one[1]["timeout_secs"] == 2.0
    aborts = [ack_on(root, rank, "abort_generation") for rank in (0, 1)]
    assert aborts[0]["step"] == aborts[1]["step"]
    assert aborts[1]["message"] == "aborted the generation"
    for rank in (0, 1):
        last = rank_record(root, rank)[-1]
        assert last["type"] == "finished" and last["state"] == "finished" and last["step"] == 12
    assert status(root)["state"] == "finished"
    log = (root / "training_output.log").read_text()
    assert "MATCH" in log and "TIMEOUT" not in log, "the log is rank 0's"
    check_run_dir(root, ranks=2)


def stuck_ranks(root, ranks, stall_timeout):
    """The ranks a reader judging by the protocol calls stuck, the one that
    holds the others up first (as `trainui status` orders them): a rank not
    `done` whose process is gone, or whose beat is older than the stall
    timeout; gone before silent, then the oldest beat."""
    now = time.time()
    stuck = []
    for rank in range(ranks):
        beat = rank_file(root, rank)
        if beat is None or beat["phase"] == "done":
            continue
        gone = not os.path.exists(f"/proc/{beat['pid']}") or _zombie(beat["pid"])
        if gone or now - beat["beat_unix"] > stall_timeout:
            stuck.append((not gone, beat["beat_unix"], rank))
    return [rank for _, _, rank in sorted(stuck)]


def _zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


TRAINUI = trainui_program()


def test_a_killed_rank_stops_beating(children, tmp_path):
    root = tmp_path / "run"
    stall = 2.0
    start_torchrun(
        children,
        tmp_path,
        "--max-steps",
        100000,
        "--eval-steps",
        0,
        "--step-sleep",
        0.05,
        "--stall-timeout",
        stall,
    )
    wait_for(lambda: training(root, 2, 3), STARTUP, "both ranks training")
    wait_for(lambda: rank_file(root, 1)["beat_unix"] > time.time() - 2, 10, "a fresh beat")
    victim = rank_file(root, 1)
    zero_before = rank_file(root, 0)
    os.kill(victim["pid"], signal.SIGKILL)
    time.sleep(0.5)
    last = rank_file(root, 1)
    time.sleep(3)
    after = rank_file(root, 1)
    assert after == last, "a dead rank's file does not change"
    assert after["beat_unix"] == last["beat_unix"] < time.time() - 3
    assert after["state"] == "training" and after["phase"] == "training"
    # Rank 0 went on past rank 1's last beat: it beat later (it was still
    # training, or is stuck in its collective since), or it ended (its
    # collective failed and the run failed: phase done).
    zero = wait_for(lambda: rank_file(root, 0), 10, "rank 0's file")
    assert zero["pid"] != victim["pid"]
    assert zero["phase"] == "done" or zero["beat_unix"] >= after["beat_unix"], (zero, after)
    assert zero["beat_unix"] >= zero_before["beat_unix"]
    # A reader judging by the protocol names rank 1 first.
    named = wait_for(lambda: stuck_ranks(root, 2, stall), 30, "a stuck rank")
    assert named[0] == 1, named
    if not TRAINUI.is_file():
        pytest.skip(
            f"{TRAINUI} is not built (cargo build --release -p trainui): `trainui status` not "
            "checked; the protocol reader above named rank 1"
        )
    shown = subprocess.run(
        [str(TRAINUI), "status", str(root)], capture_output=True, text=True, timeout=60, check=False
    )
    assert "rank 1 went silent first" in shown.stdout, shown.stdout + shown.stderr


def test_a_setup_failure_on_rank_0_ends_every_rank(children, tmp_path):
    """Rank 0 cannot make its files (a file where a folder must be): every
    rank hears it and raises the same error, none waits in a collective."""
    root = tmp_path / "run"
    root.mkdir()
    (root / "status").write_text("a file where a folder must be")
    process = start_torchrun(children, tmp_path, "--max-steps", 10, "--eval-steps", 0)
    code = process.wait(STARTUP + 60)
    assert code != 0
    log = (tmp_path / "torchrun.log").read_text()
    assert log.count("RunDirError: ") >= 2, log[-4000:]  # one traceback a rank
    assert "cannot set up the run directory" in log, log[-4000:]
    assert not (root / "ranks" / "rank-1.jsonl").exists(), "rank 1 wrote nothing"
    assert not (root / "events.jsonl").exists()
