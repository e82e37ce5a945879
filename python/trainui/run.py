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

This module holds the `Run` itself: setting up the run directory, the
steps (`start`, `log_step`, `beat`), checkpoints, warnings and the end of
the run. The rest of it is in step_boundary.py (`boundary` and `Actions`),
eval_reports.py (the evaluation's reports), signals.py (signals and the
abort flag), window_readings.py (a logging window's losses) and
rank_failures.py (the other ranks' failures, named in rank 0's).
"""

from __future__ import annotations

import copy
import math
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from . import control, distributed, launcher, protocol
from .alerts import AlertCommand, launcher_alerts, settings_of
from .eta import EtaEstimate
from .eval_reports import PROGRESS_INTERVAL, EvaluationReports
from .live_settings import PACKAGE_DEFAULTS
from .protocol import finite_number, float_or_text, whole_number
from .rank_failures import RECORD_TAIL_BYTES, rank_failure, with_earlier_failure
from .rundir import (
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
from .signals import AbortFlag, SignalHandling
from .step_boundary import (
    AGREE_EVERY_SECS,
    ENDED_BEFORE_APPLIED,
    PAUSE_POLL_SECS,
    Actions,
    StepBoundary,
)
from .watchdog import Heartbeat, Watchdog
from .window_readings import Readings, is_tensor

__all__ = [
    "Run",
    "RUN_DIR_ENV",
    "FINISH_SECS",
    "FINISH_AGREEMENT_SECS",
    # Held by the modules of the Run's parts, and named here as before.
    "Actions",
    "PAUSE_POLL_SECS",
    "ENDED_BEFORE_APPLIED",
    "AGREE_EVERY_SECS",
    "PROGRESS_INTERVAL",
    "AbortFlag",
    "RECORD_TAIL_BYTES",
    "rank_failure",
]

#: Environment variable naming the run directory when none is given.
RUN_DIR_ENV = "TRAINUI_RUN_DIR"

#: Most seconds finish() and fail() spend writing what is left (and the
#: final rank file), beyond the wait for the last agreement.
FINISH_SECS = 10.0
#: Most seconds finish() waits for the agreement begun at the last boundary.
FINISH_AGREEMENT_SECS = 20.0


class Run(StepBoundary, EvaluationReports, SignalHandling):
    """One training run's link to its run directory (see the module doc).
    Every rank of a distributed job makes one, after
    `torch.distributed.init_process_group()`.

    The live settings (`settings`) change only through `trainui ctl RUN_DIR
    set KEY=VALUE` (agreed across ranks at a step boundary); config.json is
    written once, for the record, and edits of it are not followed.

    `alerts={"command": ..., "timeout_seconds": ...}` runs a shell command
    of the user's on rank 0 when the run finishes, stops, fails, stalls or
    recovers (alerts.py), as trainui's own `alerts` config does.

    Its state is set up here, in __init__; the methods of three of its parts
    are in modules of their own: step_boundary.py (`boundary`, the commands
    and signals agreed across ranks), eval_reports.py (`eval_started` to
    `eval_finished`) and signals.py (the signal handlers and the abort
    flag)."""

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
        alerts: dict[str, Any] | None = None,
    ):
        # The environment wins: `trainui run` sets it and watches that folder,
        # so a job that names another one must not write where no one looks.
        from_env = os.environ.get(RUN_DIR_ENV) or None
        #: What the job asked for and did not get, said once the run starts.
        self._ignored_run_dir: str | None = None
        if from_env is not None:
            if run_dir is not None and os.path.abspath(run_dir) != os.path.abspath(from_env):
                self._ignored_run_dir = os.fspath(run_dir)
            run_dir = from_env
        elif run_dir is None:
            raise RunDirError(
                f"no run directory: pass trainui.Run(run_dir=...) or set {RUN_DIR_ENV}"
            )
        if on_stall not in ("warn", "exit"):
            raise ValueError(f'on_stall must be "warn" or "exit" (got {on_stall!r})')
        alert_settings = settings_of(alerts)
        # Under `trainui run` its words win: see launcher.py.
        on_stall = launcher.on_stall(on_stall)
        print_lines = launcher.print_lines(print_lines)
        #: Which relaunch after a stall this is (0: the first start); a
        #: relaunch goes on in the run directory that holds the run.
        self.restart = launcher.restart_number() if from_env is not None else 0
        #: The checkpoint to resume from after a stall, or None (see
        #: launcher.py): the loop loads it and passes its step to start().
        self.resume_checkpoint = launcher.resume_checkpoint() if self.restart else None
        self.root = Path(run_dir)
        self.max_steps = whole_number("Run: max_steps", max_steps)
        self.run_name = str(run_name or self.root.resolve().name or self.root)
        self.framework = str(framework)
        #: The live settings in force (nested dict, see protocol.LIVE_SETTINGS):
        #: trainui's defaults but for PACKAGE_DEFAULTS (no checkpoint cadence
        #: unless `settings` gives one), with `settings` made over them.
        self.settings = protocol.settings_with(settings, PACKAGE_DEFAULTS)
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
                if not self.restart:
                    check_fresh(self.root)
                control.check_spool(self.root)
                self._lock_fd = take_lock(self.root)
                if not self.restart:
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
        self._window_losses = Readings()
        self._window_norms = Readings()
        self._window_first_step = 0
        self._window_tokens = 0
        self._tokens_seen = 0
        # The training clock: seconds spent in training steps in the window,
        # counted up to `_train_mark`. Boundaries (pauses, commands),
        # evaluations and checkpoints move the mark without counting.
        self._train_mark = time.monotonic()
        self._window_train_secs = 0.0
        self._eta = EtaEstimate()
        # Held by a pause between boundary() calls (see StepBoundary).
        self._paused = False
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
        #: `alerts.command` (see alerts.py), run by rank 0 unless `trainui
        #: run` runs it for the job.
        self._alerts: AlertCommand | None = None
        if self.is_main and alert_settings.command is not None and not launcher_alerts():
            self._alerts = AlertCommand(
                alert_settings.command,
                alert_settings.timeout_seconds,
                self.root,
                self.run_name,
                self._alert_failed,
            )
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
        if self._alerts is not None:
            self._alerts.consider(event)

    def _alert_failed(self, message: str) -> None:
        """An alert command failed (on its own thread): a warning in events.jsonl."""
        self._emit({"type": "warning", "step": self._step, "message": message})

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

    def _spool_changed_settings(self, settings: dict[str, dict[str, Any]]) -> None:
        # The watchdog's timeout changes at once, even when the trainer is stuck.
        if self._started_mono is not None:
            self._heartbeat.stall_timeout = float(settings["watchdog"]["stall_timeout_seconds"])

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
        if self._alerts is not None:
            self._alerts.settle()  # the stall's command is heard out first
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
        self._train_mark = self._started_mono
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
                "resumed_from": self.resume_checkpoint,
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
        if self.restart and self.is_main:
            resumed = (
                f"from {self.resume_checkpoint} at step {start_step}"
                if self.resume_checkpoint
                else f"at step {start_step}, from no checkpoint"
            )
            self.warning(
                f"relaunched by trainui run after a stall (restart {self.restart}), {resumed}"
            )
        if self._ignored_run_dir is not None and self.is_main:
            self.warning(
                f"the run directory {self._ignored_run_dir} given to trainui.Run is not used: "
                f"{RUN_DIR_ENV} (set by `trainui run`) names {self.root}, which this job writes"
            )

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
        if not is_tensor(tokens):
            tokens = whole_number("log_step: tokens", tokens)
        if not is_tensor(learning_rate):
            learning_rate = finite_number("log_step: learning_rate", learning_rate)
        heartbeat = self._heartbeat
        heartbeat.last = time.monotonic()
        heartbeat.unix = time.time()
        heartbeat.step = step
        self._window_train_secs += heartbeat.last - self._train_mark
        self._train_mark = heartbeat.last
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
            self._new_window()
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
        # Over the time spent in training steps, as trainui's trainer counts.
        interval = max(self._window_train_secs, 1e-9)
        self._eta.window(steps, self._window_train_secs)
        event = {
            "type": "step",
            "step": int(step),
            "max_steps": self.max_steps,
            "loss": float_or_text(mean),
            "learning_rate": learning_rate,
            "tokens_per_sec": self._window_tokens / interval,
            "elapsed_secs": self._elapsed(),
            "eta_secs": self._eta.eta_secs(max(self.max_steps - step, 0)),
        }
        # As trainui's own steps: the mean over the window's finite norms,
        # absent when none was reported or none was finite.
        finite_norms = [n for n in norms if n is not None and math.isfinite(n)]
        if finite_norms:
            event["grad_norm"] = sum(finite_norms) / len(finite_norms)
        # Since this handle began: readers add a resumed run's count at its
        # start step. Absent while no tokens were counted.
        self._tokens_seen += int(self._window_tokens)
        if self._tokens_seen:
            event["tokens_seen"] = self._tokens_seen
        self._emit(event)
        self._last_loss = mean
        self._new_window()

    def _new_window(self) -> None:
        """Starts a logging window."""
        self._window_losses = Readings()
        self._window_norms = Readings()
        self._window_tokens = 0
        self._window_train_secs = 0.0

    # Checkpoints and warnings

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
        self._phase("paused" if self._paused else "training")
        self._train_mark = time.monotonic()  # saving is not training time

    def warning(self, message: str) -> None:
        """Something the operator should know that does not stop the run."""
        self._emit({"type": "warning", "step": self._step, "message": str(message)}, rank=True)

    # The end

    def _end(self, state: str, event: dict[str, Any]) -> None:
        """Ends the run: no more commands; those that came too late are
        answered; `event` (finished or failed) is written with everything
        queued before it; the rank file says `done`; the lock is given
        back. Bounded in time: at most FINISH_AGREEMENT_SECS for the last
        agreement, `alerts.timeout_seconds` for the alert command the end
        raised, and FINISH_SECS for the rest, however slow the disk."""
        self._done = True
        state, event = self._ended_by_signal(state, event)
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
        if self._alerts is not None:
            # The command for the run's end is heard out (its time limit at
            # most) and a failure of it written, before the files close.
            waited = time.monotonic()
            self._alerts.settle()
            deadline += time.monotonic() - waited
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
                message = with_earlier_failure(self.root, self.world_size, message)
            except Exception:  # noqa: BLE001 - the run's own failure is said either way
                pass
        self._end("failed", {"type": "failed", "step": self._step, "message": message})

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
            # As Python names it at the end of a traceback.
            self.fail(f"{kind.__name__}: {value}" if str(value) else kind.__name__)
        elif issubclass(kind, SystemExit) and value.code in (None, 0):
            self.finish()
        else:
            self.fail(f"interrupted ({kind.__name__})")
        return False
