"""What the run-directory tests share: reading a run directory back, checking
every line against the contract (the JSON Schemas of protocol/schema when
they exist, and always field by field against crates/protocol/src/events.rs), starting and
cleaning up child processes."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from trainui import protocol

PYTHON_DIR = Path(__file__).resolve().parents[1]
REPO = PYTHON_DIR.parent

EXAMPLE = REPO / "examples" / "torchrun_loop.py"
SCHEMA_DIR = REPO / "protocol" / "schema"
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

# Field types, as crates/protocol/src/events.rs declares them.
U = "unsigned"
F = "number"
LOSS = "loss"
OLOSS = "optional loss"
S = "string"
OS = "optional string"
B = "bool"

COUNTERS = {"generations": U, "completed": U, "timed_out": U, "aborted": U, "errors": U}
EVENT_FIELDS: dict[str, dict[str, Any]] = {
    "started": {
        "run_name": S,
        "pid": U,
        "device": S,
        "start_step": U,
        "max_steps": U,
        "parameters": U,
        "vocab_size": U,
        "train_examples": U,
        "val_examples": U,
        "skipped_overlong": U,
        "resumed_from": OS,
        "evals": U,
        "counters": COUNTERS,
        "settings": "settings",
        "nonfinite_steps": U,
        "producer": "producer",
    },
    "step": {
        "step": U,
        "max_steps": U,
        "loss": LOSS,
        "learning_rate": F,
        "tokens_per_sec": F,
        "elapsed_secs": F,
        "eta_secs": F,
        "grad_norm": F,
        "tokens_seen": U,
    },
    "state": {"step": U, "state": "state"},
    "command_ack": {"step": U, "command": "command", "message": S},
    "settings": {"step": U, "settings": "settings"},
    "warning": {"step": U, "message": S},
    "eval_started": {"step": U, "eval": U, "samples": U},
    "val_loss": {"step": U, "loss": OLOSS, "batches": U, "timed_out": B},
    "generation_started": {
        "step": U,
        "sample": U,
        "of": U,
        "example": U,
        "origin": S,
        "prompt": S,
        "golden": S,
        "golden_tokens": U,
        "timeout_secs": F,
    },
    "generation_progress": {"step": U, "sample": U, "text": S, "tokens": U, "elapsed_secs": F},
    "sample": {
        "step": U,
        "sample": U,
        "of": U,
        "example": U,
        "origin": S,
        "prompt": S,
        "golden": S,
        "output": S,
        "golden_tokens": U,
        "output_tokens": U,
        "outcome": "outcome",
        "exact_match": B,
        "loss": OLOSS,
        "elapsed_secs": F,
        "tokens_per_sec": F,
        "timeout_secs": F,
        "counters": COUNTERS,
    },
    "eval_finished": {
        "step": U,
        "eval": U,
        "val_loss": OLOSS,
        "train_loss": OLOSS,
        "gap": OLOSS,
        "samples": U,
        "matches": U,
        "exact_match": F,
        "counters": COUNTERS,
    },
    "checkpoint": {"step": U, "path": S},
    "non_finite": {"step": U, "loss": LOSS, "grad_norm": LOSS, "action": "action", "count": U},
    "stalled": {"step": U, "phase": "phase", "silent_secs": F, "timeout_secs": F},
    "recovered": {"step": U, "phase": "phase"},
    "control": {"id": S, "command": S, "accepted": B, "message": S},
    "finished": {"step": U, "max_steps": U, "state": "state", "loss": OLOSS, "elapsed_secs": F},
    "failed": {"step": U, "message": S},
}
STATUS_FIELDS = {
    "schema_version": U,
    "run_name": S,
    "state": "state",
    "current_step": U,
    "max_steps": U,
    "loss": OLOSS,
    "val_loss": OLOSS,
    "learning_rate": "optional number",
    "tokens_per_sec": "optional number",
    "grad_norm": "optional number",
    "elapsed_secs": F,
    "eta_secs": "optional number",
    "device": S,
    "evals": U,
    "generations": U,
    "completed": U,
    "timeouts": U,
    "aborts": U,
    "errors": U,
    "timeout_rate": F,
    "exact_match": "optional number",
    "last_checkpoint": OS,
    "resumed_from": OS,
    "warnings": U,
    "last_message": OS,
    "settings": "optional settings",
    "nonfinite_steps": U,
    "producer": "optional producer",
    "updated_at": S,
    "pid": U,
}
RANK_FILE_FIELDS = {
    "v": U,
    "rank": U,
    "world_size": U,
    "local_rank": U,
    "host": S,
    "pid": U,
    "phase": "phase",
    "step": U,
    "beat": S,
    "beat_unix": F,
    "written_unix": F,
    "state": "state",
}
SETTINGS_KEYS = {
    "train": {"log_steps"},
    "eval": {
        "eval_steps",
        "val_batches",
        "samples",
        "max_new_tokens",
        "min_new_tokens",
        "eval_timeout_seconds",
        "temperature",
        "timeout_warn_rate",
    },
    "checkpoint": {"save_steps", "save_total_limit"},
    "watchdog": {"stall_timeout_seconds"},
}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_value(kind: Any, value: Any, where: str) -> None:
    if isinstance(kind, dict):
        assert isinstance(value, dict), f"{where}: {value!r} is not an object"
        assert set(value) == set(kind), f"{where}: fields {sorted(value)} != {sorted(kind)}"
        for key, sub in kind.items():
            check_value(sub, value[key], f"{where}.{key}")
        return
    if kind.startswith("optional ") and value is None:
        return
    base = kind.replace("optional ", "")
    if base == "unsigned":
        assert isinstance(value, int) and not isinstance(value, bool) and value >= 0, (
            f"{where}: {value!r} is not an unsigned integer"
        )
    elif base == "number":
        assert _is_number(value), f"{where}: {value!r} is not a number"
    elif base == "loss":
        assert _is_number(value) or value in ("NaN", "inf", "-inf"), (
            f"{where}: {value!r} is not a loss"
        )
    elif base == "string":
        assert isinstance(value, str), f"{where}: {value!r} is not a string"
    elif base == "bool":
        assert isinstance(value, bool), f"{where}: {value!r} is not a bool"
    elif base == "state":
        assert value in protocol.RUN_STATES, f"{where}: unknown state {value!r}"
    elif base == "action":
        assert value in ("stop", "skip", "warn"), f"{where}: unknown action {value!r}"
    elif base == "phase":
        assert value in protocol.PHASES, f"{where}: unknown phase {value!r}"
    elif base == "settings":
        assert isinstance(value, dict), f"{where}: settings {value!r}"
        for section, keys in SETTINGS_KEYS.items():
            assert keys <= set(value[section]), f"{where}.{section}: {value[section]}"
            for key in keys:
                assert _is_number(value[section][key]), f"{where}.{section}.{key}"
    elif base == "producer":
        check_value({"name": S, "version": S, "framework": S, "world_size": U}, value, where)
        assert value["name"] == "trainui-python"
    elif base == "command":
        assert value in protocol.PLAIN_COMMANDS or (
            isinstance(value, dict) and list(value) == ["set"] and isinstance(value["set"], dict)
        ), f"{where}: {value!r} is not a command"
    elif base == "outcome":
        assert isinstance(value, dict) and value.get("kind") in protocol.OUTCOMES, where
        if value["kind"] == "error":
            assert set(value) == {"kind", "message"} and isinstance(value["message"], str)
        else:
            assert set(value) == {"kind"}, where
    else:
        raise AssertionError(f"unknown kind {kind}")


#: The schemas that protocol/schema holds (generated from the Rust types).
SCHEMAS = ("event", "status", "control", "rank")
_SCHEMA_CACHE: dict[str, dict[str, Any]] = {}


def schema(name: str) -> dict[str, Any]:
    """protocol/schema/NAME.schema.json; a missing schema fails the test
    (they are checked in, and `cargo test` keeps them in step with Rust)."""
    if name not in _SCHEMA_CACHE:
        path = SCHEMA_DIR / f"{name}.schema.json"
        assert path.is_file(), (
            f"{path} is missing: the schemas are checked in; "
            "`TRAINUI_BLESS=1 cargo test --release schema` writes them"
        )
        _SCHEMA_CACHE[name] = json.loads(path.read_text())
    return _SCHEMA_CACHE[name]


def schema_validate(name: str, value: Any) -> None:
    """Validates against protocol/schema/NAME.schema.json (generated from
    the Rust types); the field checks above run besides."""
    import jsonschema

    jsonschema.validate(value, schema(name))


def check_event_line(line: dict[str, Any], rank: int | None = None) -> None:
    """One events.jsonl (or rank record) line, against the contract."""
    assert line["v"] == protocol.SCHEMA_VERSION, line
    assert TIME.match(line["time"]), line["time"]
    if rank is not None:
        assert line["rank"] == rank, line
    fields = EVENT_FIELDS.get(line["type"])
    assert fields is not None, f"unknown event type {line['type']}"
    body = {k: v for k, v in line.items() if k not in ("v", "time", "type", "rank")}
    optional = {"started": {"producer"}, "step": {"grad_norm", "tokens_seen"}}.get(
        line["type"], set()
    )
    assert set(fields) - optional <= set(body) <= set(fields), (
        f"{line['type']}: fields {sorted(body)} != {sorted(fields)}"
    )
    for key, value in body.items():
        check_value(fields[key], value, f"{line['type']}.{key}")
    schema_validate("event", line)


def _no_constant(name: str) -> Any:
    raise AssertionError(f"a bare {name} in JSON: serde_json cannot read it")


def strict_json(text: str) -> Any:
    """JSON as serde_json reads it: a bare NaN, Infinity or -Infinity fails."""
    return json.loads(text, parse_constant=_no_constant)


def read_lines(path: Path) -> list[dict[str, Any]]:
    """Every whole line of a JSONL file (a partial last line is left out);
    a bare NaN or Infinity anywhere fails the test."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [strict_json(line) for line in text.split("\n")[:-1] if line.strip()]


def events(root: Path) -> list[dict[str, Any]]:
    return read_lines(root / protocol.EVENTS_FILE)


def rank_record(root: Path, rank: int) -> list[dict[str, Any]]:
    return read_lines(root / "ranks" / f"rank-{rank}.jsonl")


def rank_file(root: Path, rank: int) -> dict[str, Any] | None:
    try:
        return strict_json((root / "ranks" / f"rank-{rank}.json").read_text())
    except (FileNotFoundError, ValueError):
        return None


def status(root: Path) -> dict[str, Any]:
    return strict_json((root / protocol.STATUS_FILE).read_text())


def check_run_dir(root: Path, ranks: int = 1) -> None:
    """Every line, the status file and the rank files, against the contract."""
    for line in events(root):
        check_event_line(line)
    for rank in range(ranks):
        for line in rank_record(root, rank):
            check_event_line(line, rank)
        beat = rank_file(root, rank)
        assert beat is not None, f"no ranks/rank-{rank}.json"
        # Written only by a rank that caught a stop signal before it ended.
        caught = beat.pop("signal", None)
        assert caught in (None, "SIGINT", "SIGTERM", "SIGHUP"), f"rank-{rank}.json: {caught!r}"
        check_value(RANK_FILE_FIELDS, beat, f"rank-{rank}.json")
        schema_validate("rank", beat)
        assert beat["v"] == protocol.SCHEMA_VERSION and beat["rank"] == rank
    current = status(root)
    check_value(STATUS_FIELDS, current, "status")
    assert current["schema_version"] == protocol.SCHEMA_VERSION
    schema_validate("status", current)
    # events(), rank_record(), rank_file() and status() read with
    # strict_json: a bare NaN or Infinity anywhere has failed already.


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1):
    """Polls until `predicate()` is true-ish; returns its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def find(items: list[dict[str, Any]], **fields) -> list[dict[str, Any]]:
    return [item for item in items if all(item.get(k) == v for k, v in fields.items())]


def drop_command(
    root: Path,
    command: Any,
    *,
    version: int = 2,
    created_unix: float | None = None,
    name: str | None = None,
) -> str:
    """Writes a command file into RUN_DIR/control as `trainui ctl` does."""
    request_id = name or f"{time.time_ns()}-{os.getpid()}-{protocol.command_word(command)}"
    request = {
        "v": version,
        "id": request_id,
        "created_unix": time.time() if created_unix is None else created_unix,
        "command": command,
    }
    if version == 2:
        schema_validate("control", request)
    spool = root / "control"
    temp = spool / f".{request_id}.tmp"
    temp.write_text(json.dumps(request))
    os.replace(temp, spool / f"{request_id}.json")
    return request_id


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Children:
    """Child processes started in their own process group; every group is
    killed at teardown, whatever the test did."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen] = []

    def start(
        self, args: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.Popen:
        environment = dict(os.environ)
        environment.update(env or {})
        environment.setdefault("PYTHONUNBUFFERED", "1")
        with open(log, "wb") as out:
            process = subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=environment,
                cwd=str(cwd or REPO),
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def kill_all(self) -> None:
        for process in self.processes:
            # torchrun starts its workers in sessions of their own: kill
            # every descendant's group, then the child's.
            for pid in descendants(process.pid) + [process.pid]:
                for kill in (os.killpg, os.kill):
                    try:
                        kill(pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                pass


def descendants(root: int) -> list[int]:
    """Every process below `root` (from /proc), deepest last."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: list[int] = []
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found.extend(children)
        frontier.extend(children)
    return found


def torchrun() -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run"]


def trainui_program() -> Path:
    """The trainui program: $TRAINUI_PROGRAM, else the release build of this
    clone (in $CARGO_TARGET_DIR when set)."""
    named = os.environ.get("TRAINUI_PROGRAM")
    if named:
        return Path(named)
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    return (target if target.is_absolute() else REPO / target) / "release" / "trainui"


def wait_exit(process: subprocess.Popen, log: Path, seconds: float = 240) -> int:
    """The exit status of `process`; fails the test, with the end of the
    job's `log`, when it has not ended in `seconds` (the `children` fixture
    then kills it)."""
    import pytest

    try:
        return process.wait(seconds)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the job did not end in {seconds}s:\n{log.read_text()[-4000:]}")


def acked(root: Path, command: Any, rank: int | None = None) -> list[dict[str, Any]]:
    """The acks of `command` (the word "set": of any set) in events.jsonl,
    or in a rank's record."""
    lines = events(root) if rank is None else rank_record(root, rank)
    return [
        line
        for line in lines
        if line["type"] == "command_ack"
        and (
            line["command"] == command
            or (command == "set" and isinstance(line["command"], dict) and "set" in line["command"])
        )
    ]


def command_acked(
    root: Path, command: Any, *, ranks: tuple = (None,), timeout: float = 90
) -> list[dict[str, Any]]:
    """Drops `command` into the control folder (as `trainui ctl` does) and
    waits for each rank's new ack of it (`None`: events.jsonl's)."""
    before = [len(acked(root, command, rank)) for rank in ranks]
    drop_command(root, command)
    return [
        wait_for(
            lambda rank=rank, n=n: acked(root, command, rank)[n:],
            timeout,
            f"ack of {command} on {rank}",
        )[0]
        for rank, n in zip(ranks, before)
    ]
