"""The protocol's fixed vocabulary, mirrored from crates/protocol/src/events.rs
and the run directory's layout: versions, file names, limits, phase and
state names, the command table, generation outcomes and their counters.

Every other module of the protocol reads this one; it imports nothing else
of the package and nothing outside the standard library.
"""

from __future__ import annotations

from importlib import metadata as _metadata
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
