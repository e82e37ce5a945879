"""A run directory is data (issue 22), on the Python producer's side: what
it makes is never writable by others whatever the umask, its lock is its
owner's alone and a lock held by someone else than the run it names does
not keep the owner out, a stopped loop is recorded `stopped`, and values
the protocol cannot carry are refused before anything is written."""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import trainui
from runhelpers import check_run_dir, drop_command, events, find, rank_file, status
from trainui import control, protocol
from trainui.rundir import LineFile, write_atomically

U64_MAX = 2**64 - 1


def make_run(root: Path, **extra) -> trainui.Run:
    options = dict(
        max_steps=10**6,
        handle_signals=False,
        print_lines=False,
        settings={"train": {"log_steps": 1}, "eval": {"eval_steps": 0}},
    )
    options.update(extra)
    return trainui.Run(root, **options)


def gone_pid() -> int:
    """The pid of a process that has ended."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    assert not os.path.exists(f"/proc/{process.pid}")
    return process.pid


def held_exclusively(path: Path) -> bool:
    probe = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(probe)
    return False


# ---------------------------------------------------------------------------
# Item 6: nothing a run makes is group- or world-writable, whatever the umask


def test_nothing_a_run_makes_is_writable_by_others_under_umask_0(tmp_path):
    old = os.umask(0)
    try:
        root = tmp_path / "made" / "run"
        run = make_run(root, config={"lr": 0.1})
        run.start()
        for step in (1, 2):
            run.log_step(step, 1.0, 1e-3)
            run.boundary(step)
        run.eval_started(2, 1)
        run.sample(
            step=2,
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
            elapsed_secs=0.1,
            timeout_secs=60.0,
        )
        run.eval_finished(2)
        run.checkpoint(2, root / "checkpoints" / "checkpoint-2")
        control.write_abort_mark(root, 1, "stop")
        run.finish()
        control.send(root, "save")  # stays: the run has ended
        write_atomically(root / "extra.json", b"{}")
    finally:
        os.umask(old)
    made = [tmp_path / "made", *sorted(root.rglob("*"))]
    names = {str(p.relative_to(root)) for p in root.rglob("*")}
    for expected in (
        "config.json",
        "events.jsonl",
        "training_output.log",
        "lock",
        "status",
        "status/training_status.json",
        "control",
        "ranks",
        "ranks/rank-0.json",
        "ranks/rank-0.jsonl",
        "ranks/abort.json",
        "extra.json",
    ):
        assert expected in names, f"{expected} was not made: {sorted(names)}"
    assert [p for p in (root / "control").iterdir() if p.suffix == ".json"], "a command file"
    for path in made:
        mode = os.lstat(path).st_mode
        assert mode & 0o022 == 0, f"{path}: mode {oct(mode & 0o7777)} lets others write"
    assert os.lstat(root / "lock").st_mode & 0o777 == 0o600
    assert os.lstat(root / "control").st_mode & 0o777 == 0o700
    for command in (root / "control").iterdir():
        assert os.lstat(command).st_mode & 0o777 == 0o600, command
    for folder in (tmp_path / "made", root, root / "status", root / "ranks"):
        assert os.lstat(folder).st_mode & 0o777 == 0o755, folder
    for name in (
        "config.json",
        "events.jsonl",
        "training_output.log",
        "status/training_status.json",
        "ranks/rank-0.json",
        "ranks/rank-0.jsonl",
    ):
        assert os.lstat(root / name).st_mode & 0o777 == 0o644, name


def test_a_leftover_temporary_file_or_link_is_replaced_not_written_through(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("not yours\n")
    path = tmp_path / "status.json"
    temp = path.with_name(f"{path.name}.tmp.{os.getpid()}.{threading.get_ident()}")
    temp.symlink_to(target)
    old = os.umask(0)
    try:
        write_atomically(path, b'{"a": 1}')
    finally:
        os.umask(old)
    assert target.read_text() == "not yours\n", "a link left as the temporary file is followed"
    assert path.read_text() == '{"a": 1}\n' and not os.path.lexists(temp)
    assert path.stat().st_mode & 0o777 == 0o644


def test_a_log_file_others_could_write_is_made_the_owners(tmp_path):
    root = tmp_path / "run"
    root.mkdir()
    log = root / "training_output.log"
    log.write_text("an old line\n")
    log.chmod(0o666)
    run = make_run(root)
    run.finish()
    assert log.stat().st_mode & 0o777 == 0o644
    assert log.read_text().startswith("an old line\n")


@pytest.mark.parametrize("kind", ["link", "fifo", "folder"])
def test_a_log_file_that_is_no_file_of_the_run_is_refused(tmp_path, kind):
    root = tmp_path / "run"
    root.mkdir()
    log = root / "training_output.log"
    target = tmp_path / "elsewhere"
    target.write_text("")
    if kind == "link":
        log.symlink_to(target)
    elif kind == "fifo":
        os.mkfifo(log)
    else:
        log.mkdir()
    with pytest.raises(trainui.RunDirError, match=r"training_output\.log"):
        make_run(root)
    assert target.read_text() == "", "nothing written through a link"


def test_a_line_file_never_waits_on_a_fifo(tmp_path):
    fifo = tmp_path / "events.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(trainui.RunDirError, match="a FIFO"):
        LineFile(fifo)


# ---------------------------------------------------------------------------
# Item 7: the lock is the owner's alone, and liveness needs the named process


def test_the_lock_is_the_owners_alone(tmp_path):
    root = tmp_path / "run"
    root.mkdir()
    (root / "lock").write_text("")
    (root / "lock").chmod(0o644)  # a lock of an older trainui: others could flock it
    run = make_run(root)
    try:
        assert os.stat(root / "lock").st_mode & 0o777 == 0o600
        assert held_exclusively(root / "lock")
    finally:
        run.finish()
    fresh = tmp_path / "fresh"
    old = os.umask(0)
    try:
        make_run(fresh).finish()
    finally:
        os.umask(old)
    assert os.stat(fresh / "lock").st_mode & 0o777 == 0o600


@pytest.mark.parametrize("named", ["gone", "none"])
def test_a_lock_held_by_a_process_it_does_not_name_is_replaced(tmp_path, capfd, named):
    """A reader holds the lock shared (as `flock -s` on a 0644 lock could),
    or a stray child holds it, while the pid the lock names is gone: the
    owner's run starts, in a fresh lock, and says so once."""
    root = tmp_path / "run"
    root.mkdir()
    lock = root / "lock"
    pid = gone_pid()
    lock.write_text(f"{pid}\n" if named == "gone" else "")
    reader = os.open(lock, os.O_RDONLY)
    fcntl.flock(reader, fcntl.LOCK_SH)
    try:
        run = make_run(root)
        try:
            assert held_exclusively(lock), "the run holds its own lock"
            assert os.stat(lock).st_ino != os.fstat(reader).st_ino, "a fresh lock file"
            assert lock.read_text().strip() == str(os.getpid())
            assert os.stat(lock).st_mode & 0o777 == 0o600
            assert not [p for p in root.iterdir() if p.name.startswith(".lock")]
            err = capfd.readouterr().err
            assert f"held by process {os.getpid()}, not by the run it names" in err, err
            said = f"(pid {pid})" if named == "gone" else "(none)"
            assert said in err and err.count("fresh lock") == 1, err
        finally:
            run.finish()
        assert status(root)["state"] == "finished"
    finally:
        os.close(reader)


def test_a_lock_held_by_the_live_process_it_names_is_refused(tmp_path):
    root = tmp_path / "run"
    root.mkdir()
    lock = root / "lock"
    lock.write_text("")
    # Another process takes the lock and writes its pid, as a run does.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import fcntl, os, sys, time\n"
                f"fd = os.open({str(lock)!r}, os.O_RDWR)\n"
                "fcntl.flock(fd, fcntl.LOCK_EX)\n"
                "os.pwrite(fd, f'{os.getpid()}\\n'.encode(), 0)\n"
                "print('held', flush=True)\n"
                "time.sleep(60)\n"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(
            trainui.RunDirError, match=f"in use by the trainui process {holder.pid}"
        ):
            make_run(root)
    finally:
        holder.kill()
        holder.wait()
    assert not (root / "events.jsonl").exists()


@pytest.mark.parametrize(
    ("kind", "words"),
    [("link", "symbolic link"), ("fifo", "FIFO"), ("folder", "a folder"), ("socket", "a socket")],
)
def test_a_lock_that_is_no_regular_file_is_refused_at_once(tmp_path, kind, words):
    root = tmp_path / "run"
    root.mkdir()
    lock = root / "lock"
    target = tmp_path / "target"
    target.write_text("")
    sock = None
    if kind == "link":
        lock.symlink_to(target)
    elif kind == "fifo":
        os.mkfifo(lock)
    elif kind == "folder":
        lock.mkdir()
    else:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(lock))
    try:
        started = time.monotonic()
        with pytest.raises(trainui.RunDirError, match=words) as refused:
            make_run(root)
        assert time.monotonic() - started < 10
        assert str(lock) in str(refused.value)
        assert target.read_text() == "", "nothing written through a link"
        assert not (root / "events.jsonl").exists()
    finally:
        if sock is not None:
            sock.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user takes root")
def test_a_lock_of_another_user_is_refused(tmp_path):
    root = tmp_path / "run"
    root.mkdir()
    (root / "lock").write_text("")
    os.chown(root / "lock", 65534, 65534)
    with pytest.raises(trainui.RunDirError, match="belongs to user 65534"):
        make_run(root)
    assert os.stat(root / "lock").st_uid == 65534


# ---------------------------------------------------------------------------
# Item 10: a loop that ends with `break` on a stop is recorded `stopped`


def test_a_stop_command_then_break_is_recorded_stopped(tmp_path):
    root = tmp_path / "run"
    with make_run(root) as run:  # the README's loop
        run.start()
        for step in range(1, 2001):
            time.sleep(0.02)
            run.log_step(step, 1.0, 1e-3)
            if step == 3:
                drop_command(root, "stop")
            actions = run.boundary(step)
            if actions.stop:
                break
    assert actions.stop, "the stop was applied"
    last = events(root)[-1]
    assert last["type"] == "finished" and last["state"] == "stopped", last
    assert status(root)["state"] == "stopped"
    assert rank_file(root, 0)["state"] == "stopped"
    assert [e["state"] for e in find(events(root), type="state")][-1] == "stopping"
    assert "stopped at step" in (root / "training_output.log").read_text()
    check_run_dir(root)


def test_finish_after_a_stop_records_stopped_and_an_explicit_state_is_kept(tmp_path):
    run = make_run(tmp_path / "a")
    run.start()
    run.log_step(1, 1.0, 1e-3)
    drop_command(tmp_path / "a", "stop")
    for step in range(1, 2001):
        time.sleep(0.02)
        if run.boundary(step).stop:
            break
    run.finish()
    assert status(tmp_path / "a")["state"] == "stopped"
    plain = make_run(tmp_path / "b")
    plain.start()
    plain.finish()
    assert status(tmp_path / "b")["state"] == "finished"


# Runs in tmp_path, so that it imports the installed trainui (the current directory
# comes first on a `python -c` child's sys.path).
README_LOOP = """
import time
import trainui
with trainui.Run({root!r}, max_steps=100000, print_lines=False) as run:
    run.start()
    for step in range(1, 100001):
        time.sleep(0.02)
        run.log_step(step, 1.0, 1e-3)
        if step == 2:
            print("training", flush=True)
        actions = run.boundary(step)
        if actions.stop:
            break
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_then_break_is_recorded_stopped(tmp_path, signum):
    root = tmp_path / "run"
    script = README_LOOP.format(root=str(root))
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert process.stdout.readline().strip() == "training"
        process.send_signal(signum)
        assert process.wait(60) == 0, process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    last = events(root)[-1]
    assert last["type"] == "finished" and last["state"] == "stopped", last
    assert status(root)["state"] == "stopped"
    assert rank_file(root, 0)["state"] == "stopped"


# ---------------------------------------------------------------------------
# Item 12: values the protocol cannot carry are refused before anything is written


def _sample(**changed):
    values = dict(
        step=1,
        sample=1,
        of=1,
        example=0,
        origin="o",
        prompt="p",
        golden="g",
        output="g",
        golden_tokens=1,
        output_tokens=1,
        outcome="completed",
        elapsed_secs=0.1,
        timeout_secs=60.0,
    )
    values.update(changed)
    return values


def _started(**changed):
    values = dict(
        step=1,
        sample=1,
        of=1,
        example=0,
        origin="o",
        prompt="p",
        golden="g",
        golden_tokens=1,
        timeout_secs=60.0,
    )
    values.update(changed)
    return values


REFUSED = [
    ("log_step: step", lambda r: r.log_step(10**20, 1.0, 1e-3)),
    ("log_step: step", lambda r: r.log_step(2**64, 1.0, 1e-3)),
    ("log_step: step", lambda r: r.log_step(-1, 1.0, 1e-3)),
    ("log_step: step", lambda r: r.log_step(1.5, 1.0, 1e-3)),
    ("log_step: step", lambda r: r.log_step(float("nan"), 1.0, 1e-3)),
    ("log_step: step", lambda r: r.log_step(True, 1.0, 1e-3)),
    ("log_step: step", lambda r: r.log_step("3", 1.0, 1e-3)),
    ("log_step: tokens", lambda r: r.log_step(1, 1.0, 1e-3, tokens=-5)),
    ("log_step: tokens", lambda r: r.log_step(1, 1.0, 1e-3, tokens=2.5)),
    ("log_step: tokens", lambda r: r.log_step(1, 1.0, 1e-3, tokens=10**20)),
    ("log_step: learning_rate", lambda r: r.log_step(1, 1.0, float("nan"))),
    ("log_step: learning_rate", lambda r: r.log_step(1, 1.0, float("inf"))),
    ("log_step: learning_rate", lambda r: r.log_step(1, 1.0, "fast")),
    ("boundary: step", lambda r: r.boundary(10**20)),
    ("beat: step", lambda r: r.beat("training", -3)),
    ("eval_started: samples", lambda r: r.eval_started(1, 2**32)),
    ("val_loss: batches", lambda r: r.val_loss(1, 0.5, -1)),
    (
        "generation_started: timeout_secs",
        lambda r: r.generation_started(**_started(timeout_secs=float("nan"))),
    ),
    (
        "generation_started: golden_tokens",
        lambda r: r.generation_started(**_started(golden_tokens=-1)),
    ),
    (
        "generation_progress: tokens",
        lambda r: r.generation_progress(step=1, sample=1, text="x", tokens=-1, elapsed_secs=0.1),
    ),
    ("sample: output_tokens", lambda r: r.sample(**_sample(output_tokens=10**20))),
    ("sample: of", lambda r: r.sample(**_sample(of=2**32))),
    ("sample: elapsed_secs", lambda r: r.sample(**_sample(elapsed_secs=float("inf")))),
    ("eval_finished: step", lambda r: r.eval_finished(10**20)),
    ("checkpoint: step", lambda r: r.checkpoint(-1, "x")),
    ("start: vocab_size", lambda r: r.start(vocab_size=2**32)),
    ("start: parameters", lambda r: r.start(parameters=-1)),
    ("start: start_step", lambda r: r.start(start_step=10**20)),
]


def test_values_the_protocol_cannot_carry_are_refused_before_anything_is_written(tmp_path):
    root = tmp_path / "run"
    run = make_run(root, max_steps=10)
    run.start()
    run.log_step(1, 1.0, 1e-3)
    run.boundary(1)
    for name, call in REFUSED:
        run._writer.flush()
        before = (root / "events.jsonl").read_bytes(), status(root)
        step = run.step
        with pytest.raises(ValueError) as refused:  # noqa: PT011 - the message is checked below
            call(run)
        message = str(refused.value)
        assert message.startswith(name), (name, message)
        assert (
            "18446744073709551615" in message
            or "4294967295" in message
            or "finite number" in message
        ), message
        run._writer.flush()
        assert ((root / "events.jsonl").read_bytes(), status(root)) == before, name
        assert run.step == step, name
    # The run goes on and ends readable; the largest step the protocol holds is fine.
    run.log_step(2, 1.0, 1e-3, tokens=3)
    run.log_step(U64_MAX, 1.0, 1e-3)
    run.finish()
    check_run_dir(root)
    assert status(root)["current_step"] == U64_MAX


def test_a_tensor_learning_rate_that_is_not_finite_drops_its_window(tmp_path):
    torch = pytest.importorskip("torch")
    root = tmp_path / "run"
    run = make_run(root, max_steps=10, settings={"train": {"log_steps": 2}})
    run.start()
    run.log_step(1, 100.0, 1e-3)
    with pytest.raises(ValueError, match="log_step: learning_rate"):
        run.log_step(2, 100.0, torch.tensor(float("nan")))
    run.log_step(3, 1.0, 1e-3)
    run.log_step(4, 3.0, 1e-3)
    run.finish()
    steps = [e for e in events(root) if e["type"] == "step"]
    assert [(e["step"], e["loss"]) for e in steps] == [(4, 2.0)], "only the next window"


def test_a_run_of_more_steps_than_the_protocol_holds_is_refused(tmp_path):
    for bad in (10**20, -1, 2.5, float("inf")):
        with pytest.raises(
            ValueError, match="max_steps must be a whole number from 0 to 18446744073709551615"
        ):
            make_run(tmp_path / "run", max_steps=bad)
    assert not (tmp_path / "run").exists(), "nothing is written"
    run = make_run(tmp_path / "run", max_steps=10.0)  # a whole number, written as one
    run.finish()
    assert status(tmp_path / "run")["max_steps"] == 10


def test_whole_numbers_of_numpy_and_torch_pass():
    torch = pytest.importorskip("torch")
    assert protocol.whole_number("x", torch.tensor(7)) == 7
    assert protocol.whole_number("x", 7.0) == 7
    with pytest.raises(ValueError, match="x must be a whole number"):
        protocol.whole_number("x", torch.tensor(7.5))
    try:
        import numpy
    except ImportError:
        return
    assert protocol.whole_number("x", numpy.int64(9)) == 9
    assert protocol.whole_number("x", numpy.uint64(U64_MAX)) == U64_MAX
