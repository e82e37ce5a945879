"""The run-directory protocol, mirrored from the Rust sources: versions, file
names, phase and state names, the live settings, the command table, events as
plain dicts, and the greppable log lines of crates/protocol/src/lines.rs (same text, byte for
byte, for the same values).

This module imports nothing else of the package and nothing outside the
standard library, so it can be read and tested on its own (as crates/protocol/src/events.rs).
The live settings' defaults, kinds and bounds are not copied here: they are
read from live_settings.json beside it, which trainui's Rust config writes
(see _read_live_table), and protocol/cases/ holds the answers both
producers must give (python/tests/test_conformance.py).
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
from importlib import metadata as _metadata
from pathlib import Path
from typing import Any

#: Version of events.jsonl lines, the status file and the rank files.
SCHEMA_VERSION = 3
#: Version of the control files this package writes (version 1 is still read).
REQUEST_VERSION = 2
#: The name and version a Python producer writes in `started.producer`.
PRODUCER_NAME = "trainui-python"


def _installed_version() -> str:
    """The installed distribution's version, which is the Rust workspace's
    (tests/test_version.py keeps pyproject.toml and Cargo.toml equal)."""
    try:
        return _metadata.version("trainui")
    except _metadata.PackageNotFoundError:
        # A source tree that was never installed (an example run from a
        # clone puts python/ on sys.path): no metadata to read.
        return "0+unknown"


PRODUCER_VERSION = _installed_version()

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


def _read_live_table() -> dict[str, Any]:
    """live_settings.json beside this module: each live key's kind, default
    and bounds, the range of a number of seconds, and the order of the
    config's range checks. It is written from trainui's Rust config by
    crates/protocol/tests/conformance.rs, never by hand, and that test fails
    when the config and the file differ: the defaults and bounds live in the
    Rust config alone."""
    with open(Path(__file__).with_name("live_settings.json"), encoding="utf-8") as file:
        return json.load(file)


_LIVE_TABLE = _read_live_table()

#: Each live key's entry of the table, by dotted key: `kind` ("u64" and
#: "u32": whole numbers that fit the Rust field of `LiveSettings`; "f64": a
#: finite number; "seconds": a number of seconds, see _SECONDS), `default`,
#: and its bounds as the config takes them, `min`/`max` inclusive,
#: `above`/`below` exclusive. `train.learning_rate` is this package's own
#: addition (no default: the job's optimizer has it).
_SPECS: dict[str, dict[str, Any]] = {entry["key"]: entry for entry in _LIVE_TABLE["settings"]}
_SPECS["train.learning_rate"] = {
    "key": "train.learning_rate",
    "kind": "f64",
    "default": None,
    "above": 0.0,
}

#: The range of a number of seconds, as a type (`config::Seconds`).
_SECONDS: dict[str, float] = _LIVE_TABLE["seconds"]
#: One year: the longest deadline or timeout a setting may hold.
MAX_SECONDS = float(_SECONDS["max"])

#: The keys whose range the config checks beyond their type, in the order
#: `Config::validate` checks them: of several changes out of range, the
#: first is refused (the learning rate's check comes first there too).
_CHECK_ORDER: list[str] = ["train.learning_rate", *_LIVE_TABLE["check_order"]]

#: Why a bound holds, where `Config::validate` says so.
_WHY = {
    "watchdog.stall_timeout_seconds": (
        ": the watchdog looks a few times a second, so a shorter silence is no stall"
    ),
}


def _live_settings() -> dict[str, dict[str, tuple[Any, str]]]:
    sections: dict[str, dict[str, tuple[Any, str]]] = {}
    for key, spec in _SPECS.items():
        section, _, name = key.partition(".")
        sections.setdefault(section, {})[name] = (spec["default"], spec["kind"])
    return sections


#: The live settings: section -> key -> (default, kind), built from the
#: table (see _SPECS). The defaults, the checks and `set` derive from it.
LIVE_SETTINGS: dict[str, dict[str, tuple[Any, str]]] = _live_settings()

#: The largest value of each whole-number kind.
_LARGEST = {"u64": 2**64 - 1, "u32": 2**32 - 1}

#: Lower bounds of counts above what their type takes, as `Config::validate`
#: checks them (`at_least`).
_AT_LEAST = {
    key: spec["min"]
    for key, spec in _SPECS.items()
    if spec["kind"] in _LARGEST and spec.get("min", 0) > 0
}


class SettingsError(ValueError):
    """A settings change that is refused: unknown key, wrong type, out of range."""


def default_settings() -> dict[str, dict[str, Any]]:
    """The live settings a run starts with, before any override
    (`train.learning_rate` is left out until the producer knows it)."""
    return {
        section: {key: default for key, (default, _) in keys.items() if default is not None}
        for section, keys in LIVE_SETTINGS.items()
    }


def live_keys() -> list[str]:
    """Every dotted key `set` may change."""
    return [f"{section}.{key}" for section, keys in LIVE_SETTINGS.items() for key in keys]


def flatten(nested: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"eval": {"eval_steps": 1}}` as `{"eval.eval_steps": 1}`."""
    out: dict[str, Any] = {}
    for key, value in nested.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(flatten(value, dotted))
        else:
            out[dotted] = value
    return out


def unexpected(value: Any) -> str:
    """What serde_json calls a value of the wrong type (`Unexpected`)."""
    if isinstance(value, bool):
        return f"boolean `{'true' if value else 'false'}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{serde_float(value)}`"
    if isinstance(value, str):
        return f"string {json.dumps(value, ensure_ascii=False)}"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "sequence"
    if isinstance(value, dict):
        return "map"
    return f"{type(value).__name__} {value!r}"


def _within(value: float, bounds: dict[str, Any]) -> bool:
    """Whether `value` is a finite number inside `bounds` (min/max
    inclusive, above/below exclusive)."""
    return (
        math.isfinite(value)
        and ("min" not in bounds or value >= bounds["min"])
        and ("above" not in bounds or value > bounds["above"])
        and ("max" not in bounds or value <= bounds["max"])
        and ("below" not in bounds or value < bounds["below"])
    )


def _shown(source: str, key: str, value: Any) -> str:
    """How a change is named in its refusal: `SOURCE KEY=VALUE`."""
    return f"{source} {key}={serde_text(json_safe(value))}"


def _typed(key: str, value: Any, shown: str) -> Any:
    """`value` as the config's type for `key` takes it, or SettingsError
    with the message serde gives (a number of seconds checks its range as
    a type)."""
    spec = _SPECS.get(key)
    if spec is None:
        raise SettingsError(
            f"{shown}: {key} is not a setting that can change while the run goes on; those "
            f"are {', '.join(live_keys())}"
        )
    kind = spec["kind"]
    if kind in _LARGEST:
        # serde: a float is never a whole number, however it reads.
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingsError(
                f"{shown}: {key}: invalid type: {unexpected(value)}, expected {kind}"
            )
        if not 0 <= value <= _LARGEST[kind]:
            raise SettingsError(
                f"{shown}: {key}: invalid value: {unexpected(value)}, expected {kind}"
            )
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SettingsError(f"{shown}: {key}: invalid type: {unexpected(value)}, expected f64")
    value = float(value)
    if kind == "seconds" and not _within(value, _SECONDS):
        raise SettingsError(
            f"{shown}: {key}: must be a number of seconds greater than "
            f"{rust_display(_SECONDS['above'])} and at most {rust_display(MAX_SECONDS)} "
            f"(one year) (got {rust_display(value)})"
        )
    return value


def _checked_bounds(spec: dict[str, Any]) -> dict[str, Any]:
    """The bounds of a key that the config checks beyond its type."""
    bounds = {side: spec[side] for side in ("min", "above", "max", "below") if side in spec}
    kind = spec["kind"]
    if kind in _LARGEST:
        if bounds.get("min", 0) <= 0:
            bounds.pop("min", None)
        if bounds.get("max", _LARGEST[kind]) >= _LARGEST[kind]:
            bounds.pop("max", None)
    elif kind == "seconds":
        low = _SECONDS.get("above", _SECONDS.get("min", -math.inf))
        high = _SECONDS.get("max", _SECONDS.get("below", math.inf))
        for side in ("min", "above"):
            if bounds.get(side, math.inf) <= low:
                del bounds[side]
        for side in ("max", "below"):
            if bounds.get(side, -math.inf) >= high:
                del bounds[side]
    return bounds


def _in_range(key: str, value: Any, shown: str) -> None:
    """SettingsError, with the message `Config::validate` gives, when the
    (typed) `value` is outside the range the config lets `key` hold."""
    spec = _SPECS[key]
    bounds = _checked_bounds(spec)
    shown_value = str(value) if spec["kind"] in _LARGEST else rust_display(value)
    got = f"(got {shown_value})"
    if spec["kind"] in _LARGEST or spec["kind"] == "seconds":
        low = bounds.get("min", bounds.get("above"))
        high = bounds.get("max", bounds.get("below"))
        if low is not None and not _within(
            value, {k: v for k, v in bounds.items() if k in ("min", "above")}
        ):
            raise SettingsError(
                f"{shown}: {key} must be at least {_number(low)} {got}{_WHY.get(key, '')}"
            )
        if high is not None and not _within(value, bounds):
            raise SettingsError(
                f"{shown}: {key} must be at most {_number(high)} {got}{_WHY.get(key, '')}"
            )
        return
    if not bounds:
        if not math.isfinite(value):
            raise SettingsError(f"{shown}: {key}: must be finite {got}")
        return
    if _within(value, bounds):
        return
    low = bounds.get("min", bounds.get("above"))
    high = bounds.get("max", bounds.get("below"))
    if low is not None and high is not None:
        message = f"must be between {_number(low)} and {_number(high)}"
    elif "above" in bounds:
        message = f"must be a number greater than {_number(low)}"
    elif low is not None:
        message = f"must be a number of {_number(low)} or more"
    else:
        message = f"must be at most {_number(high)}"
    raise SettingsError(f"{shown}: {key} {message} {got}")


def _number(bound: Any) -> str:
    """A bound as Rust's Display writes it."""
    return str(bound) if isinstance(bound, int) else rust_display(bound)


def _checked_value(key: str, value: Any, source: str) -> Any:
    """`value` for `key` as `config::change_live` takes it, or SettingsError
    with the message Rust gives (`SOURCE KEY=VALUE: ...`)."""
    shown = _shown(source, key, value)
    value = _typed(key, value, shown)
    _in_range(key, value, shown)
    return value


def change_settings(
    settings: dict[str, dict[str, Any]], changes: dict[str, Any], source: str = "set"
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """`settings` with `changes` (dotted keys to values) made, when every
    change passes the checks; also each change as `key = value` (empty when
    nothing changed), as `config::change_live` says them. Raises
    SettingsError naming the key otherwise; `settings` is never modified.
    As in Rust, the types are checked first (in key order), then the
    ranges (in the order of `Config::validate`)."""
    shown = {key: _shown(source, key, value) for key, value in changes.items()}
    checked = {key: _typed(key, changes[key], shown[key]) for key in sorted(changes)}
    for key in [*_CHECK_ORDER, *sorted(checked)]:
        if key in checked:
            _in_range(key, checked[key], shown[key])
    result = copy.deepcopy(settings)
    applied = []
    for key, value in checked.items():
        section, _, name = key.partition(".")
        old = result.setdefault(section, {}).get(name)
        if old != value or old is None:
            applied.append(f"{key} = {serde_text(value)}")
        result[section][name] = value
    return result, applied


def settings_with(overrides: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
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
    number: int | None = None
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


def float_or_text(value: float | None) -> Any:
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


def serde_safe(value: Any, key: str | None = None) -> Any:
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
    """Compact JSON, as serde_json writes it (never a bare NaN), but for
    the text of some numbers (`1e-05` for serde_json's `0.00001`), which no
    JSON reader minds; text that must read as Rust's uses serde_text."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def serde_float(value: float) -> str:
    """An f64 as serde_json writes it: the shortest digits that read back
    as the same number, in fixed notation from 1e-5 to below 1e16 (whole
    numbers with `.0`), else in exponent form (`1e-7`, `1.5e+21`)."""
    value = float(value)
    special = _special(value)
    if special is not None:
        return special
    if value == 0.0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    sign = "-" if value < 0 else ""
    exact = Decimal(repr(abs(value))).as_tuple()  # repr: the shortest digits
    digits = "".join(map(str, exact.digits)).rstrip("0")
    exponent = exact.exponent + len(exact.digits) - 1  # of the first digit
    if -5 <= exponent <= 15:
        if len(digits) - 1 <= exponent:
            return f"{sign}{digits}{'0' * (exponent + 1 - len(digits))}.0"
        if exponent >= 0:
            return f"{sign}{digits[: exponent + 1]}.{digits[exponent + 1 :]}"
        return f"{sign}0.{'0' * (-exponent - 1)}{digits}"
    mantissa = digits[0] + (f".{digits[1:]}" if len(digits) > 1 else "")
    return f"{sign}{mantissa}e{'+' if exponent >= 0 else '-'}{abs(exponent)}"


def serde_text(value: Any) -> str:
    """Compact JSON exactly as serde_json's `Value` writes it (as Rust
    names a value in a message): keys in order, numbers as serde_float."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return serde_float(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        items = sorted((str(key), item) for key, item in value.items())
        return "{" + ",".join(f"{serde_text(key)}:{serde_text(item)}" for key, item in items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(serde_text(item) for item in value) + "]"
    return serde_text(str(value))


def rfc3339_millis(unix: float) -> str:
    """`2026-11-29T15:00:01.123Z`, as humantime's `format_rfc3339_millis`."""
    whole = int(unix)
    millis = int((unix - whole) * 1000)
    if millis > 999:
        millis = 999
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


def parse_rfc3339(text: Any) -> float | None:
    """The unix time of `2026-11-29T15:00:01.123Z` (as rfc3339_millis writes
    it), or None for anything else."""
    if not isinstance(text, str):
        return None
    try:
        # Naive on purpose: the `Z` is matched literally, and the zone is set below.
        moment = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")  # noqa: DTZ007
    except ValueError:
        return None
    return moment.replace(tzinfo=timezone.utc).timestamp()


def command_word(command: Any) -> str:
    """The `ctl` word of a command (`eval` for `eval_now`)."""
    if isinstance(command, dict):
        return "set"
    return COMMAND_WORDS.get(command, str(command))


def zero_counters() -> dict[str, int]:
    return {"generations": 0, "completed": 0, "timed_out": 0, "aborted": 0, "errors": 0}


def timeout_rate(counters: dict[str, int]) -> float:
    generations = counters.get("generations", 0)
    return counters.get("timed_out", 0) / generations if generations else 0.0


# ---------------------------------------------------------------------------
# The status file: a fold over the events (RunStatus::apply)


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


def shows_in_status(event: dict[str, Any]) -> bool:
    """Whether the event changes what the status file shows."""
    return event["type"] not in ("generation_started", "generation_progress")


# ---------------------------------------------------------------------------
# Number formatting as Rust's `format!` does it


def _special(value: float) -> str | None:
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
    """`value.round() as u64`: halves away from zero, negatives and NaN 0,
    anything beyond 2^64-1 that (Rust's casts saturate)."""
    if not math.isfinite(value):
        return 0 if math.isnan(value) or value < 0 else 2**64 - 1
    if value <= 0:
        return 0
    return min(math.floor(value + 0.5), 2**64 - 1)


def thousands(value: int) -> str:
    """`1234567` as `1,234,567`."""
    return f"{int(value):,}"


def duration(secs: float) -> str:
    """Seconds as `H:MM:SS`."""
    total = round_half_away(secs) if math.isfinite(secs) else 0
    return f"{total // 3600}:{total // 60 % 60:02d}:{total % 60:02d}"


#: Characters of the Unicode property Other_Grapheme_Extend (PropList.txt):
#: with the marks (Mn, Me), what Rust's `char::is_grapheme_extended` takes.
_OTHER_GRAPHEME_EXTEND = frozenset(
    [
        0x09BE,
        0x09D7,
        0x0B3E,
        0x0B57,
        0x0BBE,
        0x0BD7,
        0x0CC2,
        0x0CD5,
        0x0CD6,
        0x0D3E,
        0x0D57,
        0x0DCF,
        0x0DDF,
        0x1B35,
        0x200C,
        0x302E,
        0x302F,
        0xFF9E,
        0xFF9F,
        0x1133E,
        0x11357,
        0x114B0,
        0x114BD,
        0x115AF,
        0x11930,
        0x1D165,
        *range(0x1D16E, 0x1D173),
        *range(0xE0020, 0xE0080),
    ]
)


def _debug_escaped(ch: str) -> bool:
    """Whether Rust's `{:?}` of a string writes `ch` as `\\u{N}`: grapheme
    extenders, and what `core::unicode::printable` leaves out (controls,
    format characters, separators but the space, surrogates, private use,
    unassigned)."""
    category = unicodedata.category(ch)
    return (
        category in ("Mn", "Me", "Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn")
        or (category == "Zs" and ch != " ")
        or ord(ch) in _OTHER_GRAPHEME_EXTEND
    )


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
        elif _debug_escaped(ch):
            out.append(f"\\u{{{ord(ch):x}}}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


# ---------------------------------------------------------------------------
# Log lines (crates/protocol/src/lines.rs, plain style)

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
    return (
        code <= 0x1F
        or 0x7F <= code <= 0x9F
        or code in (0x200E, 0x200F, 0x061C)
        or 0x2028 <= code <= 0x202E
        or 0x2066 <= code <= 0x2069
    )


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


def step_line(
    step, max_steps, loss, learning_rate, tokens_per_sec, elapsed_secs, eta_secs, grad_norm=None
) -> str:
    line = (
        f"step {step}/{max_steps} | loss {fixed(_as_float(loss), 4)} | lr "
        f"{lower_exp(learning_rate, 2)} | {thousands(round_half_away(tokens_per_sec))} tok/s | "
        f"elapsed {duration(elapsed_secs)} | eta {duration(eta_secs)}"
    )
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
