"""The greppable log lines of crates/protocol/src/lines.rs, plain style:
the same text, byte for byte, for the same values; `format_event` is the
line (or lines) an event prints as.
"""

from __future__ import annotations

import math
from typing import Any

from .contract import PHASES, command_word, timeout_rate
from .eta import shown_eta
from .formatting import (
    duration,
    escape,
    fixed,
    float_text,
    lower_exp,
    round_half_away,
    rust_debug,
    rust_display,
    thousands,
)

#: Longest model output printed in full; the events keep all of it.
MAX_PRINTED_CHARS = 400


def _clip(text: str, limit: int) -> str:
    return text[:limit]


def printable(text: str) -> str:
    """Model text on one line (newlines shown as `\\n`, every character that
    could drive a terminal escaped), cut when very long."""
    one_line = escape(text)
    if len(one_line) <= MAX_PRINTED_CHARS:
        return one_line
    more = len(one_line) - MAX_PRINTED_CHARS
    return f"{_clip(one_line, MAX_PRINTED_CHARS)}... ({more} more characters)"


def _loss_text(loss: Any) -> str:
    """A loss of an event (number, text, or None) as `{:.4}`, or `-`."""
    if loss is None:
        return "-"
    return fixed(_as_float(loss), 4)


def _as_float(value: Any) -> float:
    if isinstance(value, str):
        return {"NaN": math.nan, "inf": math.inf, "-inf": -math.inf}.get(value, math.nan)
    return float(value)


def step_line(
    step, max_steps, loss, learning_rate, tokens_per_sec, elapsed_secs, eta_secs, grad_norm=None
) -> str:
    line = f"step {step}/{max_steps} | loss {fixed(_as_float(loss), 4)} | lr " + lower_exp(
        learning_rate, 2
    )
    # A job that counts no tokens (not a language model) shows no rate.
    if tokens_per_sec > 0:
        line += f" | {thousands(round_half_away(tokens_per_sec))} tok/s"
    line += f" | elapsed {duration(elapsed_secs)}"
    # No ETA until the producer has one worth showing.
    eta = shown_eta(step, max_steps, _as_float(eta_secs))
    if eta is not None:
        line += f" | eta {duration(eta)}"
    if grad_norm is not None:
        line += f" | grad norm {fixed(_as_float(grad_norm), 3)}"
    return line


def eval_header(step: int) -> str:
    rule = "=" * 64
    return f"{rule}\nFULL EVAL - Step {step}\n{rule}"


def sample_block(s: dict[str, Any]) -> str:
    """The lines of a `sample` event: Sample, PROMPT, GOLDEN, MODEL, verdict,
    LOSS ON THIS EXAMPLE, TIME."""
    outcome = s["outcome"]
    kind = outcome["kind"]
    partial = "" if kind == "completed" else ", partial"
    whom = (
        f"example {s['example']}, {escape(s['origin'])}, prompt "
        f"{rust_debug(_clip(s['prompt'], 60))}"
    )
    if kind == "completed":
        verdict = "MATCH" if s["exact_match"] else "MISMATCH"
    elif kind == "timed_out":
        verdict = (
            f"TIMEOUT: Model generation exceeded {rust_display(s['timeout_secs'])}s at step "
            f"{s['step']} ({whom}; {s['output_tokens']} tokens so far)"
        )
    elif kind == "aborted":
        verdict = (
            f"ABORTED: generation stopped by the operator after {fixed(s['elapsed_secs'], 1)}s "
            f"at step {s['step']} ({whom})"
        )
    else:
        verdict = (
            f"ERROR: generation failed at step {s['step']} ({whom}): {escape(outcome['message'])}"
        )
    return "\n".join(
        [
            (
                f"--- Sample {s['sample']}/{s['of']} (example {s['example']}, "
                f"{escape(s['origin'])}) ---"
            ),
            f"PROMPT: {printable(s['prompt'])}",
            f"GOLDEN ({s['golden_tokens']} tokens): {printable(s['golden'])}",
            f"MODEL ({s['output_tokens']} tokens{partial}): {printable(s['output'])}",
            verdict,
            f"LOSS ON THIS EXAMPLE: {_loss_text(s.get('loss'))}",
            f"TIME: {fixed(s['elapsed_secs'], 3)}s, {fixed(s['tokens_per_sec'], 1)} tokens/s",
        ]
    )


def loss_comparison_line(train_loss, val_loss, gap) -> str:
    gap_text = "-" if gap is None else fixed(_as_float(gap), 4, plus=True)
    return (
        f"Loss Comparison: Train={_loss_text(train_loss)} | Val={_loss_text(val_loss)} | "
        f"Gap={gap_text}"
    )


def exact_match_line(matches, samples, exact_match, counters) -> str:
    c = counters
    return (
        f"EXACT MATCH: {matches}/{samples} ({fixed(100.0 * exact_match, 1)}%) | generations "
        f"{c['generations']}: {c['completed']} completed, {c['timed_out']} timed out, "
        f"{c['aborted']} aborted, {c['errors']} errors (timeout rate "
        f"{fixed(100.0 * timeout_rate(c), 1)}%)"
    )


def warning_line(step: int, message: str) -> str:
    return f"WARNING at step {step}: {escape(message)}"


def stalled_line(step, phase, silent_secs, timeout_secs) -> str:
    return (
        f"STALLED: no progress for {fixed(silent_secs, 0)}s (watchdog.stall_timeout_seconds = "
        f"{rust_display(timeout_secs)}) at step {step}, while {PHASES.get(phase, phase)}"
    )


def checkpoint_line(step: int, path: str) -> str:
    return f"checkpoint saved at step {step}: {escape(path)}"


def finished_line(state, step, max_steps, loss, elapsed_secs) -> str:
    how = "stopped" if state == "stopped" else "finished"
    return (
        f"{how} at step {step}/{max_steps} | final loss {_loss_text(loss)} | elapsed "
        f"{duration(elapsed_secs)}"
    )


def failed_line(step: int, message: str) -> str:
    return f"FAILED at step {step}: {escape(message)}"


def timeout_rate_warning(counters: dict[str, int], warn_rate: float) -> str:
    """The message of the warning an evaluation raises when the timeout rate
    passes `eval.timeout_warn_rate` (crates/trainer/src/trainer/evaluation.rs)."""
    return (
        f"timeout rate {fixed(100.0 * timeout_rate(counters), 1)}% ({counters['timed_out']} of "
        f"{counters['generations']} generations) is above eval.timeout_warn_rate "
        f"{fixed(100.0 * warn_rate, 1)}%: generations that do not end point to a model or data "
        "problem (no end-of-text learned yet, or prompts unlike the training data); the TIMEOUT "
        "lines name the examples"
    )


def format_event(event: dict[str, Any]) -> str | None:
    """The plain line(s) an event prints as, or None (`lines::format` with
    `Style::PLAIN`)."""
    kind = event["type"]
    if kind == "started":
        line = (
            f"run {escape(event['run_name'])} | device {escape(event['device'])} | "
            f"{thousands(event['parameters'])} parameters | vocab {event['vocab_size']} | "
            f"{thousands(event['train_examples'])} train / {thousands(event['val_examples'])} "
            "val examples"
        )
        if event.get("skipped_overlong", 0) > 0:
            line += f" | {event['skipped_overlong']} overlong skipped"
        if event.get("resumed_from") is not None:
            line += f"\nresumed from {escape(event['resumed_from'])} at step {event['start_step']}"
        return line
    if kind == "step":
        return step_line(
            event["step"],
            event["max_steps"],
            event["loss"],
            event["learning_rate"],
            event["tokens_per_sec"],
            event["elapsed_secs"],
            event["eta_secs"],
            event.get("grad_norm"),
        )
    if kind == "state":
        if event["state"] in ("paused", "stopping", "stalled"):
            return f"state {event['state']} at step {event['step']}"
        return None
    if kind == "command_ack":
        return f"command {command_word(event['command'])}: {escape(event['message'])}"
    if kind == "warning":
        return warning_line(event["step"], event["message"])
    if kind == "eval_started":
        return eval_header(event["step"])
    if kind == "sample":
        return sample_block(event)
    if kind == "eval_finished":
        losses = loss_comparison_line(event["train_loss"], event["val_loss"], event["gap"])
        # An evaluation that generated nothing (a validation loss alone) has
        # no match to tell.
        if event["samples"] == 0:
            return losses
        return (
            losses
            + "\n"
            + exact_match_line(
                event["matches"], event["samples"], event["exact_match"], event["counters"]
            )
        )
    if kind == "checkpoint":
        return checkpoint_line(event["step"], event["path"])
    if kind == "non_finite":
        what = {
            "stop": "the run stops without saving",
            "skip": "its update was skipped",
            "warn": "its update was applied",
        }[event["action"]]
        return (
            f"WARNING at step {event['step']}: NON-FINITE loss {float_text(event['loss'])}, "
            f"gradient norm {float_text(event['grad_norm'])}: {what} (train.on_nonfinite = "
            f"{event['action']}; {event['count']} such steps in the run)"
        )
    if kind == "stalled":
        return stalled_line(
            event["step"], event["phase"], event["silent_secs"], event["timeout_secs"]
        )
    if kind == "control":
        command, request, message = (
            escape(event["command"]),
            escape(event["id"]),
            escape(event["message"]),
        )
        if event["accepted"]:
            return f"control {command} ({request}): {message}"
        return f"control {command} ({request}) REJECTED: {message}"
    if kind == "recovered":
        return (
            f"recovered: progress again at step {event['step']} "
            f"({PHASES.get(event['phase'], event['phase'])})"
        )
    if kind == "finished":
        return finished_line(
            event["state"], event["step"], event["max_steps"], event["loss"], event["elapsed_secs"]
        )
    if kind == "failed":
        return failed_line(event["step"], event["message"])
    return None
