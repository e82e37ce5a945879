"""The time left of a run, as both producers estimate it for their `step`
events (`eta_secs`), and when readers show it: crates/protocol/src/eta.rs,
held to the same answers by protocol/cases/eta.json.

A logging window's time counts only its training steps (pauses,
evaluations, saves and commands are left out). One window is too short to
be steady, so the estimate rests on the latest windows that add up to at
least SPAN_SECS of training, the process's first window (its warm-up) left
out once there is another; it is given only once it rests on MIN_SECS of
training. Until then a `step` event says `eta_secs` 0 with steps left, and
readers show no ETA.
"""

from __future__ import annotations

from collections import deque

#: Seconds of training, at least, that the estimate looks back over.
SPAN_SECS = 120.0
#: Fewest seconds of training the estimate rests on before it is given.
MIN_SECS = 5.0


class EtaEstimate:
    """The logging windows of a run (of this process) that the ETA rests on."""

    def __init__(self) -> None:
        self._first: tuple[int, float] | None = None
        self._recent: deque[tuple[int, float]] = deque()
        self._steps = 0
        self._secs = 0.0

    def window(self, steps: int, train_secs: float) -> None:
        """A logging window closed: `steps` steps in `train_secs` seconds of training."""
        if self._first is None:
            self._first = (int(steps), float(train_secs))
            return
        self._recent.append((int(steps), float(train_secs)))
        self._steps += int(steps)
        self._secs += float(train_secs)
        while len(self._recent) > 1 and self._secs - self._recent[0][1] >= SPAN_SECS:
            steps_out, secs_out = self._recent.popleft()
            self._steps -= steps_out
            self._secs -= secs_out

    def eta_secs(self, steps_left: int) -> float:
        """The seconds left for `steps_left` more steps, or 0 when there is no
        estimate yet (or no step left)."""
        if self._recent:
            steps, secs = self._steps, self._secs
        else:
            steps, secs = self._first or (0, 0.0)
        if steps_left <= 0 or steps == 0 or secs < MIN_SECS:
            return 0.0
        return secs / steps * steps_left


def shown_eta(step: int, max_steps: int, eta_secs: float) -> float | None:
    """The ETA a `step` event gives, as readers show it: None while the
    producer had no estimate yet (0 with steps left)."""
    return eta_secs if eta_secs != 0 or step >= max_steps else None
