"""The live settings: the keys `trainui ctl RUN_DIR set` may change while a
run goes on, their defaults, kinds and bounds, and the checks of a change,
with the messages trainui's Rust config gives (`config::change_live`,
`Config::validate`).

The defaults, kinds and bounds are not copied here: they are read from
live_settings.json beside this module, which trainui's Rust config writes
(see _read_live_table), and protocol/cases/ holds the answers both
producers must give (python/tests/test_conformance.py).
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

from .formatting import rust_display, serde_float
from .json_values import LARGEST, json_safe, serde_text


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

#: Lower bounds of counts above what their type takes, as `Config::validate`
#: checks them (`at_least`).
_AT_LEAST = {
    key: spec["min"]
    for key, spec in _SPECS.items()
    if spec["kind"] in LARGEST and spec.get("min", 0) > 0
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
    if kind in LARGEST:
        # serde: a float is never a whole number, however it reads.
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingsError(
                f"{shown}: {key}: invalid type: {unexpected(value)}, expected {kind}"
            )
        if not 0 <= value <= LARGEST[kind]:
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
    if kind in LARGEST:
        if bounds.get("min", 0) <= 0:
            bounds.pop("min", None)
        if bounds.get("max", LARGEST[kind]) >= LARGEST[kind]:
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
    shown_value = str(value) if spec["kind"] in LARGEST else rust_display(value)
    got = f"(got {shown_value})"
    if spec["kind"] in LARGEST or spec["kind"] == "seconds":
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


def settings_with(
    overrides: dict[str, Any] | None, defaults: dict[str, dict[str, Any]] | None = None
) -> dict[str, dict[str, Any]]:
    """The default settings (trainui's, with `defaults` made over them)
    with nested `overrides` made (checked)."""
    settings = default_settings()
    for section, values in (defaults or {}).items():
        settings.setdefault(section, {}).update(values)
    if overrides:
        settings, _ = change_settings(settings, flatten(overrides), "settings")
    return settings


#: Where a run of the Python package starts from other defaults than
#: trainui's trainer: the job's own loop decides when it saves, so the
#: package asks for no checkpoint (`actions.save`) on a cadence of its own
#: unless the job sets `checkpoint.save_steps` (a `save`, a stop and a
#: `set checkpoint.save_steps=N` still ask for one).
PACKAGE_DEFAULTS: dict[str, dict[str, Any]] = {"checkpoint": {"save_steps": 0}}
