"""`alerts.command` in the Python package: a shell command run on rank 0 for
the events a person wants to hear about (finished, stopped, failed, stalled,
recovered, the timeout-rate warning, a non-finite loss), off the training
thread, killed at its time limit, its failures told as warnings; quiet when
`trainui run` runs the command itself (TRAINUI_ALERTS=launcher). The words
of each alert are the golden cases' (test_conformance.py)."""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

import trainui
from runhelpers import check_run_dir, events, find, trainui_program, wait_for
from trainui import alerts, protocol

#: Writes what each alert hands the command into DIR/KIND.env (the kind,
#: title, body and run directory, a line each) and DIR/KIND.stdin.
RECORDER = (
    'cat > {dir}/"$TRAINUI_ALERT".stdin.part && '
    'mv {dir}/"$TRAINUI_ALERT".stdin.part {dir}/"$TRAINUI_ALERT".stdin && '
    'printf "%s\\n%s\\n%s\\n%s\\n" "$TRAINUI_ALERT" "$TRAINUI_ALERT_TITLE" '
    '"$TRAINUI_ALERT_BODY" "$TRAINUI_RUN_DIR" > {dir}/"$TRAINUI_ALERT".part && '
    'mv {dir}/"$TRAINUI_ALERT".part {dir}/"$TRAINUI_ALERT".env'
)


def recorder(folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    return RECORDER.format(dir=shlex.quote(str(folder)))


def told(folder: Path, kind: str) -> dict | None:
    """What the command was told for the alert `kind`, once it has written it all."""
    env = folder / f"{kind}.env"
    if not env.exists():
        return None
    name, title, body, run_dir = env.read_text().split("\n")[:4]
    stdin = (folder / f"{kind}.stdin").read_bytes()
    return {"kind": name, "title": title, "body": body, "run_dir": run_dir, "stdin": stdin}


def kinds_told(folder: Path) -> list[str]:
    return sorted(path.name[: -len(".env")] for path in folder.glob("*.env"))


def make_run(root: Path, **extra) -> trainui.Run:
    options = dict(
        max_steps=4,
        run_name="mlp",
        handle_signals=False,
        print_lines=False,
        settings={"train": {"log_steps": 2}},
    )
    options.update(extra)
    return trainui.Run(root, **options)


@pytest.fixture(autouse=True)
def _not_under_the_launcher(monkeypatch):
    # The tests run the package's own command unless they say otherwise.
    monkeypatch.delenv(alerts.ALERTS_ENV, raising=False)


def _without_time(line: dict) -> dict:
    return {key: value for key, value in line.items() if key != "time"}


def _check_stdin(told_stdin: bytes, root: Path, kind: str, **fields) -> None:
    """The command's stdin is the event's events.jsonl line (its time aside)."""
    assert told_stdin.endswith(b"\n") and told_stdin.count(b"\n") == 1, told_stdin
    given = json.loads(told_stdin)
    written = find(events(root), type=kind, **fields)
    assert len(written) == 1, written
    assert _without_time(given) == _without_time(written[0])
    assert given["v"] == protocol.SCHEMA_VERSION


# ---------------------------------------------------------------------------
# A plain loop's alerts


def test_a_plain_loop_that_finishes_tells_the_command_what_happened(tmp_path):
    root, out = tmp_path / "run", tmp_path / "told"
    run = make_run(root, alerts={"command": recorder(out)})
    run.start()
    for step, loss in enumerate([2.0, 1.5, 1.0, 0.5], start=1):
        run.log_step(step, loss, 1e-3)
        run.boundary(step)
    run.finish()
    # finish() hears the command out before it returns.
    finished = told(out, "finished")
    assert finished is not None, kinds_told(out)
    assert finished["title"] == "trainui: mlp finished"
    assert finished["body"] == "at step 4/4, loss 0.7500"  # the last window's mean
    assert finished["run_dir"] == str(root)
    _check_stdin(finished["stdin"], root, "finished", state="finished")
    assert kinds_told(out) == ["finished"]  # steps, states... alert nobody
    assert not find(events(root), type="warning")
    check_run_dir(root)


def test_a_failed_run_tells_the_command_its_error(tmp_path):
    root, out = tmp_path / "run", tmp_path / "told"

    def train() -> None:
        with make_run(root, alerts={"command": recorder(out)}) as run:
            run.start()
            for step in (1, 2, 3):
                run.log_step(step, 1.0, 1e-3)
            raise RuntimeError("CUDA out of memory")

    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        train()
    failed = told(out, "failed")
    assert failed is not None, kinds_told(out)
    assert (failed["kind"], failed["title"]) == ("failed", "trainui: mlp failed")
    assert failed["body"] == "at step 3: RuntimeError: CUDA out of memory"
    _check_stdin(failed["stdin"], root, "failed")


def test_a_stop_is_told_as_stopped(tmp_path):
    root, out = tmp_path / "run", tmp_path / "told"
    run = make_run(root, max_steps=100, alerts={"command": recorder(out)})
    run.start()
    run.log_step(1, 3.0, 1e-3)
    run.log_step(2, 2.0, 1e-3)
    run.finish("stopped")
    stopped = told(out, "stopped")
    assert stopped is not None, kinds_told(out)
    assert (stopped["title"], stopped["body"]) == (
        "trainui: mlp stopped",
        "at step 2/100, loss 2.5000",
    )


@pytest.mark.slow  # waits seconds on the clock
def test_a_stall_and_the_recovery_are_told(tmp_path):
    root, out = tmp_path / "run", tmp_path / "told"
    run = make_run(
        root,
        max_steps=100,
        settings={"watchdog": {"stall_timeout_seconds": 1}},
        alerts={"command": recorder(out)},
    )
    run.start()
    run.beat("generating", 7)
    stalled = wait_for(lambda: told(out, "stalled"), 30, "the stall's command")
    assert stalled["title"] == "trainui: mlp stalled"
    event = find(events(root), type="stalled")[0]
    assert stalled["body"] == (
        f"no progress for {protocol.fixed(event['silent_secs'], 0)}s at step 7 (generating)"
    )
    _check_stdin(stalled["stdin"], root, "stalled")
    run.beat("training", 7)
    recovered = wait_for(lambda: told(out, "recovered"), 30, "the recovery's command")
    assert (recovered["title"], recovered["body"]) == (
        "trainui: mlp recovered",
        "progress again at step 7 (training)",
    )
    run.finish()
    assert kinds_told(out) == ["finished", "recovered", "stalled"]


def test_a_loss_that_is_not_finite_is_told(tmp_path):
    root, out = tmp_path / "run", tmp_path / "told"
    run = make_run(root, max_steps=10, alerts={"command": recorder(out)})
    run.start()
    run.log_step(1, 1.0, 1e-3)
    run.log_step(2, math.nan, 1e-3)
    non_finite = wait_for(lambda: told(out, "non_finite"), 30, "the command")
    assert (non_finite["title"], non_finite["body"]) == (
        "trainui: mlp non-finite loss",
        "loss NaN at step 2 (warn)",
    )
    run.finish()


STALLING = """
import time
import trainui
run = trainui.Run({root!r}, max_steps=100, on_stall="exit", run_name="job",
                  settings={{"watchdog": {{"stall_timeout_seconds": 1}}}},
                  alerts={{"command": {command!r}}})
run.start()
run.log_step(1, 2.0, 1e-3)
run.boundary(1)
time.sleep(60)  # a call that never returns
"""


@pytest.mark.slow  # waits seconds on the clock
def test_a_job_that_exits_on_a_stall_hears_its_command_out_first(tmp_path):
    root, out = tmp_path / "run", tmp_path / "told"
    # The command takes a while: the job must not exit before it is done.
    command = "sleep 1; " + recorder(out)
    done = subprocess.run(
        [sys.executable, "-c", STALLING.format(root=str(root), command=command)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == protocol.STALL_EXIT_CODE, done.stderr
    stalled = told(out, "stalled")
    assert stalled is not None, (kinds_told(out), done.stderr)
    assert stalled["title"] == "trainui: job stalled"
    assert stalled["body"].endswith("at step 1 (training)"), stalled


# ---------------------------------------------------------------------------
# A command that fails or hangs never holds training up


def _process_gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")  # ended, not yet reaped


@pytest.mark.slow  # waits seconds on the clock
def test_a_command_that_hangs_is_killed_at_its_limit_and_training_goes_on(tmp_path):
    root, pids = tmp_path / "run", tmp_path / "pids"
    pids.mkdir()
    # It leaves a child behind too: the limit ends its whole process group.
    hang = f"sleep 300 & echo $! > {shlex.quote(str(pids))}/$TRAINUI_ALERT; wait"
    run = make_run(
        root,
        max_steps=400,
        settings={"train": {"log_steps": 1}},
        alerts={"command": hang, "timeout_seconds": 1},
    )
    run.start()
    run.log_step(1, 1.0, 1e-3)
    slowest = 0.0
    started = time.monotonic()
    step = 1
    # Steps go on at their pace while the command hangs, past its limit.
    run.log_step(2, math.inf, 1e-3)
    while step < 300 and not find(events(root), type="warning"):
        step += 1
        before = time.monotonic()
        run.log_step(step + 1, 1.0, 1e-3)
        run.boundary(step + 1)
        slowest = max(slowest, time.monotonic() - before)
        time.sleep(0.02)
    assert slowest < 0.5, f"a step took {slowest:.2f}s while the command hung"
    warnings = find(events(root), type="warning")
    assert len(warnings) == 1, warnings
    assert warnings[0]["message"] == (
        f"alerts.command `{hang}` (non_finite) ran past its 1s limit and was killed; "
        "training goes on"
    )
    assert time.monotonic() - started < 30
    child = int(wait_for(lambda: (pids / "non_finite").read_text().strip(), 10, "the pid"))
    wait_for(lambda: _process_gone(child), 10, "the command's own child to be killed")
    run.finish()
    # The run's end raised one more, which hung as well: one warning each.
    messages = [w["message"] for w in find(events(root), type="warning")]
    assert len(messages) == 2 and "(finished) ran past its 1s limit" in messages[1], messages
    check_run_dir(root)


def test_a_command_that_fails_is_one_warning_with_what_it_said(tmp_path):
    root = tmp_path / "run"
    command = "echo no webhook configured >&2; exit 3"
    run = make_run(root, alerts={"command": command})
    run.start()
    for step in range(1, 5):
        run.log_step(step, 1.0, 1e-3)
    run.finish()
    warnings = find(events(root), type="warning")
    assert [w["message"] for w in warnings] == [
        (
            f"alerts.command `{command}` (finished) failed (exit status: 3): "
            "no webhook configured; training goes on"
        )
    ]
    assert warnings[0]["step"] == 4
    check_run_dir(root)


# ---------------------------------------------------------------------------
# Under `trainui run --alerts-command`, the launcher alerts, not the job


def test_under_the_launchers_alerts_the_package_runs_no_command(tmp_path, monkeypatch):
    root, out = tmp_path / "run", tmp_path / "told"
    monkeypatch.setenv(alerts.ALERTS_ENV, alerts.LAUNCHER)
    run = make_run(root, alerts={"command": recorder(out)})
    run.start()
    for step in range(1, 5):
        run.log_step(step, 1.0, 1e-3)
    run.finish()
    time.sleep(0.5)
    assert kinds_told(out) == [], "the launcher runs the command; the job must not"
    assert find(events(root), type="finished")
    # Anything else in the variable leaves the job's own command on.
    monkeypatch.setenv(alerts.ALERTS_ENV, "")
    other, out = tmp_path / "other", tmp_path / "told-other"
    run = make_run(other, alerts={"command": recorder(out)})
    run.start()
    run.finish()
    assert kinds_told(out) == ["finished"]


JOB = """
import trainui
with trainui.Run(max_steps=4, run_name="job", alerts={{"command": {command!r}}}) as run:
    run.start()
    for step in range(1, 5):
        run.log_step(step, 1.0, 1e-3)
        run.boundary(step)
"""


@pytest.mark.slow
def test_under_trainui_run_with_an_alerts_command_only_trainui_alerts(tmp_path):
    program = trainui_program()
    if not program.is_file():
        pytest.skip(f"{program} is not built (cargo build --release -p trainui)")
    root, by_trainui, by_job = tmp_path / "run", tmp_path / "trainui", tmp_path / "job"
    job = tmp_path / "job.py"
    job.write_text(JOB.format(command=recorder(by_job)))
    done = subprocess.run(
        [str(program), "run", "--no-tui", "--run-dir", str(root), "--alerts-command"]
        + [recorder(by_trainui), "--", sys.executable, str(job)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    finished = told(by_trainui, "finished")
    assert finished is not None, (kinds_told(by_trainui), done.stderr[-2000:])
    assert finished["title"] == "trainui: job finished"
    assert kinds_told(by_job) == [], "the job's own command ran too: the alert came twice"


# ---------------------------------------------------------------------------
# The settings, checked as trainui checks its config's `alerts`


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ({"comand": "true"}, "alerts: unknown key 'comand': did you mean \"command\"?"),
        ({"webhook": "x"}, "alerts: unknown key 'webhook': the keys are command, timeout_seconds"),
        ({"command": "  "}, "alerts.command is empty: give a shell command, or None for none"),
        ({"command": ["notify-send", "x"]}, "alerts.command must be a shell command as text"),
        ({"command": "true", "timeout_seconds": 0}, "alerts.timeout_seconds: must be a number"),
        ({"command": "true", "timeout_seconds": -1}, "greater than 0 and at most 31536000"),
        ({"command": "true", "timeout_seconds": math.nan}, "alerts.timeout_seconds"),
        ({"command": "true", "timeout_seconds": 1e30}, "(one year) (got 1e+30)"),
        ({"command": "true", "timeout_seconds": "10"}, "(got '10')"),
        ({"command": "true", "timeout_seconds": True}, "(got True)"),
        ("notify-send done", 'alerts must be a dict such as {"command": '),
    ],
)
def test_bad_alert_settings_are_refused_naming_the_key(tmp_path, given, said):
    with pytest.raises(ValueError, match="alerts") as raised:
        make_run(tmp_path / "run", alerts=given)
    assert said in str(raised.value)
    assert not (tmp_path / "run").exists(), "refused before anything is written"


def test_good_alert_settings_are_taken():
    assert alerts.settings_of(None) == alerts.AlertsSettings(None, 10.0)
    assert alerts.settings_of({}) == alerts.AlertsSettings(None, 10.0)
    assert alerts.settings_of({"command": "true", "timeout_seconds": 2}) == (
        alerts.AlertsSettings("true", 2.0)
    )
    assert alerts.settings_of({"command": None, "timeout_seconds": 0.5}).timeout_seconds == 0.5


# ---------------------------------------------------------------------------
# The integrations pass `alerts` on


def test_the_accelerate_tracker_passes_alerts_on(tmp_path):
    pytest.importorskip("accelerate")
    from trainui.accelerate import TrainuiTracker

    with pytest.raises(ValueError, match="alerts: unknown key 'comand'"):
        TrainuiTracker(tmp_path / "bad", max_steps=2, alerts={"comand": "true"})
    root, out = tmp_path / "run", tmp_path / "told"
    tracker = TrainuiTracker(
        root,
        max_steps=2,
        run_name="accel",
        device="cpu",
        print_lines=False,
        alerts={"command": recorder(out)},
    )
    tracker.store_init_configuration({"lr": 0.1})
    for step in (1, 2):
        tracker.log({"loss": 1.0, "lr": 0.1}, step=step)
        tracker.boundary(step)
    tracker.finish()
    finished = told(out, "finished")
    assert finished is not None, kinds_told(out)
    assert (finished["title"], finished["body"]) == (
        "trainui: accel finished",
        "at step 2/2, loss 1.0000",
    )


TRAINER = """
import torch
from transformers import Trainer, TrainingArguments
from trainui.hf import TrainuiCallback

class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Linear(1, 1)
    def forward(self, x, labels):
        return {{"loss": torch.nn.functional.mse_loss(self.w(x), labels)}}

data = [{{"x": torch.tensor([float(i)]), "labels": torch.tensor([2.0 * i])}} for i in range(8)]
args = TrainingArguments(output_dir={output!r}, max_steps=3, per_device_train_batch_size=4,
                         logging_steps=1, save_strategy="no", report_to=[], use_cpu=True,
                         disable_tqdm=True)
callback = TrainuiCallback({root!r}, run_name="hf", alerts={{"command": {command!r}}})
Trainer(model=Tiny(), args=args, train_dataset=data, callbacks=[callback]).train()
"""


@pytest.mark.slow
def test_the_trainer_callback_passes_alerts_on(tmp_path):
    pytest.importorskip("transformers")
    root, out = tmp_path / "run", tmp_path / "told"
    script = TRAINER.format(output=str(tmp_path / "out"), root=str(root), command=recorder(out))
    env = {k: v for k, v in os.environ.items() if k != alerts.ALERTS_ENV}
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    finished = told(out, "finished")
    assert finished is not None, (kinds_told(out), done.stderr[-3000:])
    assert finished["title"] == "trainui: hf finished"
    assert finished["body"].startswith("at step 3/3, loss "), finished
    _check_stdin(finished["stdin"], root, "finished")
