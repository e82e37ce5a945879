"""The run handle a PyTorch training loop holds: it writes the run directory
as `trainui train` does and obeys the same commands, agreed across ranks.

```python
with trainui.Run("runs/x", max_steps=1000) as run:
    run.start(device="cpu", parameters=n)
    for step in range(1, 1001):
        loss = train_one_step()
        run.log_step(step, loss, lr)
        actions = run.boundary(step)          # on every rank, every step
        if actions.eval: evaluate(run, step)
        if actions.save: save(run, step)
        if actions.stop: run.finish("stopped"); break
```

An evaluation's generations check `run.abort` before every decoding step:
it is raised by `abort_generation` (ctl abort, SIGUSR2) for the running
generation, and by a stop (ctl stop, SIGTERM...) for every generation until
the run ends, on every rank. `run.stop_requested` is the stop agreed at a
boundary, the same on every rank.
"""

from __future__ import annotations

import copy
import json
import math
import os
import signal
import stat
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

from . import control, distributed, protocol
from .protocol import finite_number, float_or_text, whole_number
from .rundir import (
    MAX_EVENT_LINE,
    LineFile,
    RankBeat,
    RunDirError,
    RunFiles,
    Writer,
    check_fresh,
    make_dirs,
    release_lock,
    take_lock,
)
from .watchdog import Heartbeat, Watchdog

#: Environment variable naming the run directory when none is given.
RUN_DIR_ENV = "TRAINUI_RUN_DIR"
#: How often a paused run looks for commands.
PAUSE_POLL_SECS = 0.5
#: Fewest seconds between two `generation_progress` events.
PROGRESS_INTERVAL = 0.25

#: Most seconds finish() and fail() spend writing what is left (and the
#: final rank file), beyond the wait for the last agreement.
FINISH_SECS = 10.0
#: Most seconds finish() waits for the agreement begun at the last boundary.
FINISH_AGREEMENT_SECS = 20.0
#: The answer to a command that arrived after the last step boundary.
ENDED_BEFORE_APPLIED = "the run ended before it could apply this"

#: Fewest seconds between two agreements of a multi-process job: with
#: shorter steps, ranks agree every few steps (see Run._gather).
AGREE_EVERY_SECS = 0.2

# Flags of the step-boundary agreement (one int64 each, combined by MAX);
# the last is the step of the agreement after the one that waits for it.
_RANK0_COMMANDS, _SIGNAL_STOP, _SIGNAL_EVAL, _SIGNAL_ABORT, _NEXT_AGREEMENT = range(5)


class Actions:
    """What the loop must do after a step boundary."""

    __slots__ = ("stop", "save", "eval", "settings", "commands")

    def __init__(self) -> None:
        self.stop = False
        self.save = False
        self.eval = False
        #: The changes (dotted keys to values) applied at this boundary, or None.
        self.settings: dict[str, Any] | None = None
        #: The commands applied at this boundary, as events name them.
        self.commands: list[Any] = []

    def __repr__(self) -> str:
        return (
            f"Actions(stop={self.stop}, save={self.save}, eval={self.eval}, "
            f"settings={self.settings}, commands={self.commands})"
        )


def _outcome(outcome: Any) -> dict[str, Any]:
    """`"completed"`, `("error", message)` or an outcome dict, as events
    write it."""
    if isinstance(outcome, dict):
        kind = outcome.get("kind")
        message = outcome.get("message", "")
    elif isinstance(outcome, (tuple, list)):
        kind = outcome[0]
        message = str(outcome[1]) if len(outcome) > 1 else ""
    else:
        kind, message = outcome, ""
    if kind not in protocol.OUTCOMES:
        raise ValueError(
            f"unknown generation outcome {outcome!r}; expected one of "
            f"{', '.join(protocol.OUTCOMES)} or ('error', message)"
        )
    return {"kind": "error", "message": message} if kind == "error" else {"kind": kind}


def _count(counters: dict[str, int], kind: str) -> None:
    counters["generations"] += 1
    counters[
        {
            "completed": "completed",
            "timed_out": "timed_out",
            "aborted": "aborted",
            "error": "errors",
        }[kind]
    ] += 1


def _is_tensor(value: Any) -> bool:
    return hasattr(value, "detach") and hasattr(value, "reshape")


class _Readings:
    """The values of one logging window as they were given (floats, tensors,
    None), read back together once: no device sync per step. Runs of
    scalar tensors are stacked on their device now and then, so a long
    window holds a few tensors, not thousands."""

    STACK_EVERY = 256

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.count = 0
        self._tensor_tail = 0

    def append(self, value: Any) -> None:
        self.count += 1
        if _is_tensor(value):
            if value.requires_grad:
                value = value.detach()
            if value.dim() != 0:
                value = (value.float().mean() if value.numel() != 1 else value).reshape(())
            self.items.append(value)
            self._tensor_tail += 1
            if self._tensor_tail >= self.STACK_EVERY:
                import torch

                tail = self.items[-self._tensor_tail :]
                try:
                    stacked = torch.stack(tail)
                except (RuntimeError, TypeError):  # mixed devices or kinds: keep them
                    stacked = None
                if stacked is not None:
                    del self.items[-self._tensor_tail :]
                    self.items.append(stacked)
                self._tensor_tail = 0
        else:
            self.items.append(None if value is None else float(value))
            self._tensor_tail = 0

    def floats(self) -> list[float | None]:
        """Every value as a float (None stays None), in order; one read-back
        from the device for all the window's tensors."""
        tensors = [item for item in self.items if _is_tensor(item)]
        read: list[float] = []
        if tensors:
            import torch

            try:
                read = torch.cat([t.reshape(-1) for t in tensors]).tolist()
            except (RuntimeError, TypeError):  # mixed devices or kinds
                read = [float(v) for t in tensors for v in t.reshape(-1).double().cpu().tolist()]
        out: list[float | None] = []
        position = 0
        for item in self.items:
            if _is_tensor(item):
                size = int(item.numel())
                out.extend(float(v) for v in read[position : position + size])
                position += size
            else:
                out.append(item)
        return out


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


class Run:
    """One training run's link to its run directory (see the module doc).
    Every rank of a distributed job makes one, after
    `torch.distributed.init_process_group()`.

    The live settings (`settings`) change only through `trainui ctl RUN_DIR
    set KEY=VALUE` (agreed across ranks at a step boundary); config.json is
    written once, for the record, and edits of it are not followed."""

    def __init__(
        self,
        run_dir: str | os.PathLike | None = None,
        *,
        max_steps: int,
        run_name: str | None = None,
        config: dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
        framework: str = "pytorch",
        on_stall: str = "warn",
        handle_signals: bool = True,
        print_lines: bool = True,
    ):
        if run_dir is None:
            run_dir = os.environ.get(RUN_DIR_ENV) or None
            if run_dir is None:
                raise RunDirError(
                    f"no run directory: pass trainui.Run(run_dir=...) or set {RUN_DIR_ENV}"
                )
        if on_stall not in ("warn", "exit"):
            raise ValueError(f'on_stall must be "warn" or "exit" (got {on_stall!r})')
        self.root = Path(run_dir)
        self.max_steps = whole_number("Run: max_steps", max_steps)
        self.run_name = str(run_name or self.root.resolve().name or self.root)
        self.framework = str(framework)
        #: The live settings in force (nested dict, see protocol.LIVE_SETTINGS).
        self.settings = protocol.settings_with(settings)
        self.rank, self.world_size, self.local_rank = distributed.world()
        self.is_main = self.rank == 0
        self._agreement = distributed.Agreement() if self.world_size > 1 else None
        # The agreement begun at the latest boundary, and rank 0's commands
        # it is about.
        self._inflight: Any = None
        self._inflight_commands: list[Any] = []
        # The step of the next agreement (None: the next boundary), and rank
        # 0's clock of the boundaries, which spaces them.
        self._next_agreement: int | None = None
        self._boundary_clock: tuple[int, float] | None = None
        self._step_secs: float | None = None

        # Signals: the handler only counts (plain ints, no lock, no I/O);
        # the rank-beat thread and the step boundary each compare with the
        # counts they saw last, so no signal is lost between a read and a
        # reset.
        self._caught_stops = 0
        self._caught_evals = 0
        self._caught_aborts = 0
        self._beat_seen_stops = 0
        self._beat_seen_aborts = 0
        self._boundary_seen = [0, 0, 0]  # stops, evals, aborts
        self._previous_handlers: dict[int, Any] = {}
        # A stop reached this rank (its own signal, rank 0's spool, rank 0's
        # abort mark): the abort flag stays raised until the run ends.
        self._stop_pending = False
        # The stop agreed at a step boundary (the same on every rank).
        self._stop_agreed = False
        #: Raised to end the running generation (SIGUSR2, abort_generation, a
        #: stop); the decoder checks it before every step.
        self.abort = AbortFlag(self._abort_pending)
        self._abort_lock = threading.Lock()
        self._abort_seq = 0
        self._abort_mark_seen = 0
        self._generation_unix: float | None = None

        # Rank 0 checks the directory, takes its lock and makes its files
        # before any rank writes one; whatever goes wrong there, every rank
        # hears it from one broadcast and raises the same RunDirError (a
        # rank left out would wait in its next collective for ever).
        self._lock_fd: int | None = None
        self._status: protocol.StatusFold | None = None
        run_files: RunFiles | None = None
        record: LineFile | None = None
        failure: str | None = None
        cause: BaseException | None = None
        if self.is_main:
            try:
                check_fresh(self.root)
                control.check_spool(self.root)
                self._lock_fd = take_lock(self.root)
                check_fresh(self.root)
                control.make_spool(self.root)
                control.clear_abort_mark(self.root)
                self._status = protocol.StatusFold(self.run_name, self.max_steps, os.getpid())
                run_files = RunFiles(self.root, config if config is not None else {}, self._status)
                make_dirs(self.root / protocol.RANKS_DIR)
                record = LineFile(self.root / protocol.RANKS_DIR / f"rank-{self.rank}.jsonl")
            except Exception as err:  # noqa: BLE001 - every rank must hear of it
                cause = err
                failure = (
                    str(err)
                    if isinstance(err, RunDirError)
                    else (
                        f"{self.root}: cannot set up the run directory: {type(err).__name__}: {err}"
                    )
                )
                for files in (run_files, record):
                    if files is not None:
                        files.close()
                release_lock(self._lock_fd)
                self._lock_fd = None
        if self._agreement is not None:
            failure = self._agreement.from_rank0(failure)
        if failure is not None:
            raise RunDirError(failure) from cause
        if not self.is_main:
            # (A failure here is this rank's alone, as any of its own errors:
            # the job's launcher ends the others.)
            make_dirs(self.root / protocol.RANKS_DIR)
            record = LineFile(self.root / protocol.RANKS_DIR / f"rank-{self.rank}.jsonl")

        self._heartbeat = Heartbeat(math.inf)
        self._state_before_stall = "training"
        self._step = 0
        self._done = False
        self._started_mono: float | None = None
        self._commands: deque[Any] = deque()
        # Step window, evaluation and generation bookkeeping. The window's
        # losses (and gradient norms) are kept as given, floats or tensors,
        # and read back together once per window.
        self._window_losses = _Readings()
        self._window_norms = _Readings()
        self._window_first_step = 0
        self._window_tokens = 0
        self._window_start = time.monotonic()
        self._last_loss: float | None = None
        self._nonfinite_steps = 0
        self._evals = 0
        self._counters = protocol.zero_counters()
        self._eval_samples = 0
        self._eval_matches = 0
        self._eval_warned = False
        self._eval_warn_rate = self.settings["eval"]["timeout_warn_rate"]
        self._eval_val_loss: float | None = None
        self._aborted_last = False
        self._progress_at = 0.0
        self._last_eval_step: int | None = None
        self._last_save_step: int | None = None

        self._writer = Writer(run_files, record, self.rank, print_lines and self.is_main)
        self._rank_beat = RankBeat(
            self.root,
            self.rank,
            self.world_size,
            self.local_rank,
            self._heartbeat,
            self._on_beat_tick,
        )
        self._spool = None
        if self.is_main:
            self._spool = control.Spool(
                self.root,
                emit=self._writer.event,
                deliver=self._commands.append,
                abort=self._abort_everywhere,
                settings=copy.deepcopy(self.settings),
                on_settings=self._spool_changed_settings,
                step=lambda: self._step,
            )
        self._watchdog = Watchdog(
            self._heartbeat,
            self._stalled,
            self._recovered,
            on_stall == "exit",
            self._before_stall_exit,
        )
        if handle_signals:
            self._install_signal_handlers()

    # ------------------------------------------------------------------
    # Small helpers

    def _emit(self, event: dict[str, Any], rank: bool = False) -> None:
        """Queues an event: events.jsonl on rank 0; this rank's record when
        `rank`."""
        if self.is_main or rank:
            self._writer.event(event, run=self.is_main, rank=rank)

    def _set_state(self, state: str) -> None:
        self._heartbeat.state = state
        self._emit({"type": "state", "step": self._step, "state": state}, rank=True)
        self._rank_beat.changed()

    def _phase(self, phase: str) -> None:
        if self._heartbeat.phase != phase:
            self._heartbeat.beat(phase)
            self._rank_beat.changed()
        else:
            self._heartbeat.beat()

    def _elapsed(self) -> float:
        return 0.0 if self._started_mono is None else time.monotonic() - self._started_mono

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

    def _spool_changed_settings(self, settings: dict[str, dict[str, Any]]) -> None:
        # The watchdog's timeout changes at once, even when the trainer is stuck.
        if self._started_mono is not None:
            self._heartbeat.stall_timeout = float(settings["watchdog"]["stall_timeout_seconds"])

    # ------------------------------------------------------------------
    # Signals

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
            self._caught_stops += 1
            if self._caught_stops > 1:
                try:
                    os.write(2, b"trainui: second signal: exiting now\n")
                except OSError:
                    pass
                os._exit(128 + number)

    # ------------------------------------------------------------------
    # The watchdog's reports

    def _stalled(self, step: int, phase: str, silent: float, timeout: float) -> None:
        self._state_before_stall = self._heartbeat.state
        self._heartbeat.state = "stalled"
        self._emit(
            {
                "type": "stalled",
                "step": step,
                "phase": phase,
                "silent_secs": silent,
                "timeout_secs": timeout,
            },
            rank=True,
        )

    def _recovered(self, step: int, phase: str) -> None:
        if self._heartbeat.state == "stalled":
            self._heartbeat.state = self._state_before_stall
        self._emit({"type": "recovered", "step": step, "phase": phase}, rank=True)

    def _before_stall_exit(self) -> None:
        self._writer.flush(5.0)
        self._rank_beat.write()

    # ------------------------------------------------------------------
    # The API

    @property
    def stop_requested(self) -> bool:
        """A stop was applied at a step boundary: the same value on every
        rank, at the same step, so code may branch on it around collectives.
        (A stop that reached this rank but is not agreed yet only raises
        `abort`, which ends the running and every later generation.)"""
        return self._stop_agreed

    @property
    def step(self) -> int:
        """The latest step the loop reported."""
        return self._step

    @property
    def evals(self) -> int:
        """Evaluations begun so far (the current one included)."""
        return self._evals

    def start(
        self,
        *,
        device: str = "cpu",
        parameters: int = 0,
        vocab_size: int = 0,
        train_examples: int = 0,
        val_examples: int = 0,
        start_step: int = 0,
    ) -> None:
        """Writes `started` and the state `training`; the watchdog starts
        watching."""
        parameters = whole_number("start: parameters", parameters)
        vocab_size = whole_number("start: vocab_size", vocab_size, "u32")
        train_examples = whole_number("start: train_examples", train_examples)
        val_examples = whole_number("start: val_examples", val_examples)
        start_step = whole_number("start: start_step", start_step)
        self._step = start_step
        self._started_mono = time.monotonic()
        self._window_start = self._started_mono
        self._emit(
            {
                "type": "started",
                "run_name": self.run_name,
                "pid": os.getpid(),
                "device": str(device),
                "start_step": int(start_step),
                "max_steps": self.max_steps,
                "parameters": int(parameters),
                "vocab_size": int(vocab_size),
                "train_examples": int(train_examples),
                "val_examples": int(val_examples),
                "skipped_overlong": 0,
                "resumed_from": None,
                "evals": self._evals,
                "counters": dict(self._counters),
                "settings": copy.deepcopy(self.settings),
                "nonfinite_steps": self._nonfinite_steps,
                "producer": {
                    "name": protocol.PRODUCER_NAME,
                    "version": protocol.PRODUCER_VERSION,
                    "framework": self.framework,
                    "world_size": self.world_size,
                },
            },
            rank=True,
        )
        self._heartbeat.beat("training", self._step)
        self._set_state("training")
        self._heartbeat.stall_timeout = float(self.settings["watchdog"]["stall_timeout_seconds"])

    def beat(self, phase: str | None = None, step: int | None = None) -> None:
        """Heartbeat: progress in `phase` (a Phase name) at `step`. Cheap:
        no I/O on this thread."""
        heartbeat = self._heartbeat
        if step is not None:
            step = whole_number("beat: step", step)
        if phase is not None and phase != heartbeat.phase:
            if phase not in protocol.PHASES:
                raise ValueError(
                    f"unknown phase {phase!r}; the phases are {', '.join(protocol.PHASES)}"
                )
            heartbeat.beat(phase, step)
            self._rank_beat.changed()
        else:
            heartbeat.beat(None, step)
        if step is not None:
            self._step = step

    def log_step(
        self, step: int, loss: Any, learning_rate: float, tokens: int = 0, grad_norm: Any = None
    ) -> None:
        """Call after every optimizer step. `loss` (and `grad_norm`, when
        known) may be a float or a tensor (kept on its device and read back
        only once every `train.log_steps` steps). Every `train.log_steps`
        steps (and at `max_steps`) rank 0 writes a `step` event with the
        mean loss of the window, tokens/s, elapsed and eta, and, before it,
        a `non_finite` event for the window's first step whose loss or
        gradient norm was NaN or infinite (its update was applied: action
        `warn`; the gradient norm is the loss when none was given). Only
        rank 0's values are looked at.

        Values the protocol cannot carry are refused with a ValueError before
        anything is written: a step that is no whole number from 0 to
        2^64-1, a negative or fractional token count, a learning rate that
        is not a finite number. (A tensor token count is taken as it is:
        checking it would wait for its device; a tensor learning rate is read
        when the window closes, and one that is not finite drops the window
        with the ValueError.)"""
        step = whole_number("log_step: step", step)
        if not _is_tensor(tokens):
            tokens = whole_number("log_step: tokens", tokens)
        if not _is_tensor(learning_rate):
            learning_rate = finite_number("log_step: learning_rate", learning_rate)
        heartbeat = self._heartbeat
        heartbeat.last = time.monotonic()
        heartbeat.unix = time.time()
        heartbeat.step = step
        if heartbeat.phase != "training":
            heartbeat.phase = "training"
            self._rank_beat.changed()
        self._step = step
        if not self.is_main:
            return
        if not self._window_losses.count:
            self._window_first_step = step
        self._window_losses.append(loss)
        self._window_norms.append(grad_norm)
        self._window_tokens += tokens
        log_steps = self.settings["train"]["log_steps"]
        if step % log_steps and step != self.max_steps:
            return
        losses = self._window_losses.floats()
        norms = self._window_norms.floats()
        first = self._window_first_step
        steps = len(losses)
        try:
            learning_rate = finite_number("log_step: learning_rate", learning_rate)
        except ValueError:
            # A tensor's value, read only now: the window that cannot be
            # written is dropped, so the next step event is a window of its own.
            self._new_window(time.monotonic())
            raise
        bad = [
            (first + index, value, norms[index])
            for index, value in enumerate(losses)
            if not math.isfinite(value)
            or (norms[index] is not None and not math.isfinite(norms[index]))
        ]
        if bad:
            self._nonfinite_steps += len(bad)
            bad_step, bad_loss, bad_norm = bad[0]
            self._emit(
                {
                    "type": "non_finite",
                    "step": int(bad_step),
                    "loss": float_or_text(bad_loss),
                    "grad_norm": float_or_text(bad_loss if bad_norm is None else bad_norm),
                    "action": "warn",
                    "count": self._nonfinite_steps,
                }
            )
        mean = sum(losses) / steps
        now = time.monotonic()
        interval = max(now - self._window_start, 1e-9)
        per_step = interval / steps
        self._emit(
            {
                "type": "step",
                "step": int(step),
                "max_steps": self.max_steps,
                "loss": float_or_text(mean),
                "learning_rate": learning_rate,
                "tokens_per_sec": self._window_tokens / interval,
                "elapsed_secs": self._elapsed(),
                "eta_secs": per_step * max(self.max_steps - step, 0),
            }
        )
        self._last_loss = mean
        self._new_window(now)

    def _new_window(self, now: float) -> None:
        """Starts a logging window at `now` (monotonic)."""
        self._window_losses = _Readings()
        self._window_norms = _Readings()
        self._window_tokens = 0
        self._window_start = now

    def boundary(self, step: int) -> Actions:
        """Call on every rank at every step boundary (after the step's
        log_step). Applies the signals caught and the commands queued, agreed
        across ranks, so that every rank applies them at this same step;
        while paused, blocks here (beating) until resume or stop. Says what
        the loop must do now: evaluate, save, stop."""
        step = whole_number("boundary: step", step)
        self._step = step
        self._heartbeat.step = step
        actions = Actions()
        paused = False
        paused_before = False
        while True:
            # A paused run agrees at every look: every rank is here, at
            # this step, until the agreed resume or stop.
            commands = self._gather(step, every=paused_before)
            for command in commands:
                if actions.stop:  # the run ends at this boundary
                    self._ack(command, step, ENDED_BEFORE_APPLIED)
                    continue
                paused = self._apply(command, step, paused, actions)
            if not paused or actions.stop or self._done:  # done: finished elsewhere
                break
            paused_before = True
            self.beat("paused", step)
            time.sleep(PAUSE_POLL_SECS)
            self.beat("paused", step)
        if self._heartbeat.phase == "paused":
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

    def _apply(self, command: Any, step: int, paused: bool, actions: Actions) -> bool:
        """Applies one command as `Trainer::handle_commands` does; returns
        whether the run is paused after it."""
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
            self._ack(command, step, f"evaluating at step {step}")
            actions.eval = True
        elif command == "save":
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

    # Evaluation

    def eval_started(self, step: int, samples: int) -> None:
        """A full evaluation begins (state `evaluating`)."""
        step = whole_number("eval_started: step", step)
        samples = whole_number("eval_started: samples", samples, "u32")
        self._step = step
        self._evals += 1
        self._eval_samples = 0
        self._eval_matches = 0
        self._eval_warned = False
        self._eval_val_loss = None
        self._eval_warn_rate = self.settings["eval"]["timeout_warn_rate"]
        self._set_state("evaluating")
        self._emit(
            {"type": "eval_started", "step": step, "eval": self._evals, "samples": int(samples)},
            rank=True,
        )
        self.beat("validating", step)

    def val_loss(
        self, step: int, loss: float | None, batches: int, timed_out: bool = False
    ) -> None:
        """The validation loss of this evaluation (None: no batch scored)."""
        step = whole_number("val_loss: step", step)
        batches = whole_number("val_loss: batches", batches, "u32")
        loss = None if loss is None else float(loss)
        self._eval_val_loss = loss
        self._emit(
            {
                "type": "val_loss",
                "step": step,
                "loss": float_or_text(loss),
                "batches": int(batches),
                "timed_out": bool(timed_out),
            },
            rank=True,
        )
        if timed_out:
            self.warning(
                f"TIMEOUT: validation loss exceeded "
                f"{protocol.rust_display(self.settings['eval']['eval_timeout_seconds'])}s at "
                f"step {step}; scored {batches} of {self.settings['eval']['val_batches']} batches"
            )

    def generation_started(
        self,
        *,
        step: int,
        sample: int,
        of: int,
        example: int,
        origin: str,
        prompt: str,
        golden: str,
        golden_tokens: int,
        timeout_secs: float,
    ) -> None:
        """A sample generation begins; the abort flag is lowered, unless a
        stop is pending: then this and every later generation of the run end
        at once as `aborted` (a stop ends the evaluation)."""
        step = whole_number("generation_started: step", step)
        sample = whole_number("generation_started: sample", sample, "u32")
        of = whole_number("generation_started: of", of, "u32")
        example = whole_number("generation_started: example", example)
        golden_tokens = whole_number("generation_started: golden_tokens", golden_tokens)
        timeout_secs = finite_number("generation_started: timeout_secs", timeout_secs)
        self._generation_unix = time.time()
        if not self._stop_pending:
            self.abort.clear()
        self.beat("generating", step)
        self._progress_at = time.monotonic()
        if self.is_main:
            self._emit(
                {
                    "type": "generation_started",
                    "step": int(step),
                    "sample": int(sample),
                    "of": int(of),
                    "example": int(example),
                    "origin": str(origin),
                    "prompt": str(prompt),
                    "golden": str(golden),
                    "golden_tokens": int(golden_tokens),
                    "timeout_secs": float(timeout_secs),
                }
            )

    def generation_progress(
        self, *, step: int, sample: int, text: str, tokens: int, elapsed_secs: float
    ) -> None:
        """Text generated so far; at most four events a second."""
        step = whole_number("generation_progress: step", step)
        sample = whole_number("generation_progress: sample", sample, "u32")
        tokens = whole_number("generation_progress: tokens", tokens)
        elapsed_secs = finite_number("generation_progress: elapsed_secs", elapsed_secs)
        heartbeat = self._heartbeat
        heartbeat.last = time.monotonic()
        heartbeat.unix = time.time()
        if not self.is_main or heartbeat.last - self._progress_at < PROGRESS_INTERVAL:
            return
        self._progress_at = heartbeat.last
        self._emit(
            {
                "type": "generation_progress",
                "step": int(step),
                "sample": int(sample),
                "text": str(text),
                "tokens": int(tokens),
                "elapsed_secs": float(elapsed_secs),
            }
        )

    def sample(
        self,
        *,
        step: int,
        sample: int,
        of: int,
        example: int,
        origin: str,
        prompt: str,
        golden: str,
        output: str,
        golden_tokens: int,
        output_tokens: int,
        outcome: Any,
        loss: float | None = None,
        elapsed_secs: float,
        timeout_secs: float,
    ) -> dict[str, Any]:
        """A sample generation ended: counted, scored (exact match: completed
        and equal after stripping spaces), written to this rank's record
        (and rank 0's events.jsonl) and printed. Returns the event."""
        step = whole_number("sample: step", step)
        sample = whole_number("sample: sample", sample, "u32")
        of = whole_number("sample: of", of, "u32")
        example = whole_number("sample: example", example)
        golden_tokens = whole_number("sample: golden_tokens", golden_tokens)
        output_tokens = whole_number("sample: output_tokens", output_tokens)
        elapsed_secs = finite_number("sample: elapsed_secs", elapsed_secs)
        timeout_secs = finite_number("sample: timeout_secs", timeout_secs)
        outcome = _outcome(outcome)
        kind = outcome["kind"]
        origin, prompt, golden, output = str(origin), str(prompt), str(golden), str(output)
        _count(self._counters, kind)
        self._aborted_last = kind == "aborted"
        exact = kind == "completed" and output.strip() == golden.strip()
        self._eval_samples += 1
        self._eval_matches += int(exact)
        event = {
            "type": "sample",
            "step": int(step),
            "sample": int(sample),
            "of": int(of),
            "example": int(example),
            "origin": origin,
            "prompt": prompt,
            "golden": golden,
            "output": output,
            "golden_tokens": int(golden_tokens),
            "output_tokens": int(output_tokens),
            "outcome": outcome,
            "exact_match": exact,
            "loss": float_or_text(None if loss is None else float(loss)),
            "elapsed_secs": float(elapsed_secs),
            "tokens_per_sec": output_tokens / max(float(elapsed_secs), 1e-9),
            "timeout_secs": float(timeout_secs),
            "counters": dict(self._counters),
        }
        self._emit(event, rank=True)
        self.beat("generating", step)
        rate = protocol.timeout_rate(self._counters)
        if (
            not self._eval_warned
            and self._counters["timed_out"] > 0
            and rate > self._eval_warn_rate
        ):
            self._eval_warned = True
            self.warning(protocol.timeout_rate_warning(self._counters, self._eval_warn_rate))
        return event

    def eval_finished(
        self, step: int, val_loss: float | None = None, train_loss: float | None = None
    ) -> None:
        """The evaluation ended: matches and exact match of the samples
        since eval_started, the train/validation gap; back to `training`."""
        step = whole_number("eval_finished: step", step)
        if val_loss is None:
            val_loss = self._eval_val_loss
        if train_loss is None:
            train_loss = self._last_loss
        gap = None if val_loss is None or train_loss is None else val_loss - train_loss
        done = self._eval_samples
        self._emit(
            {
                "type": "eval_finished",
                "step": int(step),
                "eval": self._evals,
                "val_loss": float_or_text(val_loss),
                "train_loss": float_or_text(train_loss),
                "gap": float_or_text(gap),
                "samples": done,
                "matches": self._eval_matches,
                "exact_match": self._eval_matches / done if done else 0.0,
                "counters": dict(self._counters),
            },
            rank=True,
        )
        self._set_state("training")
        self._phase("training")
        if self._window_losses.count == 0:
            self._window_start = time.monotonic()  # evaluating is not training time

    def checkpoint(self, step: int, path: str | os.PathLike) -> None:
        """A checkpoint was written completely."""
        step = whole_number("checkpoint: step", step)
        self._emit(
            {
                "type": "checkpoint",
                "step": int(step),
                "path": os.fspath(path) if isinstance(path, (str, os.PathLike)) else str(path),
            },
            rank=True,
        )
        self._phase("training")
        if self._window_losses.count == 0:
            self._window_start = time.monotonic()

    def warning(self, message: str) -> None:
        """Something the operator should know that does not stop the run."""
        self._emit({"type": "warning", "step": self._step, "message": str(message)}, rank=True)

    # The end

    def _end(self, state: str, event: dict[str, Any]) -> None:
        """Ends the run: no more commands; those that came too late are
        answered; `event` (finished or failed) is written with everything
        queued before it; the rank file says `done`; the lock is given
        back. Bounded in time: at most FINISH_AGREEMENT_SECS for the last
        agreement and FINISH_SECS for the rest, however slow the disk."""
        self._done = True
        deadline = time.monotonic() + FINISH_SECS
        if self._spool is not None:
            self._spool.close(2.0)
        if self.is_main:
            late = list(self._inflight_commands) + list(self._commands)
            self._commands.clear()
            self._inflight_commands = []
            for command in late:
                self._ack(command, self._step, ENDED_BEFORE_APPLIED)
        self._emit(event, rank=True)
        if self._inflight is not None and state != "failed":
            # Every rank began it at the same boundary; a rank that died
            # must not keep this one waiting for long.
            try:
                self._agreement.result(self._inflight, timeout=FINISH_AGREEMENT_SECS)
            except Exception:  # noqa: BLE001 - the run ends either way
                pass
        self._inflight = None
        self._heartbeat.state = state
        self._heartbeat.phase = "done"
        self._rank_beat.changed()
        self._writer.close(max(deadline - time.monotonic() - 1.0, 1.0))
        self._rank_beat.close(max(deadline - time.monotonic(), 1.0))
        release_lock(self._lock_fd)
        self._lock_fd = None
        self._restore_signal_handlers()

    def finish(self, state: str | None = None) -> None:
        """Ends the run as `finished` (max_steps reached) or `stopped`; with
        no `state`, `stopped` when a step boundary applied a stop (a command,
        SIGINT, SIGTERM, SIGHUP) and `finished` otherwise. Writes everything
        queued before returning (waiting a few seconds at most when the disk
        is stuck)."""
        if self._done:
            return
        if state is None:
            state = "stopped" if self._stop_agreed else "finished"
        if state not in ("finished", "stopped"):
            raise ValueError(f'finish(state) takes "finished" or "stopped" (got {state!r})')
        self._end(
            state,
            {
                "type": "finished",
                "step": self._step,
                "max_steps": self.max_steps,
                "state": state,
                "loss": float_or_text(self._last_loss),
                "elapsed_secs": self._elapsed(),
            },
        )

    def fail(self, message: str) -> None:
        """Ends the run as `failed`; writes everything queued before
        returning (waiting a few seconds at most when the disk is stuck).
        On rank 0 of a multi-process job, a rank that failed before (its
        own record ends with `failed`) is named with its own error first:
        rank 0's failure is then most often only the others' news of it (a
        collective whose peer is gone)."""
        if self._done:
            return
        message = str(message)
        if self.is_main and self.world_size > 1:
            try:
                message = self._with_earlier_failure(message)
            except Exception:  # noqa: BLE001 - the run's own failure is said either way
                pass
        self._end("failed", {"type": "failed", "step": self._step, "message": message})

    def _with_earlier_failure(self, own: str) -> str:
        """`own` failure message of rank 0, after the failure of the rank
        that failed first, when another rank's record says it failed."""
        now = time.time()
        failures = []
        for rank in range(1, self.world_size):
            failure = rank_failure(self.root, rank)
            if failure is not None and failure[0] <= now:
                failures.append((failure[0], rank, failure[1], failure[2]))
        if not failures:
            return own
        failures.sort()
        _, rank, step, message = failures[0]
        also = [str(other[1]) for other in failures[1:]]
        more = f"; rank{'s' if len(also) > 1 else ''} {', '.join(also)} failed too" if also else ""
        return f"rank {rank} failed at step {step}: {message} (then rank 0: {own}{more})"

    @property
    def finished(self) -> bool:
        return self._done

    def __enter__(self) -> Run:
        return self

    def __exit__(self, kind, value, _traceback) -> bool:
        if self._done:
            return False
        if kind is None:
            self.finish()  # `stopped` when the loop ended with a `break` on a stop
        elif issubclass(kind, Exception):
            self.fail(str(value) or kind.__name__)
        elif issubclass(kind, SystemExit) and value.code in (None, 0):
            self.finish()
        else:
            self.fail(f"interrupted ({kind.__name__})")
        return False


#: Most bytes read from the end of a rank's record to find its failure: its
#: last line, however long a line may be (rundir.MAX_EVENT_LINE).
RECORD_TAIL_BYTES = MAX_EVENT_LINE + 2


def rank_failure(root: Path, rank: int) -> tuple[float, int, str] | None:
    """When `rank`'s own record (ranks/rank-N.jsonl) ends with a `failed`
    event: its time (unix seconds), step and message. Reads only the end of
    a regular file, never through a link, never waiting on a FIFO."""
    path = root / protocol.RANKS_DIR / f"rank-{rank}.jsonl"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        meta = os.fstat(fd)
        if not stat.S_ISREG(meta.st_mode):
            return None
        start = max(0, meta.st_size - RECORD_TAIL_BYTES)
        tail = os.pread(fd, meta.st_size - start, start)
    except OSError:
        return None
    finally:
        os.close(fd)
    lines = tail.split(b"\n")
    if start > 0:
        lines = lines[1:]  # the first may be the end of a line cut off
    for line in reversed(lines):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except (ValueError, RecursionError):
            return None
        if not isinstance(event, dict) or event.get("type") != "failed":
            return None
        unix = protocol.parse_rfc3339(event.get("time"))
        step, message = event.get("step"), event.get("message")
        if (
            unix is None
            or isinstance(step, bool)
            or not isinstance(step, int)
            or not isinstance(message, str)
        ):
            return None
        return unix, step, message
    return None
