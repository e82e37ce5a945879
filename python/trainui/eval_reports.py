"""What a Run reports of an evaluation: its start, the validation loss, each
sample generation (started, progress, ended: counted and scored), and its
end with the exact match and the train/validation gap.
"""

from __future__ import annotations

import time
from typing import Any

from . import protocol
from .protocol import finite_number, float_or_text, whole_number

#: Fewest seconds between two `generation_progress` events.
PROGRESS_INTERVAL = 0.25


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


class EvaluationReports:
    """The evaluation reports of a `Run` (a part of it: its methods use the
    state that `Run.__init__` sets up: the counters, the evaluation's
    samples and matches, the logging window)."""

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
        # What the loop did since the last step or boundary was the
        # evaluation's (its validation pass), not training.
        self._train_mark = time.monotonic()
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

    def log_val_loss(self, step: int, loss: Any, batches: int = 1) -> None:
        """Logs a validation loss in one call, for a loop whose evaluation is
        only that: `eval_started`, `val_loss` and `eval_finished` (with the
        train/validation gap), as a full evaluation writes them, so the
        curves, the header, the status file and the log show it. `loss` may
        be a float or a tensor (read back here; None: no batch scored);
        `batches`: how many batches it is the mean of. Inside an evaluation
        begun with `eval_started`, it only records its validation loss.
        The time since the step boundary is the evaluation's, left out of
        the rate and the ETA as every evaluation's."""
        step = whole_number("log_val_loss: step", step)
        batches = whole_number("log_val_loss: batches", batches, "u32")
        value = None if loss is None else float(loss.item() if hasattr(loss, "item") else loss)
        if self._heartbeat.state == "evaluating":
            self.val_loss(step, value, batches)
            return
        self.eval_started(step, 0)
        self.val_loss(step, value, batches)
        self.eval_finished(step)

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
        since eval_started, the train/validation gap; back to `training`
        (or `paused`, for one made while paused)."""
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
        # Back to what it was: an evaluation made while paused ends paused.
        self._set_state("paused" if self._paused else "training")
        self._phase("paused" if self._paused else "training")
        self._train_mark = time.monotonic()  # evaluating is not training time
