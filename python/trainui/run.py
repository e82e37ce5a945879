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
"""

from __future__ import annotations

import copy
import math
import os
import signal
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from . import control, distributed, protocol
from .protocol import float_or_text
from .rundir import LineFile, RankBeat, RunDirError, RunFiles, Writer, check_fresh, take_lock
from .watchdog import Heartbeat, Watchdog

#: Environment variable naming the run directory when none is given.
RUN_DIR_ENV = "TRAINUI_RUN_DIR"
#: How often a paused run looks for commands.
PAUSE_POLL_SECS = 0.5
#: Fewest seconds between two `generation_progress` events.
PROGRESS_INTERVAL = 0.25

# Flags of the step-boundary agreement (one int64 each, combined by MAX).
_RANK0_COMMANDS, _SIGNAL_STOP, _SIGNAL_EVAL, _SIGNAL_ABORT = range(4)


class Actions:
    """What the loop must do after a step boundary."""

    __slots__ = ("stop", "save", "eval", "settings", "commands")

    def __init__(self) -> None:
        self.stop = False
        self.save = False
        self.eval = False
        #: The changes (dotted keys to values) applied at this boundary, or None.
        self.settings: Optional[Dict[str, Any]] = None
        #: The commands applied at this boundary, as events name them.
        self.commands: List[Any] = []

    def __repr__(self) -> str:
        return (f"Actions(stop={self.stop}, save={self.save}, eval={self.eval}, "
                f"settings={self.settings}, commands={self.commands})")


def _outcome(outcome: Any) -> Dict[str, Any]:
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
        raise ValueError(f"unknown generation outcome {outcome!r}; expected one of "
                         f"{', '.join(protocol.OUTCOMES)} or ('error', message)")
    return {"kind": "error", "message": message} if kind == "error" else {"kind": kind}


def _count(counters: Dict[str, int], kind: str) -> None:
    counters["generations"] += 1
    counters[{"completed": "completed", "timed_out": "timed_out", "aborted": "aborted",
              "error": "errors"}[kind]] += 1


class Run:
    """One training run's link to its run directory (see the module doc).
    Every rank of a distributed job makes one, after
    `torch.distributed.init_process_group()`."""

    def __init__(
        self,
        run_dir: Union[str, os.PathLike, None] = None,
        *,
        max_steps: int,
        run_name: Optional[str] = None,
        config: Optional[Dict[str, Any]] = None,
        settings: Optional[Dict[str, Any]] = None,
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
            raise ValueError(f"on_stall must be \"warn\" or \"exit\" (got {on_stall!r})")
        self.root = Path(run_dir)
        self.max_steps = int(max_steps)
        self.run_name = run_name or self.root.resolve().name or str(self.root)
        self.framework = framework
        #: The live settings in force (nested dict, see protocol.LIVE_SETTINGS).
        self.settings = protocol.settings_with(settings)
        self.rank, self.world_size, self.local_rank = distributed.world()
        self.is_main = self.rank == 0
        self._agreement = distributed.Agreement() if self.world_size > 1 else None
        # The agreement begun at the latest boundary, and rank 0's commands
        # it is about.
        self._inflight: Any = None
        self._inflight_commands: List[Any] = []
        #: Raised to end the running generation (SIGUSR2, abort_generation, a
        #: stop); the decoder checks it before every step.
        self.abort = threading.Event()

        # Rank 0 checks the directory and takes its lock before anyone
        # writes a file; every rank hears the verdict.
        refusal: Optional[Exception] = None
        if self.is_main:
            try:
                check_fresh(self.root)
                control.check_spool(self.root)
                take_lock(self.root)
                check_fresh(self.root)
            except RunDirError as err:
                refusal = err
        if self._agreement is not None:
            refused = self._agreement.max([1 if refusal else 0])[0]
            if refused and refusal is None:
                refusal = RunDirError(
                    f"{self.root}: rank 0 refused this run directory (its output says why)"
                )
        if refusal is not None:
            raise refusal

        self._heartbeat = Heartbeat(math.inf)
        self._step = 0
        self._done = False
        self._started_mono: Optional[float] = None
        self._commands: "deque[Any]" = deque()
        self._signal_stop = False
        self._signal_eval = False
        self._signal_abort = False
        self._stop_requested = False
        self._stops_signalled = 0
        self._previous_handlers: Dict[int, Any] = {}
        self._abort_seq = 0
        self._abort_seen: Optional[float] = None
        # Step window, evaluation and generation bookkeeping.
        self._window_loss: Any = 0.0
        self._window_steps = 0
        self._window_tokens = 0
        self._window_start = time.monotonic()
        self._last_loss: Optional[float] = None
        self._evals = 0
        self._counters = protocol.zero_counters()
        self._eval_samples = 0
        self._eval_matches = 0
        self._eval_warned = False
        self._eval_warn_rate = self.settings["eval"]["timeout_warn_rate"]
        self._eval_val_loss: Optional[float] = None
        self._aborted_last = False
        self._progress_at = 0.0
        self._last_eval_step: Optional[int] = None
        self._last_save_step: Optional[int] = None

        run_files = None
        if self.is_main:
            control.make_spool(self.root)
            self._status = protocol.StatusFold(self.run_name, self.max_steps, os.getpid())
            run_files = RunFiles(self.root, config if config is not None else {}, self._status)
        ranks = self.root / protocol.RANKS_DIR
        ranks.mkdir(parents=True, exist_ok=True)
        record = LineFile(ranks / f"rank-{self.rank}.jsonl")
        self._writer = Writer(run_files, record, self.rank, print_lines and self.is_main)
        watch_abort = not self.is_main and self.world_size > 1
        self._rank_beat = RankBeat(self.root, self.rank, self.world_size, self.local_rank,
                                   self._heartbeat, self._watch_abort_mark if watch_abort else None)
        self._spool = None
        if self.is_main:
            self._spool = control.Spool(
                self.root,
                emit=lambda event: self._writer.event(event),
                deliver=self._commands.append,
                abort=self._abort_everywhere,
                settings=copy.deepcopy(self.settings),
                on_settings=self._spool_changed_settings,
            )
        self._watchdog = Watchdog(self._heartbeat, self._stalled, self._recovered,
                                  on_stall == "exit", self._before_stall_exit)
        if handle_signals:
            self._install_signal_handlers()

    # ------------------------------------------------------------------
    # Small helpers

    def _emit(self, event: Dict[str, Any], rank: bool = False) -> None:
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

    def _abort_everywhere(self) -> None:
        """An abort or stop arrived on rank 0: raise the flag here at once,
        and tell the other ranks through the run directory."""
        self.abort.set()
        if self.world_size > 1:
            self._abort_seq += 1
            control.write_abort_mark(self.root, self._abort_seq)

    def _watch_abort_mark(self) -> None:
        """On ranks other than 0: raise the abort flag when rank 0 wrote a
        new abort mark (polled by the rank-file thread)."""
        try:
            mtime = os.stat(self.root / protocol.ABORT_FILE).st_mtime
        except OSError:
            return
        if mtime != self._abort_seen:  # the file is only ever written for an abort
            self._abort_seen = mtime
            self.abort.set()

    def _spool_changed_settings(self, settings: Dict[str, Dict[str, Any]]) -> None:
        # The watchdog's timeout changes at once, even when the trainer is stuck.
        if self._started_mono is not None:
            self._heartbeat.stall_timeout = float(settings["watchdog"]["stall_timeout_seconds"])

    # ------------------------------------------------------------------
    # Signals

    def _install_signal_handlers(self) -> None:
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
        """Only sets flags (applied at the next step boundary, agreed across
        ranks); a second SIGINT or SIGTERM exits at once."""
        if number == signal.SIGUSR1:
            self._signal_eval = True
        elif number == signal.SIGUSR2:
            self.abort.set()
            self._signal_abort = True
        else:
            if number != signal.SIGHUP:
                self._stops_signalled += 1
                if self._stops_signalled > 1:
                    sys.stderr.write("trainui: second signal: exiting now\n")
                    os._exit(128 + number)
                sys.stderr.write("trainui: stopping after the current step (send the signal "
                                 "again to exit now)\n")
            self._signal_stop = True
            self._stop_requested = True
            self.abort.set()

    # ------------------------------------------------------------------
    # The watchdog's reports

    def _stalled(self, step: int, phase: str, silent: float, timeout: float) -> None:
        self._state_before_stall = self._heartbeat.state
        self._heartbeat.state = "stalled"
        self._emit({"type": "stalled", "step": step, "phase": phase,
                    "silent_secs": silent, "timeout_secs": timeout}, rank=True)

    def _recovered(self, step: int, phase: str) -> None:
        if self._heartbeat.state == "stalled":
            self._heartbeat.state = getattr(self, "_state_before_stall", "training")
        self._emit({"type": "recovered", "step": step, "phase": phase}, rank=True)

    def _before_stall_exit(self) -> None:
        self._writer.flush(5.0)
        self._rank_beat.write()

    # ------------------------------------------------------------------
    # The API

    @property
    def stop_requested(self) -> bool:
        """A stop reached this process (a signal, or rank 0's spool): an
        evaluation may end early. It is applied at the next boundary."""
        return self._stop_requested

    @property
    def step(self) -> int:
        """The latest step the loop reported."""
        return self._step

    @property
    def evals(self) -> int:
        """Evaluations begun so far (the current one included)."""
        return self._evals

    def start(self, *, device: str = "cpu", parameters: int = 0, vocab_size: int = 0,
              train_examples: int = 0, val_examples: int = 0, start_step: int = 0) -> None:
        """Writes `started` and the state `training`; the watchdog starts
        watching."""
        self._step = int(start_step)
        self._started_mono = time.monotonic()
        self._window_start = self._started_mono
        self._emit({
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
            "nonfinite_steps": 0,
            "producer": {
                "name": protocol.PRODUCER_NAME,
                "version": protocol.PRODUCER_VERSION,
                "framework": self.framework,
                "world_size": self.world_size,
            },
        }, rank=True)
        self._heartbeat.beat("training", self._step)
        self._set_state("training")
        self._heartbeat.stall_timeout = float(self.settings["watchdog"]["stall_timeout_seconds"])

    def beat(self, phase: Optional[str] = None, step: Optional[int] = None) -> None:
        """Heartbeat: progress in `phase` (a Phase name) at `step`. Cheap:
        no I/O on this thread."""
        heartbeat = self._heartbeat
        if phase is not None and phase != heartbeat.phase:
            if phase not in protocol.PHASES:
                raise ValueError(f"unknown phase {phase!r}; the phases are "
                                 f"{', '.join(protocol.PHASES)}")
            heartbeat.beat(phase, step)
            self._rank_beat.changed()
        else:
            heartbeat.beat(None, step)
        if step is not None:
            self._step = step

    def log_step(self, step: int, loss: Any, learning_rate: float, tokens: int = 0) -> None:
        """Call after every optimizer step. `loss` may be a float or a
        tensor (added up on its device; read back only every
        `train.log_steps` steps). Every `train.log_steps` steps (and at
        `max_steps`) rank 0 writes a `step` event with the mean loss of the
        window, tokens/s, elapsed and eta."""
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
        if hasattr(loss, "detach"):
            loss = loss.detach()
        self._window_loss = loss + self._window_loss if self._window_steps else loss
        self._window_steps += 1
        self._window_tokens += tokens
        log_steps = self.settings["train"]["log_steps"]
        if step % log_steps and step != self.max_steps:
            return
        total = self._window_loss
        mean = float(total.item() if hasattr(total, "item") else total) / self._window_steps
        now = time.monotonic()
        interval = max(now - self._window_start, 1e-9)
        per_step = interval / self._window_steps
        self._emit({
            "type": "step",
            "step": int(step),
            "max_steps": self.max_steps,
            "loss": float_or_text(mean),
            "learning_rate": float(learning_rate),
            "tokens_per_sec": self._window_tokens / interval,
            "elapsed_secs": self._elapsed(),
            "eta_secs": per_step * max(self.max_steps - step, 0),
        })
        self._last_loss = mean
        self._window_loss = 0.0
        self._window_steps = 0
        self._window_tokens = 0
        self._window_start = now

    def boundary(self, step: int) -> Actions:
        """Call on every rank at every step boundary (after the step's
        log_step). Applies the signals caught and the commands queued, agreed
        across ranks, so that every rank applies them at this same step;
        while paused, blocks here (beating) until resume or stop. Says what
        the loop must do now: evaluate, save, stop."""
        self._step = step
        self._heartbeat.step = step
        actions = Actions()
        paused = False
        while True:
            commands = self._gather()
            for command in commands:
                if actions.stop:
                    break
                paused = self._apply(command, step, paused, actions)
            if not paused or actions.stop:
                break
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

    def _gather(self) -> List[Any]:
        """The commands to apply now, the same on every rank: rank 0's
        queued commands, then those of the signals any rank caught. Across
        ranks they are agreed one boundary late (see distributed.py)."""
        queued: List[Any] = []
        if self.is_main:
            while self._commands:
                queued.append(self._commands.popleft())
        flags = [1 if queued else 0, int(self._signal_stop), int(self._signal_eval),
                 int(self._signal_abort)]
        self._signal_stop = self._signal_eval = self._signal_abort = False
        if self._agreement is None:
            commands = queued
        else:
            agreement = self._agreement
            pending, sent = self._inflight, self._inflight_commands
            agreed = [0] * len(flags) if pending is None else agreement.result(pending)
            commands = []
            if agreed[_RANK0_COMMANDS]:
                commands, settings = agreement.from_rank0(
                    (sent, self.settings) if self.is_main else None)
                if not self.is_main:
                    self.settings = copy.deepcopy(settings)
            self._inflight = agreement.start(flags)
            self._inflight_commands = queued
            flags = agreed
        if flags[_SIGNAL_ABORT]:
            commands.append("abort_generation")
        if flags[_SIGNAL_EVAL]:
            commands.append("eval_now")
        if flags[_SIGNAL_STOP]:
            commands.append("stop")
        return commands

    def _ack(self, command: Any, step: int, message: str) -> None:
        self._emit({"type": "command_ack", "step": step, "command": command,
                    "message": message}, rank=True)

    def _apply(self, command: Any, step: int, paused: bool, actions: Actions) -> bool:
        """Applies one command as `Trainer::handle_commands` does; returns
        whether the run is paused after it."""
        actions.commands.append(command)
        if command == "stop":
            self._stop_requested = True
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
            message = ("aborted the generation" if self._aborted_last
                       else "no generation was running")
            self._aborted_last = False
            if not self._stop_requested:
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
                        result["watchdog"]["stall_timeout_seconds"])
                    self._emit({"type": "settings", "step": step,
                                "settings": copy.deepcopy(result)}, rank=True)
                    actions.settings = {**(actions.settings or {}), **changes}
                    message = f"applied {', '.join(applied)}"
                else:
                    message = "no change"
            self._ack(command, step, message)
        return paused

    # Evaluation

    def eval_started(self, step: int, samples: int) -> None:
        """A full evaluation begins (state `evaluating`)."""
        self._step = step
        self._evals += 1
        self._eval_samples = 0
        self._eval_matches = 0
        self._eval_warned = False
        self._eval_val_loss = None
        self._eval_warn_rate = self.settings["eval"]["timeout_warn_rate"]
        self._set_state("evaluating")
        self._emit({"type": "eval_started", "step": step, "eval": self._evals,
                    "samples": int(samples)}, rank=True)
        self.beat("validating", step)

    def val_loss(self, step: int, loss: Optional[float], batches: int,
                 timed_out: bool = False) -> None:
        """The validation loss of this evaluation (None: no batch scored)."""
        loss = None if loss is None else float(loss)
        self._eval_val_loss = loss
        self._emit({"type": "val_loss", "step": step, "loss": float_or_text(loss),
                    "batches": int(batches), "timed_out": bool(timed_out)}, rank=True)
        if timed_out:
            self.warning(
                f"TIMEOUT: validation loss exceeded "
                f"{protocol.rust_display(self.settings['eval']['eval_timeout_seconds'])}s at "
                f"step {step}; scored {batches} of {self.settings['eval']['val_batches']} batches"
            )

    def generation_started(self, *, step: int, sample: int, of: int, example: int, origin: str,
                           prompt: str, golden: str, golden_tokens: int,
                           timeout_secs: float) -> None:
        """A sample generation begins; the abort flag is lowered (unless a
        stop is pending)."""
        if not self._stop_requested:
            self.abort.clear()
        self.beat("generating", step)
        self._progress_at = time.monotonic()
        if self.is_main:
            self._emit({"type": "generation_started", "step": step, "sample": int(sample),
                        "of": int(of), "example": int(example), "origin": origin,
                        "prompt": prompt, "golden": golden, "golden_tokens": int(golden_tokens),
                        "timeout_secs": float(timeout_secs)})

    def generation_progress(self, *, step: int, sample: int, text: str, tokens: int,
                            elapsed_secs: float) -> None:
        """Text generated so far; at most four events a second."""
        heartbeat = self._heartbeat
        heartbeat.last = time.monotonic()
        heartbeat.unix = time.time()
        if not self.is_main or heartbeat.last - self._progress_at < PROGRESS_INTERVAL:
            return
        self._progress_at = heartbeat.last
        self._emit({"type": "generation_progress", "step": step, "sample": int(sample),
                    "text": text, "tokens": int(tokens), "elapsed_secs": float(elapsed_secs)})

    def sample(self, *, step: int, sample: int, of: int, example: int, origin: str, prompt: str,
               golden: str, output: str, golden_tokens: int, output_tokens: int, outcome: Any,
               loss: Optional[float] = None, elapsed_secs: float,
               timeout_secs: float) -> Dict[str, Any]:
        """A sample generation ended: counted, scored (exact match: completed
        and equal after stripping spaces), written to this rank's record
        (and rank 0's events.jsonl) and printed. Returns the event."""
        outcome = _outcome(outcome)
        kind = outcome["kind"]
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
        if (not self._eval_warned and self._counters["timed_out"] > 0
                and rate > self._eval_warn_rate):
            self._eval_warned = True
            self.warning(protocol.timeout_rate_warning(self._counters, self._eval_warn_rate))
        return event

    def eval_finished(self, step: int, val_loss: Optional[float] = None,
                      train_loss: Optional[float] = None) -> None:
        """The evaluation ended: matches and exact match of the samples
        since eval_started, the train/validation gap; back to `training`."""
        if val_loss is None:
            val_loss = self._eval_val_loss
        if train_loss is None:
            train_loss = self._last_loss
        gap = None if val_loss is None or train_loss is None else val_loss - train_loss
        done = self._eval_samples
        self._emit({
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
        }, rank=True)
        self._set_state("training")
        self._phase("training")
        if self._window_steps == 0:
            self._window_start = time.monotonic()  # evaluating is not training time

    def checkpoint(self, step: int, path: Union[str, os.PathLike]) -> None:
        """A checkpoint was written completely."""
        self._emit({"type": "checkpoint", "step": int(step), "path": str(path)}, rank=True)
        self._phase("training")
        if self._window_steps == 0:
            self._window_start = time.monotonic()

    def warning(self, message: str) -> None:
        """Something the operator should know that does not stop the run."""
        self._emit({"type": "warning", "step": self._step, "message": str(message)}, rank=True)

    # The end

    def _close(self, state: str) -> None:
        self._done = True
        if self._inflight is not None and state != "failed":
            # Every rank began it at the same boundary; a rank that died
            # must not keep this one waiting for long.
            try:
                self._agreement.result(self._inflight, timeout=30.0)
            except Exception:
                pass
        self._inflight = None
        self._heartbeat.state = state
        self._heartbeat.phase = "done"
        if self._spool is not None:
            self._spool.close()
        self._writer.close()
        self._rank_beat.close()
        self._restore_signal_handlers()

    def finish(self, state: str = "finished") -> None:
        """Ends the run as `finished` (max_steps reached) or `stopped`;
        writes everything queued before returning."""
        if self._done:
            return
        if state not in ("finished", "stopped"):
            raise ValueError(f"finish(state) takes \"finished\" or \"stopped\" (got {state!r})")
        self._emit({"type": "finished", "step": self._step, "max_steps": self.max_steps,
                    "state": state, "loss": float_or_text(self._last_loss),
                    "elapsed_secs": self._elapsed()}, rank=True)
        self._close(state)

    def fail(self, message: str) -> None:
        """Ends the run as `failed`; writes everything queued before returning."""
        if self._done:
            return
        self._emit({"type": "failed", "step": self._step, "message": str(message)}, rank=True)
        self._close("failed")

    @property
    def finished(self) -> bool:
        return self._done

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, kind, value, _traceback) -> bool:
        if self._done:
            return False
        if kind is None:
            self.finish()
        elif issubclass(kind, Exception):
            self.fail(str(value) or kind.__name__)
        elif issubclass(kind, SystemExit) and value.code in (None, 0):
            self.finish("stopped" if self._stop_requested else "finished")
        else:
            self.fail(f"interrupted ({kind.__name__})")
        return False
