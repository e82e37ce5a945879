"""Numbers and text as Rust writes them, so that Python's lines and messages
read byte for byte as the Rust producer's: `format!` of floats (`{:.N}`,
`{:.Ne}`, `{}`), serde_json's floats, durations and thousands, Rust's
`{:?}` of a string, and the escaping of text that must not drive a
terminal (crates/protocol/src/text.rs).

Imports nothing else of the package and nothing outside the standard library.
"""

from __future__ import annotations

import math
import unicodedata
from decimal import Decimal
from typing import Any

# ---------------------------------------------------------------------------
# Numbers as Rust's `format!` and serde_json write them


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


def float_text(value: Any) -> str:
    """The text of a float_or_text value (a loss in an event): Rust's Display of the f64."""
    if isinstance(value, str):
        return value
    return rust_display(value)


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


# ---------------------------------------------------------------------------
# Text as Rust's `{:?}` writes it


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
# Text from outside, escaped for a terminal (crates/protocol/src/text.rs)


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
