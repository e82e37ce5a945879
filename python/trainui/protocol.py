"""The run-directory protocol, mirrored from the Rust sources: versions, file
names, phase and state names, the live settings, the command table, events as
plain dicts, the status file, and the greppable log lines of
crates/protocol/src/lines.rs (same text, byte for byte, for the same values).

This module holds none of it itself: it gathers, unchanged, what these
modules hold, so that `trainui.protocol.X` names every part of the protocol:

- contract.py: versions, the run directory's file names, limits, phase and
  state names, the command table, generation outcomes and counters;
- formatting.py: numbers and text as Rust's `format!` and serde_json write
  them, and the escaping of text from outside (crates/protocol/src/text.rs);
- json_values.py: the checks of values a training loop hands on, JSON as
  serde_json writes it, RFC 3339 times;
- live_settings.py: the live settings (read from live_settings.json beside
  it, which trainui's Rust config writes) and the checks of a change;
- status_fold.py: the status file, a fold over the events (RunStatus::apply);
- log_lines.py: the log lines an event prints as (lines::format).

None of them imports anything outside the standard library, nor any module
of the package but these, in that order (each only ones above it; contract.py
and formatting.py nothing), so the protocol can be read and tested on its own
(as crates/protocol/src/events.rs). protocol/cases/ holds the answers both
producers must give (python/tests/test_conformance.py).
"""

from __future__ import annotations

from .contract import (
    ABORT_FILE,
    CHECKPOINTS_DIR,
    COMMAND_WORDS,
    CONFIG_FILE,
    EVENTS_FILE,
    FINAL_STATES,
    LOCK_FILE,
    LOG_FILE,
    MAX_REQUEST_BYTES,
    OUTCOMES,
    PHASES,
    PLAIN_COMMANDS,
    PRODUCER_NAME,
    PRODUCER_VERSION,
    RANKS_DIR,
    REQUEST_VERSION,
    RUN_STATES,
    SCHEMA_VERSION,
    SPOOL_DIR,
    STALE_AFTER_SECS,
    STALL_EXIT_CODE,
    STATUS_FILE,
    command_word,
    timeout_rate,
    zero_counters,
)
from .formatting import (
    duration,
    escape,
    fixed,
    float_text,
    is_unsafe,
    lower_exp,
    round_half_away,
    rust_debug,
    rust_display,
    serde_float,
    thousands,
)
from .json_values import (
    LARGEST,
    LOSS_FIELDS,
    finite_number,
    float_or_text,
    json_safe,
    json_text,
    parse_rfc3339,
    rfc3339_millis,
    serde_safe,
    serde_text,
    whole_number,
)
from .live_settings import (
    _AT_LEAST,  # noqa: F401 - the config's lower bounds of counts, which a test reads here
    LIVE_SETTINGS,
    MAX_SECONDS,
    SettingsError,
    change_settings,
    default_settings,
    flatten,
    live_keys,
    settings_with,
    unexpected,
)
from .log_lines import (
    MAX_PRINTED_CHARS,
    checkpoint_line,
    eval_header,
    exact_match_line,
    failed_line,
    finished_line,
    format_event,
    loss_comparison_line,
    printable,
    sample_block,
    stalled_line,
    step_line,
    timeout_rate_warning,
    warning_line,
)
from .status_fold import (
    StatusFold,
    new_status,
    shows_in_status,
)

#: The names `trainui.protocol` gives, by the module that holds them.
__all__ = [
    # contract.py: versions, file names, limits, phases, states, commands, outcomes, counters
    "SCHEMA_VERSION",
    "REQUEST_VERSION",
    "PRODUCER_NAME",
    "PRODUCER_VERSION",
    "EVENTS_FILE",
    "STATUS_FILE",
    "LOG_FILE",
    "CONFIG_FILE",
    "LOCK_FILE",
    "SPOOL_DIR",
    "CHECKPOINTS_DIR",
    "RANKS_DIR",
    "ABORT_FILE",
    "MAX_REQUEST_BYTES",
    "STALE_AFTER_SECS",
    "STALL_EXIT_CODE",
    "PHASES",
    "RUN_STATES",
    "FINAL_STATES",
    "COMMAND_WORDS",
    "PLAIN_COMMANDS",
    "OUTCOMES",
    "command_word",
    "zero_counters",
    "timeout_rate",
    # formatting.py: numbers and text as Rust writes them; text from outside escaped
    "serde_float",
    "fixed",
    "lower_exp",
    "rust_display",
    "round_half_away",
    "thousands",
    "duration",
    "rust_debug",
    "is_unsafe",
    "escape",
    "float_text",
    # json_values.py: the checks of values handed on; JSON as serde_json writes it; times
    "whole_number",
    "finite_number",
    "float_or_text",
    "json_safe",
    "LOSS_FIELDS",
    "serde_safe",
    "json_text",
    "serde_text",
    "rfc3339_millis",
    "parse_rfc3339",
    "LARGEST",
    # live_settings.py: the live settings (live_settings.json) and the checks of a change
    "MAX_SECONDS",
    "LIVE_SETTINGS",
    "SettingsError",
    "default_settings",
    "live_keys",
    "flatten",
    "unexpected",
    "change_settings",
    "settings_with",
    # status_fold.py: the status file as a fold over the events
    "new_status",
    "StatusFold",
    "shows_in_status",
    # log_lines.py: the log lines of crates/protocol/src/lines.rs
    "MAX_PRINTED_CHARS",
    "printable",
    "step_line",
    "eval_header",
    "sample_block",
    "loss_comparison_line",
    "exact_match_line",
    "warning_line",
    "stalled_line",
    "checkpoint_line",
    "finished_line",
    "failed_line",
    "timeout_rate_warning",
    "format_event",
]
