"""Alerts: the events a person wants to hear about without watching (a run
finished, stopped, failed, stalled or recovered, its timeout rate passed the
warning, its loss was not finite), told to `alerts.command`, a shell command
of the user's (mail, a chat webhook), as trainui's own runs tell it
(crates/monitor/src/alerts.rs).

```python
trainui.Run("runs/x", max_steps=1000,
            alerts={"command": "notify-send \\"$TRAINUI_ALERT_TITLE\\" \\"$TRAINUI_ALERT_BODY\\"",
                    "timeout_seconds": 10})
```

The command runs on rank 0 only, with `sh -c`, in a process group of its
own, on a thread of its own (one per alert), with the event's events.jsonl
line on stdin and in its environment `TRAINUI_ALERT` (the kind: finished,
stopped, failed, stalled, recovered, timeout_rate, non_finite),
`TRAINUI_ALERT_TITLE`, `TRAINUI_ALERT_BODY` and `TRAINUI_RUN_DIR`. After
`timeout_seconds` (10 by default) it is killed with its group. A command that
fails or runs too long becomes one `warning` event, and training goes on.

Under `trainui run --alerts-command ...` the launcher runs the command for
the job's events and sets `TRAINUI_ALERTS=launcher`: the package then runs
none of its own, so that nothing is alerted twice. (The terminal's bell and
notification come from the TUI, for every producer.)
"""

from __future__ import annotations

import difflib
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

from .protocol import MAX_SECONDS, PHASES, fixed, float_text, rust_display, serde_safe
from .rundir import fit_event

__all__ = [
    "ALERTS_ENV",
    "ALERT_KEYS",
    "Alert",
    "AlertCommand",
    "AlertsSettings",
    "DEFAULT_TIMEOUT_SECS",
    "LAUNCHER",
    "of",
    "settings_of",
]

#: Set by `trainui run` for the job: `launcher` when the launcher runs
#: `alerts.command` itself, and the job must not.
ALERTS_ENV = "TRAINUI_ALERTS"
LAUNCHER = "launcher"
#: Seconds the command may run, unless `alerts.timeout_seconds` says otherwise.
DEFAULT_TIMEOUT_SECS = 10.0
#: The keys `alerts` takes, as trainui's config (`AlertsConfig`).
ALERT_KEYS = ("command", "timeout_seconds")
#: The characters of stderr kept for a failure message.
STDERR_TAIL = 300
#: How long a failed command's stderr is waited for once it has exited (a
#: process it left in the background may hold it open).
STDERR_WAIT_SECS = 0.2

#: The event types that may raise an alert: a set lookup is all the
#: training thread pays for every other event.
ALERTING_TYPES = frozenset(("finished", "failed", "stalled", "recovered", "warning", "non_finite"))
#: The warning that alerts starts with this (as both producers word it).
TIMEOUT_RATE_PREFIX = "timeout rate "


@dataclass(frozen=True)
class Alert:
    """What an event tells: `kind` is `TRAINUI_ALERT`'s word, `title` reads
    `trainui: RUN finished`, `body` is one line of detail."""

    kind: str
    title: str
    body: str


def _number(value: Any) -> float:
    """A float_or_text value (a loss in an event) as a float."""
    return float(value)


def of(event: Mapping[str, Any], run_name: str) -> Alert | None:
    """The alert `event` raises, if any, worded as `alerts::of` words it
    (protocol/cases/alerts.json holds the cases both must answer alike)."""
    kind = event.get("type")
    if kind not in ALERTING_TYPES:
        return None
    if kind == "finished":
        kind = "finished" if event["state"] == "finished" else "stopped"
        loss = event.get("loss")
        loss_text = "" if loss is None else f", loss {fixed(_number(loss), 4)}"
        body = f"at step {int(event['step'])}/{int(event['max_steps'])}{loss_text}"
    elif kind == "failed":
        body = f"at step {int(event['step'])}: {event['message']}"
    elif kind == "stalled":
        body = (
            f"no progress for {fixed(float(event['silent_secs']), 0)}s at step "
            f"{int(event['step'])} ({PHASES[event['phase']]})"
        )
    elif kind == "recovered":
        body = f"progress again at step {int(event['step'])} ({PHASES[event['phase']]})"
    elif kind == "warning":
        message = str(event["message"])
        if not message.startswith(TIMEOUT_RATE_PREFIX):
            return None
        kind, body = "timeout_rate", message
    else:  # non_finite
        loss = event["loss"]
        body = f"loss {float_text(loss)} at step {int(event['step'])} ({event['action']})"
    what = {"timeout_rate": "timeout rate", "non_finite": "non-finite loss"}.get(kind, kind)
    return Alert(kind, f"trainui: {run_name} {what}", body)


# ---------------------------------------------------------------------------
# The settings


@dataclass(frozen=True)
class AlertsSettings:
    """`alerts` checked: the command (None: none) and its time limit."""

    command: str | None = None
    timeout_seconds: float = DEFAULT_TIMEOUT_SECS


def settings_of(alerts: Mapping[str, Any] | None) -> AlertsSettings:
    """`alerts={"command": ..., "timeout_seconds": ...}` checked as trainui
    checks its config's `alerts` section: a ValueError names the key and
    the fix."""
    if alerts is None:
        return AlertsSettings()
    example = '{"command": "notify-send \\"$TRAINUI_ALERT_TITLE\\"", "timeout_seconds": 10}'
    if not isinstance(alerts, Mapping):
        raise ValueError(
            f"alerts must be a dict such as {example} (got {type(alerts).__name__} {alerts!r})"
        )
    for key in alerts:
        if key not in ALERT_KEYS:
            near = difflib.get_close_matches(str(key), ALERT_KEYS, n=1)
            hint = f'did you mean "{near[0]}"? ' if near else ""
            raise ValueError(
                f"alerts: unknown key {str(key)!r}: {hint}the keys are {', '.join(ALERT_KEYS)}"
            )
    command = alerts.get("command")
    if command is not None:
        if not isinstance(command, str):
            raise ValueError(
                "alerts.command must be a shell command as text, or None for none "
                f"(got {type(command).__name__} {command!r})"
            )
        if not command.strip():
            raise ValueError("alerts.command is empty: give a shell command, or None for none")
    timeout = alerts.get("timeout_seconds", DEFAULT_TIMEOUT_SECS)
    number = (
        float(timeout)
        if isinstance(timeout, (int, float)) and not isinstance(timeout, bool)
        else math.nan
    )
    if not (math.isfinite(number) and 0 < number <= MAX_SECONDS):
        raise ValueError(
            "alerts.timeout_seconds: must be a number of seconds greater than 0 and at most "
            f"{int(MAX_SECONDS)} (one year) (got {timeout!r})"
        )
    return AlertsSettings(command, number)


def launcher_alerts() -> bool:
    """Whether `trainui run` runs the alert command for this job
    (`TRAINUI_ALERTS=launcher`)."""
    return os.environ.get(ALERTS_ENV) == LAUNCHER


# ---------------------------------------------------------------------------
# The command


class AlertCommand:
    """`alerts.command`, started once per alert on a thread of its own.
    `warn(message)` is told each failure, from that thread."""

    def __init__(
        self,
        command: str,
        timeout: float,
        run_dir: str | os.PathLike,
        run_name: str,
        warn: Callable[[str], None],
    ):
        self.command = command
        self.timeout = float(timeout)
        self.run_dir = os.fspath(run_dir)
        self.run_name = run_name
        self._warn = warn
        self._running: list[threading.Thread] = []
        self._lock = threading.Lock()

    def consider(self, event: Mapping[str, Any]) -> None:
        """Starts the command when `event` raises an alert; returns at once.
        Never raises: whatever goes wrong becomes a warning."""
        if event.get("type") not in ALERTING_TYPES:
            return
        try:
            alert = of(event, self.run_name)
            if alert is None:
                return
            self.start(alert, event, time.time())
        except Exception as err:  # noqa: BLE001 - an alert never stops training
            self._tell(f"alerts.command could not be started: {type(err).__name__}: {err}")

    def start(self, alert: Alert, event: Mapping[str, Any], unix: float) -> None:
        """Runs the command for `alert` on a new thread, the event's
        events.jsonl line (as written at `unix`) on its stdin."""
        thread = threading.Thread(
            target=self._run, args=(alert, event, unix), name="trainui-alerts-command", daemon=True
        )
        with self._lock:
            self._running = [running for running in self._running if running.is_alive()]
            self._running.append(thread)
        thread.start()

    def settle(self, timeout: float | None = None) -> bool:
        """Waits for the commands still running (each ends by its time
        limit), at most `timeout` seconds in all (None: the time limit and a
        little more); whether they all ended."""
        deadline = time.monotonic() + (self.timeout + 5.0 if timeout is None else timeout)
        with self._lock:
            running = list(self._running)
        for thread in running:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in running)

    # On the command's thread.

    def _run(self, alert: Alert, event: Mapping[str, Any], unix: float) -> None:
        try:
            line = fit_event(serde_safe(dict(event)), unix)[1] + b"\n"
            problem = run(self.command, self._environment(alert), line, self.timeout)
        except Exception as err:  # noqa: BLE001 - said as a warning, like any failure
            problem = f"could not start: {type(err).__name__}: {err}"
        if problem is not None:
            self._tell(
                f"alerts.command `{self.command}` ({alert.kind}) {problem}; training goes on"
            )

    def _environment(self, alert: Alert) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            TRAINUI_ALERT=alert.kind,
            TRAINUI_ALERT_TITLE=alert.title,
            TRAINUI_ALERT_BODY=alert.body,
            TRAINUI_RUN_DIR=self.run_dir,
        )
        return env

    def _tell(self, message: str) -> None:
        try:
            self._warn(message)
        except Exception:  # noqa: BLE001 - a warning that cannot be written is lost
            pass


def run(command: str, env: dict[str, str], line: bytes, timeout: float) -> str | None:
    """Runs `command` (`sh -c`, a process group of its own) with `line` on
    stdin until it exits or `timeout` seconds pass (then its group is
    killed). None when it succeeded, else why not."""
    group = {"process_group": 0} if sys.version_info >= (3, 11) else {"start_new_session": True}
    try:
        process = subprocess.Popen(
            ["sh", "-c", command],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            **group,
        )
    except OSError as err:
        return f"could not start: {err}"
    # stdin and stderr each on a thread of their own: a command that does
    # not read its input, or leaves a process behind holding stderr, never
    # holds the time limit up.
    threading.Thread(target=_feed, args=(process.stdin, line), daemon=True).start()
    said = bytearray()
    reader = threading.Thread(target=_drain, args=(process.stderr, said), daemon=True)
    reader.start()
    try:
        code = process.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except OSError:
            pass
        process.kill()
        process.wait()
        return f"ran past its {rust_display(timeout)}s limit and was killed"
    if code == 0:
        return None
    reader.join(STDERR_WAIT_SECS)
    text = bytes(said).decode("utf-8", "replace").strip()
    tail = text[-STDERR_TAIL:] if text else ""
    return f"failed ({exit_status(code)}){': ' + tail if tail else ''}"


def exit_status(code: int) -> str:
    """A return code as Rust's ExitStatus says it: `exit status: 3`,
    `signal: 9 (SIGKILL)`."""
    if code >= 0:
        return f"exit status: {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        return f"signal: {-code}"
    return f"signal: {-code} ({name})"


def _feed(stdin: Any, line: bytes) -> None:
    try:
        stdin.write(line)
    except (OSError, ValueError):
        pass  # a command that does not read its input may exit first
    finally:
        try:
            stdin.close()
        except (OSError, ValueError):
            pass


def _drain(stderr: Any, said: bytearray) -> None:
    """Reads stderr to its end, keeping only its tail."""
    try:
        while True:
            chunk = stderr.read(4096)
            if not chunk:
                break
            said += chunk
            del said[: -4 * STDERR_TAIL]
    except (OSError, ValueError):
        pass
    finally:
        try:
            stderr.close()
        except (OSError, ValueError):
            pass
