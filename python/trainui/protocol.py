"""The run-directory protocol, mirrored from the Rust sources: versions, file
names, phase and state names, the live settings, the command table, events as
plain dicts, and the greppable log lines of src/lines.rs (same text, byte for
byte, for the same values).

This module imports nothing else of the package and nothing outside the
standard library, so it can be read and tested on its own (as src/events.rs).
"""

from __future__ import annotations

import copy
import json
import math
import operator
import time
import unicodedata
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Dict, List, Optional, Tuple

#: Version of events.jsonl lines, the status file and the rank files.
SCHEMA_VERSION = 3
#: Version of the control files this package writes (version 1 is still read).
REQUEST_VERSION = 2
#: The name and version a Python producer writes in `started.producer`.
PRODUCER_NAME = "trainui-python"
PRODUCER_VERSION = "0.1.0"

EVENTS_FILE = "events.jsonl"
STATUS_FILE = "status/training_status.json"
LOG_FILE = "training_output.log"
CONFIG_FILE = "config.json"
LOCK_FILE = "lock"
SPOOL_DIR = "control"
CHECKPOINTS_DIR = "checkpoints"
RANKS_DIR = "ranks"
#: Written by rank 0 when an abort arrives, so other ranks abort too.
ABORT_FILE = "ranks/abort.json"

#: Largest command file read; anything bigger is rejected unread.
MAX_REQUEST_BYTES = 4096
#: Requests older (or further in the future) than this are refused.
STALE_AFTER_SECS = 60.0
#: Exit status of a process that ended itself because its run stalled.
STALL_EXIT_CODE = 75
#: One year: the longest deadline or timeout a setting may hold.
MAX_SECONDS = 365.0 * 24.0 * 3600.0

#: `Phase` names as they are serialised, and as `Phase::as_str` reads them.
PHASES = {
    "starting": "starting",
    "training": "training",
    "validating": "validation loss",
    "generating": "generating",
    "saving": "saving a checkpoint",
    "paused": "paused",
    "done": "done",
}

#: `RunState` names.
RUN_STATES = (
    "starting",
    "training",
    "evaluating",
    "paused",
    "stopping",
    "stopped",
    "finished",
    "failed",
    "stalled",
)
FINAL_STATES = ("stopped", "finished", "failed")

#: The commands: serialised name -> the word `trainui ctl` takes. `set` is
#: serialised as `{"set": {KEY: VALUE}}`.
COMMAND_WORDS = {
    "stop": "stop",
    "pause": "pause",
    "resume": "resume",
    "eval_now": "eval",
    "abort_generation": "abort",
    "save": "save",
    "set": "set",
}
#: Commands that take no argument, in the order of `CommandKind::all`.
PLAIN_COMMANDS = ("stop", "pause", "resume", "eval_now", "abort_generation", "save")

#: Outcome kinds of a generation.
OUTCOMES = ("completed", "timed_out", "aborted", "error")


# ---------------------------------------------------------------------------
# Live settings

#: The live settings: section -> key -> (default, kind). Kinds: "u64" and
#: "u32" (whole numbers of 0 or more that fit the Rust field of
#: `LiveSettings`), "f64" (a finite number), "seconds" (above 0, at most a
#: year). This is the one table the defaults, the checks and `set` derive
#: from. `train.learning_rate` is this package's own addition.
LIVE_SETTINGS: Dict[str, Dict[str, Tuple[Any, str]]] = {
    "train": {
        "log_steps": (25, "u64"),
        "learning_rate": (None, "f64"),
    },
    "eval": {
        "eval_steps": (250, "u64"),
        "val_batches": (8, "u32"),
        "samples": (8, "u32"),
        "max_new_tokens": (16, "u32"),
        "min_new_tokens": (0, "u32"),
        "eval_timeout_seconds": (60.0, "seconds"),
        "temperature": (0.0, "f64"),
        "timeout_warn_rate": (0.1, "f64"),
    },
    "checkpoint": {
        "save_steps": (500, "u64"),
        "save_total_limit": (3, "u32"),
    },
    "watchdog": {
        "stall_timeout_seconds": (300.0, "seconds"),
    },
}

#: The largest value of each whole-number kind.
_LARGEST = {"u64": 2**64 - 1, "u32": 2**32 - 1}

#: Lower bounds of counts, as `Config::validate` checks them (`at_least`).
_AT_LEAST = {
    "train.log_steps": 1,
    "eval.val_batches": 1,
    "eval.max_new_tokens": 1,
}


class SettingsError(ValueError):
    """A settings change that is refused: unknown key, wrong type, out of range."""


def default_settings() -> Dict[str, Dict[str, Any]]:
    """The live settings a run starts with, before any override
    (`train.learning_rate` is left out until the producer knows it)."""
    return {
        section: {key: default for key, (default, _) in keys.items() if default is not None}
        for section, keys in LIVE_SETTINGS.items()
    }


def live_keys() -> List[str]:
    """Every dotted key `set` may change."""
    return [f"{section}.{key}" for section, keys in LIVE_SETTINGS.items() for key in keys]


def flatten(nested: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """`{"eval": {"eval_steps": 1}}` as `{"eval.eval_steps": 1}`."""
    out: Dict[str, Any] = {}
    for key, value in nested.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(flatten(value, dotted))
        else:
            out[dotted] = value
    return out


def _unexpected(value: Any) -> str:
    """What serde calls a value of the wrong type (`Unexpected`'s Display)."""
    if isinstance(value, bool):
        return f"boolean `{'true' if value else 'false'}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        text = rust_display(value)
        if math.isfinite(value) and "." not in text:
            text += ".0"
        return f"floating point `{text}`"
    if isinstance(value, str):
        return f"string {json.dumps(value, ensure_ascii=False)}"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "sequence"
    if isinstance(value, dict):
        return "map"
    return f"{type(value).__name__} {value!r}"


def _checked_value(key: str, value: Any, source: str) -> Any:
    """`value` for `key` as `config::change_live` takes it, or SettingsError
    with the message Rust gives (`SOURCE KEY=VALUE: ...`)."""
    shown = f"{source} {key}={json_text(json_safe(value))}"
    section, _, name = key.partition(".")
    spec = LIVE_SETTINGS.get(section, {}).get(name)
    if spec is None:
        raise SettingsError(
            f"{shown}: {key} is not a setting that can change while the run goes on; those "
            f"are {', '.join(live_keys())}"
        )
    kind = spec[1]
    if kind in _LARGEST:
        # serde: a float is never a whole number, however it reads.
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingsError(f"{shown}: {key}: invalid type: {_unexpected(value)}, "
                                f"expected {kind}")
        if not 0 <= value <= _LARGEST[kind]:
            raise SettingsError(f"{shown}: {key}: invalid value: {_unexpected(value)}, "
                                f"expected {kind}")
        low = _AT_LEAST.get(key)
        if low is not None and value < low:
            raise SettingsError(f"{shown}: {key} must be at least {low} (got {value})")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SettingsError(f"{shown}: {key}: invalid type: {_unexpected(value)}, expected f64")
    value = float(value)
    if kind == "seconds":
        if not (math.isfinite(value) and 0.0 < value <= MAX_SECONDS):
            raise SettingsError(
                f"{shown}: {key}: must be a number of seconds greater than 0 and at most "
                f"{rust_display(MAX_SECONDS)} (one year) (got {rust_display(value)})"
            )
        if key == "watchdog.stall_timeout_seconds" and value < 1.0:
            raise SettingsError(
                f"{shown}: {key} must be at least 1 (got {rust_display(value)}): the watchdog "
                "looks a few times a second, so a shorter silence is no stall"
            )
        return value
    if key == "train.learning_rate" and not (math.isfinite(value) and value > 0.0):
        raise SettingsError(f"{shown}: {key} must be a number greater than 0 "
                            f"(got {rust_display(value)})")
    if key == "eval.temperature" and not (math.isfinite(value) and value >= 0.0):
        raise SettingsError(f"{shown}: {key} must be a number of 0 or more "
                            f"(got {rust_display(value)})")
    if key == "eval.timeout_warn_rate" and not (0.0 <= value <= 1.0):
        raise SettingsError(f"{shown}: eval.timeout_warn_rate must be between 0 and 1 "
                            f"(got {rust_display(value)})")
    if not math.isfinite(value):
        raise SettingsError(f"{shown}: {key}: must be finite (got {rust_display(value)})")
    return value


def change_settings(
    settings: Dict[str, Dict[str, Any]], changes: Dict[str, Any], source: str = "set"
) -> Tuple[Dict[str, Dict[str, Any]], List[str]]:
    """`settings` with `changes` (dotted keys to values) made, when every
    change passes the checks; also each change as `key = value` (empty when
    nothing changed), as `config::change_live` says them. Raises
    SettingsError naming the key otherwise; `settings` is never modified."""
    result = copy.deepcopy(settings)
    applied = []
    for key in sorted(changes):
        value = _checked_value(key, changes[key], source)
        section, _, name = key.partition(".")
        old = result.setdefault(section, {}).get(name)
        if old != value or old is None:
            applied.append(f"{key} = {json_text(value)}")
        result[section][name] = value
    return result, applied


def settings_with(overrides: Optional[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """The default settings with nested `overrides` made (checked)."""
    settings = default_settings()
    if overrides:
        settings, _ = change_settings(settings, flatten(overrides), "settings")
    return settings


# ---------------------------------------------------------------------------
# Values the producer hands on: what the protocol's fields can carry

def whole_number(name: str, value: Any, kind: str = "u64", low: int = 0) -> int:
    """`value` as an int that an unsigned field of the protocol of `kind`
    ("u64", "u32") can carry, at least `low`; ValueError naming `name` and
    the range otherwise. Ints (numpy's and torch's integer scalars too) and
    floats that are whole numbers pass; booleans, fractions, NaN and
    infinities do not."""
    high = _LARGEST[kind]
    number: Optional[int] = None
    if not isinstance(value, bool):
        try:
            number = operator.index(value)
        except TypeError:
            if isinstance(value, float) and value.is_integer():
                number = int(value)
    if number is None or not low <= number <= high:
        raise ValueError(
            f"{name} must be a whole number from {low} to {high} (the protocol's {kind}); "
            f"got {value!r}"
        )
    return number


def finite_number(name: str, value: Any) -> float:
    """`value` as a float the protocol's f64 fields can carry (serde writes
    a NaN or an infinity as null, which no reader takes for a number);
    ValueError naming `name` otherwise."""
    try:
        number = None if isinstance(value, (bool, str, bytes)) else float(value)
    except (TypeError, ValueError, RuntimeError):
        number = None
    if number is None or not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    return number


# ---------------------------------------------------------------------------
# JSON

def float_or_text(value: Optional[float]) -> Any:
    """A loss as JSON: a number, or "NaN", "inf", "-inf" (as Rust's
    `float_or_text`); None stays None."""
    if value is None:
        return None
    value = float(value)
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "inf" if value > 0 else "-inf"


def json_safe(value: Any) -> Any:
    """A copy of a config-like object that JSON can hold: dicts (keys as
    text), lists and tuples recursed; numbers that are not finite as
    float_or_text writes them ("NaN", "inf", "-inf"); anything else that is
    not JSON (paths, enums, dtypes...) as its str()."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else float_or_text(value)
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return str(value)


#: Fields that Rust writes with `float_or_text` (a loss or a gradient norm
#: that is not a number is text); other non-finite numbers are `null`, as
#: serde_json writes a plain f64 that is not finite.
LOSS_FIELDS = frozenset({"loss", "grad_norm", "val_loss", "train_loss", "gap"})


def serde_safe(value: Any, key: Optional[str] = None) -> Any:
    """An event (or the status) as serde would write it: non-finite numbers
    under LOSS_FIELDS as text, other non-finite numbers as None, anything
    JSON cannot hold as its str(). `key` is the field `value` is under."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return float_or_text(value) if key in LOSS_FIELDS else None
    if isinstance(value, dict):
        return {str(k): serde_safe(item, str(k)) for k, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [serde_safe(item) for item in value]
    item = getattr(value, "item", None)
    if callable(item):  # numpy and torch scalars
        try:
            plain = item()
        except (TypeError, ValueError, RuntimeError):
            return str(value)
        if isinstance(plain, (bool, int, float)):
            return serde_safe(plain, key)
    return str(value)


def json_text(value: Any) -> str:
    """Compact JSON, as serde_json writes it (never a bare NaN)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def rfc3339_millis(unix: float) -> str:
    """`2026-11-29T15:00:01.123Z`, as humantime's `format_rfc3339_millis`."""
    whole = int(unix)
    millis = int((unix - whole) * 1000)
    if millis > 999:
        millis = 999
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


def parse_rfc3339(text: Any) -> Optional[float]:
    """The unix time of `2026-11-29T15:00:01.123Z` (as rfc3339_millis writes
    it), or None for anything else."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
    except ValueError:
        return None
    return moment.replace(tzinfo=timezone.utc).timestamp()


def command_word(command: Any) -> str:
    """The `ctl` word of a command (`eval` for `eval_now`)."""
    if isinstance(command, dict):
        return "set"
    return COMMAND_WORDS.get(command, str(command))


def zero_counters() -> Dict[str, int]:
    return {"generations": 0, "completed": 0, "timed_out": 0, "aborted": 0, "errors": 0}


def timeout_rate(counters: Dict[str, int]) -> float:
    generations = counters.get("generations", 0)
    return counters.get("timed_out", 0) / generations if generations else 0.0


# ---------------------------------------------------------------------------
# The status file: a fold over the events (RunStatus::apply)

def new_status(run_name: str, max_steps: int, pid: int) -> Dict[str, Any]:
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
        self._state_before_stall: Optional[str] = None

    def _set_counters(self, counters: Dict[str, int]) -> None:
        s = self.status
        s["generations"] = counters["generations"]
        s["completed"] = counters["completed"]
        s["timeouts"] = counters["timed_out"]
        s["aborts"] = counters["aborted"]
        s["errors"] = counters["errors"]
        s["timeout_rate"] = timeout_rate(counters)

    def apply(self, event: Dict[str, Any]) -> None:
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
                f"non-finite at step {event['step']}: loss {_text_of(event['loss'])}, grad norm "
                f"{_text_of(event['grad_norm'])} (train.on_nonfinite = {event['action']})"
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
            s["elapsed_secs"] = event["elapsed_secs"]
            s["eta_secs"] = event["eta_secs"]
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


def _text_of(value: Any) -> str:
    """A float_or_text value as Rust's Display writes the f64."""
    if isinstance(value, str):
        return value
    return rust_display(value)


def shows_in_status(event: Dict[str, Any]) -> bool:
    """Whether the event changes what the status file shows."""
    return event["type"] not in ("generation_started", "generation_progress")


# ---------------------------------------------------------------------------
# Number formatting as Rust's `format!` does it

def _special(value: float) -> Optional[str]:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return None


def fixed(value: float, places: int, plus: bool = False) -> str:
    """`format!("{:.N}", value)` (`{:+.N}` with `plus`)."""
    value = float(value)
    special = _special(value)
    if special is not None:
        if plus and special == "inf":
            return "+inf"
        return special
    text = f"{value:.{places}f}"
    if plus and not text.startswith("-"):
        text = "+" + text
    return text


def lower_exp(value: float, places: int) -> str:
    """`format!("{:.Ne}", value)`: `3.00e-4`, `1.50e2`."""
    value = float(value)
    special = _special(value)
    if special is not None:
        return special
    mantissa, _, exponent = f"{value:.{places}e}".partition("e")
    return f"{mantissa}e{int(exponent)}"


def rust_display(value: float) -> str:
    """`format!("{}", value)` of an f64: the shortest text that reads back
    as the same number, never with an exponent, no `.0` for whole numbers."""
    value = float(value)
    special = _special(value)
    if special is not None:
        return special
    text = repr(value)
    if "e" in text or "E" in text:
        text = format(Decimal(text), "f")
    if text.endswith(".0"):
        text = text[:-2]
    return text


def round_half_away(value: float) -> int:
    """`value.round() as u64`: halves away from zero, negatives and NaN 0."""
    if not math.isfinite(value):
        return 0 if math.isnan(value) or value < 0 else 2**64 - 1
    if value <= 0:
        return 0
    return int(math.floor(value + 0.5))


def thousands(value: int) -> str:
    """`1234567` as `1,234,567`."""
    return f"{int(value):,}"


def duration(secs: float) -> str:
    """Seconds as `H:MM:SS`."""
    total = round_half_away(secs) if math.isfinite(secs) else 0
    return f"{total // 3600}:{total // 60 % 60:02d}:{total % 60:02d}"


def rust_debug(text: str) -> str:
    """`format!("{:?}", text)`: quoted, with Rust's escapes."""
    out = ['"']
    for ch in text:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\0":
            out.append("\\0")
        elif unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"):
            out.append(f"\\u{{{ord(ch):x}}}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


# ---------------------------------------------------------------------------
# Log lines (src/lines.rs, plain style)

#: Longest model output printed in full; the events keep all of it.
MAX_PRINTED_CHARS = 400


def _clip(text: str, limit: int) -> str:
    return text[:limit]


def is_unsafe(ch: str) -> bool:
    """Whether a character must not reach a terminal as it is (text::is_unsafe):
    the C0 controls (tab and newline included), DEL, the C1 controls, the
    bidirectional marks, embeddings, overrides and isolates, and the
    Unicode line and paragraph separators."""
    code = ord(ch)
    return (code <= 0x1F or 0x7F <= code <= 0x9F or code in (0x200E, 0x200F, 0x061C)
            or 0x2028 <= code <= 0x202E or 0x2066 <= code <= 0x2069)


def escape(text: str) -> str:
    """`text` on one line with every unsafe character shown escaped, as
    `text::escape` writes it: `\\n`, `\\r`, `\\t`, `\\x1b` (C0, DEL),
    `\\u{9b}` (C1, bidirectional controls)."""
    if not any(is_unsafe(ch) for ch in text):
        return text
    out = []
    for ch in text:
        if not is_unsafe(ch):
            out.append(ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\u{{{ord(ch):x}}}")
    return "".join(out)


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


def step_line(step, max_steps, loss, learning_rate, tokens_per_sec, elapsed_secs, eta_secs) -> str:
    return (
        f"step {step}/{max_steps} | loss {fixed(_as_float(loss), 4)} | lr "
        f"{lower_exp(learning_rate, 2)} | {thousands(round_half_away(tokens_per_sec))} tok/s | "
        f"elapsed {duration(elapsed_secs)} | eta {duration(eta_secs)}"
    )


def eval_header(step: int) -> str:
    rule = "=" * 64
    return f"{rule}\nFULL EVAL - Step {step}\n{rule}"


def sample_block(s: Dict[str, Any]) -> str:
    """The lines of a `sample` event: Sample, PROMPT, GOLDEN, MODEL, verdict,
    LOSS ON THIS EXAMPLE, TIME."""
    outcome = s["outcome"]
    kind = outcome["kind"]
    partial = "" if kind == "completed" else ", partial"
    whom = (f"example {s['example']}, {escape(s['origin'])}, prompt "
            f"{rust_debug(_clip(s['prompt'], 60))}")
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
        verdict = (f"ERROR: generation failed at step {s['step']} ({whom}): "
                   f"{escape(outcome['message'])}")
    return "\n".join(
        [
            f"--- Sample {s['sample']}/{s['of']} (example {s['example']}, "
            f"{escape(s['origin'])}) ---",
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


def timeout_rate_warning(counters: Dict[str, int], warn_rate: float) -> str:
    """The message of the warning an evaluation raises when the timeout rate
    passes `eval.timeout_warn_rate` (src/trainer/evaluation.rs)."""
    return (
        f"timeout rate {fixed(100.0 * timeout_rate(counters), 1)}% ({counters['timed_out']} of "
        f"{counters['generations']} generations) is above eval.timeout_warn_rate "
        f"{fixed(100.0 * warn_rate, 1)}%: generations that do not end point to a model or data "
        "problem (no end-of-text learned yet, or prompts unlike the training data); the TIMEOUT "
        "lines name the examples"
    )


def format_event(event: Dict[str, Any]) -> Optional[str]:
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
        return (
            loss_comparison_line(event["train_loss"], event["val_loss"], event["gap"])
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
            f"WARNING at step {event['step']}: NON-FINITE loss {_text_of(event['loss'])}, "
            f"gradient norm {_text_of(event['grad_norm'])}: {what} (train.on_nonfinite = "
            f"{event['action']}; {event['count']} such steps in the run)"
        )
    if kind == "stalled":
        return stalled_line(
            event["step"], event["phase"], event["silent_secs"], event["timeout_secs"]
        )
    if kind == "control":
        command, request, message = (escape(event["command"]), escape(event["id"]),
                                     escape(event["message"]))
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
