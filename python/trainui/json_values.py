"""Values as the protocol's JSON carries them: the checks of numbers a
training loop hands on (whole numbers that fit an unsigned field, finite
floats), JSON as serde_json writes it (losses that are not numbers as
text, compact text, serde_json's `Value` text), and RFC 3339 times.

Imports only formatting.py of the package, and nothing outside the
standard library.
"""

from __future__ import annotations

import json
import math
import operator
import time
from datetime import datetime, timezone
from typing import Any

from .formatting import serde_float

#: The largest value of each whole-number kind of the protocol.
LARGEST = {"u64": 2**64 - 1, "u32": 2**32 - 1}

# ---------------------------------------------------------------------------
# Values the producer hands on: what the protocol's fields can carry


def whole_number(name: str, value: Any, kind: str = "u64", low: int = 0) -> int:
    """`value` as an int that an unsigned field of the protocol of `kind`
    ("u64", "u32") can carry, at least `low`; ValueError naming `name` and
    the range otherwise. Ints (numpy's and torch's integer scalars too) and
    floats that are whole numbers pass; booleans, fractions, NaN and
    infinities do not."""
    high = LARGEST[kind]
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


# ---------------------------------------------------------------------------
# Times


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
