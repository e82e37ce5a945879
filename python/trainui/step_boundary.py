"""The step boundary of a Run: the commands of the spool and the signals
caught, agreed across ranks so that every rank applies them at the same
step, as `Trainer::handle_commands` does; and `Actions`, what the loop must
do after it (evaluate, save, stop).
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any

from . import protocol
from .protocol import whole_number

#: How often a paused run looks for commands.
PAUSE_POLL_SECS = 0.5
#: The answer to a command that arrived after the last step boundary.
ENDED_BEFORE_APPLIED = "the run ended before it could apply this"

#: Fewest seconds between two agreements of a multi-process job: with
#: shorter steps, ranks agree every few steps (see StepBoundary._gather).
AGREE_EVERY_SECS = 0.2

# Flags of the step-boundary agreement (one int64 each, combined by MAX);
# the last is the step of the agreement after the one that waits for it.
_RANK0_COMMANDS, _SIGNAL_STOP, _SIGNAL_EVAL, _SIGNAL_ABORT, _NEXT_AGREEMENT = range(5)


class Actions:
    """What the loop must do after a step boundary."""

    __slots__ = ("stop", "save", "eval", "settings", "commands", "paused")

    def __init__(self) -> None:
        self.stop = False
        self.save = False
        self.eval = False
        #: The run is still paused: boundary() returned only so that the loop
        #: saves or evaluates now (see `act_while_paused`); the loop calls
        #: boundary(step) again after it, which holds it until a resume.
        self.paused = False
        #: The changes (dotted keys to values) applied at this boundary, or None.
        self.settings: dict[str, Any] | None = None
        #: The commands applied at this boundary, as events name them.
        self.commands: list[Any] = []

    def __repr__(self) -> str:
        return (
            f"Actions(stop={self.stop}, save={self.save}, eval={self.eval}, "
            f"settings={self.settings}, commands={self.commands}, paused={self.paused})"
        )


class StepBoundary:
    """The step boundary of a `Run` (a part of it: its methods use the state
    that `Run.__init__` sets up: the command queue, the agreement and the
    one in flight, the signal counts seen at the last boundary)."""

    def boundary(self, step: int, act_while_paused: tuple[str, ...] = ()) -> Actions:
        """Call on every rank at every step boundary (after the step's
        log_step). Applies the signals caught and the commands queued, agreed
        across ranks, so that every rank applies them at this same step;
        while paused, blocks here (beating) until resume or stop. Says what
        the loop must do now: evaluate, save, stop.

        While paused, a `save` or `eval_now` waits for the resume (and its
        answer says so), unless `act_while_paused` names it (`"save"`,
        `"eval"`): then boundary() returns at once with `actions.paused`,
        the run still paused; the loop saves or evaluates and calls
        boundary(step) again, which holds it until the resume:

            actions = run.boundary(step, act_while_paused=("save", "eval"))
            while True:
                if actions.eval: evaluate(run, step)
                if actions.save: save(run, step)
                if actions.stop or not actions.paused: break
                actions = run.boundary(step, act_while_paused=("save", "eval"))
        """
        step = whole_number("boundary: step", step)
        self._step = step
        self._heartbeat.step = step
        # The step's time is training time; what is spent here is not.
        now = time.monotonic()
        self._window_train_secs += now - self._train_mark
        self._train_mark = now
        actions = Actions()
        # A pause holds across calls: every rank is back at this same step.
        paused = self._paused
        paused_before = paused
        while True:
            # A paused run agrees at every look: every rank is here, at
            # this step, until the agreed resume or stop.
            commands = self._gather(step, every=paused_before)
            for command in commands:
                if actions.stop:  # the run ends at this boundary
                    self._ack(command, step, ENDED_BEFORE_APPLIED)
                    continue
                paused = self._apply(command, step, paused, actions, act_while_paused)
            if not paused or actions.stop or self._done:  # done: finished elsewhere
                break
            if (actions.save and "save" in act_while_paused) or (
                actions.eval and "eval" in act_while_paused
            ):
                actions.paused = True
                break
            paused_before = True
            self.beat("paused", step)
            time.sleep(PAUSE_POLL_SECS)
            self.beat("paused", step)
        self._paused = paused and not actions.stop and not self._done
        self._train_mark = time.monotonic()
        if self._heartbeat.phase == "paused" and not actions.paused:
            self._phase("training")
        if actions.stop:
            actions.eval = False
            actions.save = True
            return actions
        eval_steps = self.settings["eval"]["eval_steps"]
        if eval_steps and step > 0 and step % eval_steps == 0 and self._last_eval_step != step:
            actions.eval = True
        save_steps = self.settings["checkpoint"]["save_steps"]
        if save_steps and step > 0 and step % save_steps == 0 and self._last_save_step != step:
            actions.save = True
        if actions.eval:
            self._last_eval_step = step
        if actions.save:
            self._last_save_step = step
        return actions

    def _gather(self, step: int, every: bool = False) -> list[Any]:
        """The commands to apply now, the same on every rank: rank 0's
        queued commands, then those of the signals any rank caught. Across
        ranks they are agreed one agreement late (see distributed.py), and
        ranks agree at every boundary only when steps are slower than
        AGREE_EVERY_SECS: with faster ones, every few steps, at steps that
        rank 0 chooses and the agreement itself carries, so every rank knows
        them (`every`: at this boundary whatever the schedule says)."""
        agreement = self._agreement
        if agreement is not None:
            self._time_boundary(step)
            if not every and self._next_agreement is not None and step < self._next_agreement:
                return []  # commands and signals wait for the next agreement
        queued: list[Any] = []
        if self.is_main:
            while self._commands:
                queued.append(self._commands.popleft())
        # Each count is read once and compared with the one seen at the
        # previous boundary: a signal caught meanwhile is never lost.
        caught = [self._caught_stops, self._caught_evals, self._caught_aborts]
        seen = self._boundary_seen
        flags = [
            1 if queued else 0,
            int(caught[0] != seen[0]),
            int(caught[1] != seen[1]),
            int(caught[2] != seen[2]),
        ]
        self._boundary_seen = caught
        if agreement is None:
            commands = queued
        else:
            pending, sent = self._inflight, self._inflight_commands
            agreed = [0] * (len(flags) + 1) if pending is None else agreement.result(pending)
            commands = []
            if agreed[_RANK0_COMMANDS]:
                commands, settings = agreement.from_rank0(
                    (sent, self.settings) if self.is_main else None
                )
                if not self.is_main:
                    self.settings = copy.deepcopy(settings)
            # The agreement begun now is waited for at `waited_at`; it tells
            # every rank the one after.
            waited_at = max(agreed[_NEXT_AGREEMENT], step + 1)
            self._next_agreement = waited_at
            after = waited_at + self._agreement_spacing() if self.is_main else 0
            self._inflight = agreement.start(flags + [after])
            self._inflight_commands = queued
            flags = agreed
        if flags[_SIGNAL_ABORT]:
            commands.append("abort_generation")
        if flags[_SIGNAL_EVAL]:
            commands.append("eval_now")
        if flags[_SIGNAL_STOP]:
            commands.append("stop")
        return commands

    def _time_boundary(self, step: int) -> None:
        """Rank 0's moving average of the seconds a step takes."""
        now = time.monotonic()
        last = self._boundary_clock
        self._boundary_clock = (step, now)
        if last is None or step <= last[0]:
            return
        secs = (now - last[1]) / (step - last[0])
        self._step_secs = secs if self._step_secs is None else 0.8 * self._step_secs + 0.2 * secs

    def _agreement_spacing(self) -> int:
        """Steps between two agreements: 1, or as many as make
        AGREE_EVERY_SECS when steps are faster (at most 100)."""
        if not self._step_secs:
            return 1
        return max(1, min(100, math.ceil(AGREE_EVERY_SECS / self._step_secs)))

    def _ack(self, command: Any, step: int, message: str) -> None:
        self._emit(
            {"type": "command_ack", "step": step, "command": command, "message": message}, rank=True
        )

    def _apply(
        self,
        command: Any,
        step: int,
        paused: bool,
        actions: Actions,
        act_while_paused: tuple[str, ...] = (),
    ) -> bool:
        """Applies one command as `Trainer::handle_commands` does; returns
        whether the run is paused after it. While paused, a save or an
        evaluation the loop cannot do now (not in `act_while_paused`) is
        answered with when it comes: at the resume."""
        held = f" when the run resumes (paused at step {step})"
        actions.commands.append(command)
        if command == "stop":
            self._stop_agreed = True
            self._stop_pending = True
            self.abort.set()
            self._ack(command, step, f"stopping at step {step}")
            self._set_state("stopping")
            actions.stop = True
        elif command == "pause":
            if paused:
                self._ack(command, step, "already paused")
            else:
                paused = True
                self._set_state("paused")
                self._ack(command, step, f"paused at step {step}")
        elif command == "resume":
            if paused:
                paused = False
                self._set_state("training")
                self._ack(command, step, f"resumed at step {step}")
            else:
                self._ack(command, step, "not paused")
        elif command == "eval_now":
            if paused and "eval" not in act_while_paused:
                self._ack(command, step, f"evaluating{held}")
            else:
                self._ack(command, step, f"evaluating at step {step}")
            actions.eval = True
        elif command == "save":
            if paused and "save" not in act_while_paused:
                self._ack(command, step, f"saving a checkpoint{held}")
            else:
                self._ack(command, step, f"saving a checkpoint at step {step}")
            actions.save = True
        elif command == "abort_generation":
            message = (
                "aborted the generation" if self._aborted_last else "no generation was running"
            )
            self._aborted_last = False
            if not self._stop_pending:
                self.abort.clear()
            self._ack(command, step, message)
        elif isinstance(command, dict) and "set" in command:
            changes = command["set"]
            try:
                result, applied = protocol.change_settings(self.settings, changes, "set")
            except protocol.SettingsError as err:
                message = f"rejected: {err}"
            else:
                if applied:
                    self.settings = result
                    self._heartbeat.stall_timeout = float(
                        result["watchdog"]["stall_timeout_seconds"]
                    )
                    self._emit(
                        {"type": "settings", "step": step, "settings": copy.deepcopy(result)},
                        rank=True,
                    )
                    actions.settings = {**(actions.settings or {}), **changes}
                    message = f"applied {', '.join(applied)}"
                else:
                    message = "no change"
            self._ack(command, step, message)
        return paused
