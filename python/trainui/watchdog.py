"""The heartbeat and the stall watchdog (crates/protocol/src/watchdog.rs): the training
thread beats at every step, validation batch and decoding step; a thread
notices when the beats stop, for causes no deadline can catch (a call that
never returns, a collective waiting for a dead rank)."""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Callable

from .protocol import STALL_EXIT_CODE

#: A nap that ends this much later than asked means the process was not
#: running meanwhile (SIGSTOP, a debugger, the machine asleep).
NOT_RUNNING_AFTER = 0.5


class Heartbeat:
    """What the training thread last did: plain attributes, set without a
    lock (each write is atomic under the GIL) and read by the watchdog and
    the rank-file thread."""

    __slots__ = ("last", "unix", "phase", "step", "state", "stall_timeout")

    def __init__(self, stall_timeout: float):
        self.last = time.monotonic()
        self.unix = time.time()
        self.phase = "starting"
        self.step = 0
        self.state = "starting"
        self.stall_timeout = float(stall_timeout)

    def beat(self, phase: str | None = None, step: int | None = None) -> None:
        self.last = time.monotonic()
        self.unix = time.time()
        if phase is not None:
            self.phase = phase
        if step is not None:
            self.step = step

    def silence(self) -> float:
        return time.monotonic() - self.last


class Watchdog:
    """Watches a heartbeat on its own thread until its phase is `done`.
    `on_stalled(step, phase, silent_secs, timeout_secs)` and
    `on_recovered(step, phase)` report; with `exit_on_stall`, the process
    then runs `before_exit` (which writes what must be written) and exits
    with 75."""

    def __init__(
        self,
        heartbeat: Heartbeat,
        on_stalled: Callable[[int, str, float, float], None],
        on_recovered: Callable[[int, str], None],
        exit_on_stall: bool,
        before_exit: Callable[[], None],
    ):
        self.heartbeat = heartbeat
        self._on_stalled = on_stalled
        self._on_recovered = on_recovered
        self._exit_on_stall = exit_on_stall
        self._before_exit = before_exit
        self._thread = threading.Thread(target=self._watch, name="trainui-watchdog", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        heartbeat = self.heartbeat
        stalled = False
        away = 0.0
        latest = heartbeat.last
        while True:
            timeout = heartbeat.stall_timeout
            nap = min(max(timeout / 10.0, 0.02), 0.25)
            slept = time.monotonic()
            time.sleep(nap)
            late = max(0.0, time.monotonic() - slept - nap)
            if heartbeat.last != latest:
                latest = heartbeat.last
                away = 0.0
            phase = heartbeat.phase
            if phase == "done":
                return
            silence = heartbeat.silence()
            if late > NOT_RUNNING_AFTER:
                away += min(late, silence)
            silence = max(0.0, silence - away)
            step = heartbeat.step
            if not stalled and silence > timeout:
                stalled = True
                self._on_stalled(step, phase, silence, timeout)
                if self._exit_on_stall:
                    self._exit()
            elif stalled and silence < timeout:
                stalled = False
                self._on_recovered(step, phase)

    def _exit(self) -> None:
        try:
            self._before_exit()
        finally:
            try:
                sys.stderr.write(
                    f"trainui: the run stalled; exiting with {STALL_EXIT_CODE} so that a "
                    "supervisor restarts it\n"
                )
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os._exit(STALL_EXIT_CODE)
