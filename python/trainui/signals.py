"""How a Run obeys signals and aborts a generation: the signal handlers
(which only count), the rank-beat thread's tick that acts on the counts, the
abort flag the decoder checks before every step, and the abort mark through
which rank 0 tells the other ranks of an abort or a stop.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any, Callable

from . import control


class AbortFlag(threading.Event):
    """`Run.abort`: a threading.Event that the decoder checks before every
    step. Besides being set, it also reads as set while a stop is pending
    (the rest of an evaluation ends at once) and while a SIGUSR2 or stop
    signal has been caught but not yet handled (the signal handler only
    counts; the rank-beat thread raises the flag within a quarter second)."""

    def __init__(self, pending: Callable[[], bool]):
        super().__init__()
        self._pending = pending

    def is_set(self) -> bool:
        return super().is_set() or self._pending()

    isSet = is_set


class SignalHandling:
    """The signals and the abort of a `Run` (a part of it: its methods use
    the state that `Run.__init__` sets up: the signal counts, the abort flag
    and lock, the abort mark's sequence)."""

    #: The first stop signal (SIGINT, SIGTERM, SIGHUP) caught, by number.
    _stop_signal: int | None = None

    # The abort flag, the rank-beat thread's tick, the abort mark

    def _abort_pending(self) -> bool:
        """Whether the abort flag must read as raised though it is not set:
        a stop is pending, or a signal was caught that the beat thread has
        not handled yet."""
        return (
            self._stop_pending
            or self._caught_aborts != self._beat_seen_aborts
            or self._caught_stops != self._beat_seen_stops
        )

    def _abort_everywhere(self, command: str = "abort_generation") -> None:
        """An `abort_generation` or a `stop` arrived on rank 0 (spool or
        signal): raise the flag here at once, and tell the other ranks
        through the run directory. A stop keeps the flag raised (here and,
        through the mark, on every rank) until the run ends."""
        if command == "stop":
            self._stop_pending = True
        self.abort.set()
        if self.world_size > 1:
            with self._abort_lock:
                self._abort_seq += 1
                sequence = self._abort_seq
                # Once a stop is marked, every later mark says stop too.
                kind = "stop" if self._stop_pending else command
                control.write_abort_mark(self.root, sequence, kind)

    def _watch_abort_mark(self) -> None:
        """On ranks other than 0: apply a new abort mark of rank 0 (polled by
        the rank-beat thread). An abort ends only a generation that began
        before the mark was written; a stop ends every generation from now
        on."""
        mark = control.read_abort_mark(self.root)
        if mark is None or mark["seq"] <= self._abort_mark_seen:
            return
        self._abort_mark_seen = mark["seq"]
        if mark["command"] == "stop":
            self._stop_pending = True
            self.abort.set()
        elif self._generation_unix is None or self._generation_unix <= mark["unix"]:
            self.abort.set()

    def _on_beat_tick(self) -> None:
        """Four times a second on the rank-beat thread: what the signal
        handler counted (printing, raising the abort flag, telling the other
        ranks), then rank 0's abort mark."""
        stops = self._caught_stops
        if stops != self._beat_seen_stops:
            if self.is_main:
                self._abort_everywhere("stop")
            else:
                self._stop_pending = True
                self.abort.set()
            self._beat_seen_stops = stops
            try:
                sys.stderr.write(
                    "trainui: stopping after the current step (send the signal again to exit now)\n"
                )
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
        aborts = self._caught_aborts
        if aborts != self._beat_seen_aborts:
            if self.is_main:
                self._abort_everywhere("abort_generation")
            else:
                self.abort.set()
            self._beat_seen_aborts = aborts
        if not self.is_main and self.world_size > 1:
            self._watch_abort_mark()

    # The handlers

    def _install_signal_handlers(self) -> None:
        """SIGINT, SIGTERM and SIGHUP: stop after the current step (a second
        one exits at once with 128 + its number); SIGUSR1: evaluate now;
        SIGUSR2: abort the running generation. A SIGHUP ignored when the
        process started (`nohup`) stays ignored."""
        if threading.current_thread() is not threading.main_thread():
            return
        wanted = [signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2]
        if signal.getsignal(signal.SIGHUP) != signal.SIG_IGN:  # nohup leaves it ignored
            wanted.append(signal.SIGHUP)
        for number in wanted:
            try:
                self._previous_handlers[number] = signal.signal(number, self._on_signal)
            except (ValueError, OSError):
                pass

    def _restore_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for number, handler in self._previous_handlers.items():
            try:
                signal.signal(number, handler if handler is not None else signal.SIG_DFL)
            except (ValueError, OSError, TypeError):
                pass
        self._previous_handlers.clear()

    def _on_signal(self, number: int, _frame: Any) -> None:
        """Only counts: no lock, no Event, no buffered I/O (the main thread
        may be inside any of them). The rank-beat thread and the step
        boundary act on the counts. A second stop signal exits at once."""
        if number == signal.SIGUSR1:
            self._caught_evals += 1
        elif number == signal.SIGUSR2:
            self._caught_aborts += 1
        else:
            if self._stop_signal is None:
                self._stop_signal = number
            self._caught_stops += 1
            if self._caught_stops > 1:
                try:
                    os.write(2, b"trainui: second signal: exiting now\n")
                except OSError:
                    pass
                os._exit(128 + number)

    # The end

    def _ended_by_signal(self, state: str, event: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The state and end event of a process that ends after catching a
        stop signal (a launcher such as torchrun ending the ranks that are
        left when one failed, or an operator's SIGTERM): `stopped`, never
        `finished`, and its rank file names the signal. A failure stays a
        failure (the signal is named all the same), and a run that reached
        `max_steps` before the signal came finished all the same."""
        number = self._stop_signal
        if number is None:
            return state, event
        self._rank_beat.signal = signal.Signals(number).name
        if state == "finished" and self._step < self.max_steps:
            state = "stopped"
            if event.get("type") == "finished":
                event = {**event, "state": "stopped"}
        return state, event
