"""The status file's contents: a fold over the events, as
crates/protocol/src/status.rs writes them (`RunStatus::new`,
`RunStatus::apply`).
"""

from __future__ import annotations

import copy
from typing import Any

from .contract import PHASES, SCHEMA_VERSION, timeout_rate
from .eta import shown_eta
from .formatting import fixed, float_text


def new_status(run_name: str, max_steps: int, pid: int) -> dict[str, Any]:
    """The status before any event (RunStatus::new)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "run_name": run_name,
        "state": "starting",
        "current_step": 0,
        "max_steps": int(max_steps),
        "loss": None,
        "val_loss": None,
        "learning_rate": None,
        "tokens_per_sec": None,
        "grad_norm": None,
        "elapsed_secs": 0.0,
        "eta_secs": None,
        "device": "",
        "evals": 0,
        "generations": 0,
        "completed": 0,
        "timeouts": 0,
        "aborts": 0,
        "errors": 0,
        "timeout_rate": 0.0,
        "exact_match": None,
        "last_checkpoint": None,
        "resumed_from": None,
        "warnings": 0,
        "last_message": None,
        "settings": None,
        "nonfinite_steps": 0,
        "producer": None,
        "updated_at": "",
        "pid": int(pid),
    }


class StatusFold:
    """The status file's contents, following the events (a port of
    `RunStatus::apply`, plus `producer` of schema 3)."""

    def __init__(self, run_name: str, max_steps: int, pid: int):
        self.status = new_status(run_name, max_steps, pid)
        self._state_before_stall: str | None = None

    def _set_counters(self, counters: dict[str, int]) -> None:
        s = self.status
        s["generations"] = counters["generations"]
        s["completed"] = counters["completed"]
        s["timeouts"] = counters["timed_out"]
        s["aborts"] = counters["aborted"]
        s["errors"] = counters["errors"]
        s["timeout_rate"] = timeout_rate(counters)

    def apply(self, event: dict[str, Any]) -> None:
        s = self.status
        kind = event["type"]
        if kind == "started":
            s["run_name"] = event["run_name"]
            s["pid"] = event["pid"]
            s["device"] = event["device"]
            s["current_step"] = event["start_step"]
            s["max_steps"] = event["max_steps"]
            s["resumed_from"] = event.get("resumed_from")
            s["evals"] = event["evals"]
            self._set_counters(event["counters"])
            if event.get("settings") is not None:
                s["settings"] = copy.deepcopy(event["settings"])
            s["nonfinite_steps"] = event.get("nonfinite_steps", 0)
            s["producer"] = copy.deepcopy(event.get("producer"))
        elif kind == "settings":
            s["settings"] = copy.deepcopy(event["settings"])
        elif kind == "eval_started":
            s["current_step"] = event["step"]
            s["evals"] = event["eval"]
        elif kind == "val_loss":
            s["val_loss"] = event["loss"]
        elif kind in ("generation_started", "generation_progress"):
            pass
        elif kind == "sample":
            self._set_counters(event["counters"])
        elif kind == "eval_finished":
            s["exact_match"] = event["exact_match"]
            self._set_counters(event["counters"])
        elif kind == "checkpoint":
            s["last_checkpoint"] = event["path"]
        elif kind == "non_finite":
            s["nonfinite_steps"] = event["count"]
            s["last_message"] = (
                f"non-finite at step {event['step']}: loss {float_text(event['loss'])}, grad norm "
                f"{float_text(event['grad_norm'])} (train.on_nonfinite = {event['action']})"
            )
        elif kind == "stalled":
            if s["state"] != "stalled":
                self._state_before_stall = s["state"]
            s["state"] = "stalled"
            s["current_step"] = event["step"]
            s["last_message"] = (
                f"stalled: no progress for {fixed(event['silent_secs'], 0)}s at step "
                f"{event['step']} ({PHASES.get(event['phase'], event['phase'])})"
            )
        elif kind == "control":
            verdict = "accepted" if event["accepted"] else "rejected"
            s["last_message"] = f"{event['command']} {verdict}: {event['message']}"
        elif kind == "recovered":
            if self._state_before_stall is not None:
                s["state"] = self._state_before_stall
                self._state_before_stall = None
        elif kind == "step":
            s["current_step"] = event["step"]
            s["max_steps"] = event["max_steps"]
            s["loss"] = event["loss"]
            s["learning_rate"] = event["learning_rate"]
            s["tokens_per_sec"] = event["tokens_per_sec"]
            if event.get("grad_norm") is not None:
                s["grad_norm"] = event["grad_norm"]
            s["elapsed_secs"] = event["elapsed_secs"]
            s["eta_secs"] = shown_eta(event["step"], event["max_steps"], event["eta_secs"])
        elif kind == "state":
            s["current_step"] = event["step"]
            if s["state"] == "stalled":
                self._state_before_stall = event["state"]
            else:
                s["state"] = event["state"]
        elif kind == "command_ack":
            s["last_message"] = event["message"]
        elif kind == "warning":
            s["warnings"] += 1
            s["last_message"] = event["message"]
        elif kind == "finished":
            s["current_step"] = event["step"]
            s["state"] = event["state"]
            s["elapsed_secs"] = event["elapsed_secs"]
            if event["state"] == "finished":
                s["eta_secs"] = 0.0
        elif kind == "failed":
            s["current_step"] = event["step"]
            s["state"] = "failed"
            s["last_message"] = event["message"]


def shows_in_status(event: dict[str, Any]) -> bool:
    """Whether the event changes what the status file shows."""
    return event["type"] not in ("generation_started", "generation_progress")
