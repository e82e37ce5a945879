"""Steering a run from outside its process: RUN_DIR/control/, where
`trainui ctl` (and `watch`) drop small JSON command files (crates/protocol/src/control/).

A command file is `{"v": 2, "id": ..., "created_unix": ..., "command":
COMMAND}`, COMMAND being `"stop"`, `"pause"`, `"resume"`, `"eval_now"`,
`"abort_generation"`, `"save"` or `{"set": {KEY: VALUE}}`; files of version 1
(`"command": "eval"`, or `"set"` with an `"assignment"`) are still read.
Every file is answered by a `control` event (accepted or rejected, with the
reason) and removed. Only rank 0 reads the spool; the commands it accepts
are applied by every rank at the same step boundary (see distributed.py).

Only `set` (`trainui ctl RUN_DIR set KEY=VALUE`) changes the live settings of
a Python job: unlike `trainui train`, it does not follow edits of
config.json, which it writes once, for the record.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import threading
import time
from pathlib import Path
from typing import Any, Callable

from . import protocol
from .rundir import RunDirError, write_atomically

#: How often the spool is read.
POLL_SECS = 0.25

_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


def spool_dir(run_dir: Path) -> Path:
    return run_dir / protocol.SPOOL_DIR


def send(run_dir: Path, command: Any) -> str:
    """Writes a command file as `trainui ctl` does (hidden name, then a
    rename); returns its id. For tests and tools."""
    directory = spool_dir(run_dir)
    if not os.path.lexists(directory):
        raise RunDirError(
            f"{directory}: no control folder; is {run_dir} a trainui run directory, and has "
            "its run started?"
        )
    check_spool(run_dir)  # the checks the job makes: a link or a folder open to others is refused
    word = protocol.command_word(command)
    request_id = f"{time.time_ns()}-{os.getpid()}-{word}"
    request = {
        "v": protocol.REQUEST_VERSION,
        "id": request_id,
        "created_unix": time.time(),
        "command": command,
    }
    temp = directory / f".{request_id}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(protocol.json_text(request).encode("utf-8"))
        os.replace(temp, directory / f"{request_id}.json")
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
    return request_id


# ---------------------------------------------------------------------------
# Checks of the spool folder (control::check_spool)


def _private_group(gid: int, uid: int) -> bool:
    """Whether `gid` is `uid`'s own private group, proved from /etc/passwd
    and /etc/group (as the Rust check does)."""
    try:
        passwd = Path("/etc/passwd").read_text()
        group = Path("/etc/group").read_text()
    except OSError:
        return False

    def number(fields: list[str], index: int) -> int | None:
        try:
            return int(fields[index])
        except (IndexError, ValueError):
            return None

    users = [line.split(":") for line in passwd.splitlines()]
    me = next((u for u in users if number(u, 2) == uid), None)
    if me is None:
        return False
    name = me[0]
    own_primary = number(me, 3) == gid
    others_primary = any(number(u, 3) == gid and number(u, 2) != uid for u in users)
    entry = next(
        (g for g in (line.split(":") for line in group.splitlines()) if number(g, 2) == gid), None
    )
    if entry is None:
        return False
    members = [m for m in (entry[3] if len(entry) > 3 else "").split(",") if m]
    return (
        own_primary and not others_primary and entry[0] == name and all(m == name for m in members)
    )


def _ancestors(path: Path) -> list[Path]:
    return [path, *path.parents]


def check_spool(run_dir: Path) -> None:
    """Refuses a control folder that is a link, not a folder, another user's
    or open to others, and a run directory another user could swap it in
    (it or a folder above it writable by others without the sticky bit, or
    owned by another user). Raises RunDirError with the fix."""
    uid, gid = os.geteuid(), os.getegid()
    directory = spool_dir(run_dir)

    def refuse(why: str) -> RunDirError:
        return RunDirError(
            f"{directory}: {why}; the control folder of a run is made by trainui (mode 0700, "
            f"owned by the user who runs it): pick another run directory, or move {directory} "
            "away"
        )

    try:
        meta = os.lstat(directory)
    except FileNotFoundError:
        meta = None
    except OSError as err:
        raise RunDirError(f"{directory}: cannot read the control folder: {err}") from err
    if meta is not None:
        if stat.S_ISLNK(meta.st_mode):
            raise refuse("is a symbolic link, not a folder of this run")
        if not stat.S_ISDIR(meta.st_mode):
            raise refuse("is not a folder")
        if meta.st_uid != uid:
            raise refuse(f"belongs to user {meta.st_uid}, not to you ({uid})")
        if meta.st_mode & 0o077:
            raise refuse(f"has mode {meta.st_mode & 0o777:o}: other users can use it")
    absolute = Path(os.path.abspath(run_dir))
    start = next((p for p in _ancestors(absolute) if p.exists()), Path("/"))
    real = Path(os.path.realpath(start))
    for folder in _ancestors(start) + _ancestors(real):
        try:
            meta = os.stat(folder)
        except OSError as err:
            raise RunDirError(f"{folder}: cannot read: {err}") from err
        sticky = meta.st_mode & 0o1000 != 0
        if meta.st_uid not in (uid, 0):
            raise RunDirError(
                f"{folder}: belongs to user {meta.st_uid}, who could replace {directory}; run "
                "in a folder of your own"
            )
        group_can_write = meta.st_mode & 0o020 != 0 and not (
            meta.st_gid == gid and _private_group(gid, uid)
        )
        if (meta.st_mode & 0o002 or group_can_write) and not sticky:
            raise RunDirError(
                f"{folder}: other users can write to it (mode {meta.st_mode & 0o777:o}) and so "
                f"replace {directory}; run in a folder only you can write to (chmod go-w "
                f"{folder})"
            )


def make_spool(run_dir: Path) -> None:
    """Creates the control folder, owner only, and checks it."""
    try:
        os.mkdir(spool_dir(run_dir), 0o700)
    except FileExistsError:
        pass
    check_spool(run_dir)


# ---------------------------------------------------------------------------
# Reading command files


def command_file(path: Path) -> str | None:
    """None when `path` is a command file the spool may read and remove (a
    regular file, not a link, named NAME.json), else why not."""
    name = path.name
    stem = name[: -len(".json")] if name.endswith(".json") else ""
    if not stem or not _NAME.match(stem):
        return "refused: not a command file (NAME.json)"
    try:
        meta = os.lstat(path)
    except OSError as err:
        return f"unreadable: {err}"
    if stat.S_ISLNK(meta.st_mode):
        return "refused: a symbolic link"
    if not stat.S_ISREG(meta.st_mode):
        return "refused: not a regular file"
    return None


def pending(directory: Path) -> list[tuple[Path, str | None]]:
    """The spool's entries, oldest name first, each with the reason it is
    not a command file (None when it is). Hidden entries are passed over."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return [
        (directory / n, command_file(directory / n)) for n in sorted(names) if not n.startswith(".")
    ]


class RequestError(Exception):
    """A command file that is refused; the message is the reason."""


def _expected_variants() -> str:
    return ", ".join(f"`{name}`" for name in (*protocol.PLAIN_COMMANDS, "set"))


def parse_command(value: Any) -> Any:
    """A serialised command, checked: a plain command's name or
    `{"set": {KEY: VALUE}}`."""
    if isinstance(value, str):
        if value in protocol.PLAIN_COMMANDS:
            return value
        if value == "set":
            raise RequestError(
                "not a command: invalid type: unit variant, expected newtype variant"
            )
        raise RequestError(
            f"not a command: unknown variant `{value}`, expected one of {_expected_variants()}"
        )
    if isinstance(value, dict) and len(value) == 1:
        ((name, body),) = value.items()
        if name == "set":
            if not isinstance(body, dict):
                raise RequestError("not a command: invalid type, expected a map of KEY: VALUE")
            return {"set": dict(body)}
        if name in protocol.PLAIN_COMMANDS:
            raise RequestError(f"not a command: `{name}` takes no value")
        raise RequestError(
            f"not a command: unknown variant `{name}`, expected one of {_expected_variants()}"
        )
    raise RequestError('not a command: expected a command name or {"set": {...}}')


def _parse_assignment(assignment: str) -> tuple[str, Any]:
    if "=" not in assignment:
        raise RequestError(f"{assignment}: expected KEY=VALUE, e.g. train.max_steps=100")
    key, raw = assignment.split("=", 1)
    try:
        value = json.loads(raw, parse_constant=_no_constant)
    except ValueError:
        value = raw
    return key.strip(), value


def _no_constant(name: str) -> Any:
    """serde_json knows no bare NaN, Infinity or -Infinity: neither does a
    command file."""
    raise ValueError(f"{name} is not JSON")


def parse_request(text: str) -> dict[str, Any]:
    """A request of version 2, or of version 1; RequestError otherwise."""
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except ValueError as err:
        raise RequestError(f"not a command: {err}") from None
    if not isinstance(value, dict):
        # As trainui says it: what is not an object has no version.
        raise RequestError('not a command: no version "v"')
    version = value.get("v")
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise RequestError('not a command: no version "v"')
    if version not in (1, protocol.REQUEST_VERSION):
        raise RequestError(f"unknown request version {version}")
    for field in ("id", "created_unix", "command"):
        if field not in value:
            raise RequestError(f"not a command: missing field `{field}`")
    if not isinstance(value["id"], str):
        raise RequestError(
            f"not a command: invalid type: {protocol.unexpected(value['id'])}, expected a string"
        )
    created = value["created_unix"]
    if isinstance(created, bool) or not isinstance(created, (int, float)):
        raise RequestError(
            f"not a command: invalid type: {protocol.unexpected(created)}, expected f64"
        )
    if not math.isfinite(created):
        raise RequestError("not a command: `created_unix` must be a finite number")
    if version == protocol.REQUEST_VERSION:
        command = parse_command(value["command"])
    else:
        word = value["command"]
        kinds = {w: name for name, w in protocol.COMMAND_WORDS.items()}
        if not isinstance(word, str) or word not in kinds:
            words = ", ".join(protocol.COMMAND_WORDS.values())
            raise RequestError(f"unknown command {json.dumps(word)}; the commands are {words}")
        if kinds[word] == "set":
            if not value.get("assignment"):
                raise RequestError("set without an assignment")
            key, assigned = _parse_assignment(value["assignment"])
            command = {"set": {key: assigned}}
        else:
            command = kinds[word]
    return {
        "v": protocol.REQUEST_VERSION,
        "id": value["id"],
        "created_unix": float(created),
        "command": command,
    }


def read_request(path: Path) -> dict[str, Any]:
    """Reads a command file, refusing links, non-files and anything large."""
    reason = command_file(path)
    if reason is not None:
        raise RequestError(reason)
    size = os.lstat(path).st_size
    if size > protocol.MAX_REQUEST_BYTES:
        raise RequestError(f"refused: {size} bytes, more than {protocol.MAX_REQUEST_BYTES}")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as file:
            data = file.read(protocol.MAX_REQUEST_BYTES)
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise RequestError(f"unreadable: {err}") from None
    return parse_request(text)


# ---------------------------------------------------------------------------
# The spool thread (rank 0)


class Spool:
    """Reads RUN_DIR/control every POLL_SECS on its own thread, answers each
    file with a `control` event and hands accepted commands to `deliver`.
    An `abort_generation` or a `stop` calls `abort(command)` at once, without
    waiting for the step boundary (a stop ends the rest of an evaluation).
    `settings` is the settings copy the spool checks `set` against, kept in
    step with the trainer's (same changes, same order); `set` is the only
    way to change them (config.json edits are not followed). `step` says the
    step to name in a warning."""

    def __init__(
        self,
        run_dir: Path,
        emit: Callable[[dict[str, Any]], None],
        deliver: Callable[[Any], None],
        abort: Callable[[str], None],
        settings: dict[str, dict[str, Any]],
        on_settings: Callable[[dict[str, dict[str, Any]]], None],
        step: Callable[[], int] = lambda: 0,
    ):
        self.run_dir = run_dir
        self._emit = emit
        self._deliver = deliver
        self._abort = abort
        self.settings = settings
        self._on_settings = on_settings
        self._step = step
        self._reported: set = set()
        self._errors_reported: set = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, name="trainui-control", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stops reading; after it returns (unless the thread is stuck past
        `timeout`), nothing more is delivered."""
        self._stop.set()
        self._thread.join(timeout)

    def poll_once(self) -> None:
        with self._lock:
            for path, reason in pending(spool_dir(self.run_dir)):
                if reason is None:
                    self._answer(path)
                    try:
                        os.unlink(path)
                    except OSError:
                        pass
                elif path not in self._reported:
                    self._reported.add(path)
                    self._reply(path.name, "?", False, f"{reason}; left in place")

    def _serve(self) -> None:
        while not self._stop.wait(POLL_SECS):
            try:
                self.poll_once()
            except Exception as err:  # noqa: BLE001 - a bad file never stops the run
                message = f"control spool: {type(err).__name__}: {err}"
                if message in self._errors_reported:  # a lasting error, said once
                    continue
                self._errors_reported.add(message)
                try:
                    step = int(self._step())
                except Exception:  # noqa: BLE001 - the warning goes out without its step
                    step = 0
                self._emit({"type": "warning", "step": step, "message": message})

    def _reply(self, request_id: str, command: str, accepted: bool, message: str) -> None:
        self._emit(
            {
                "type": "control",
                "id": request_id,
                "command": command,
                "accepted": accepted,
                "message": message,
            }
        )

    def _answer(self, path: Path) -> None:
        try:
            request = read_request(path)
        except RequestError as err:
            return self._reply(path.name, "?", False, str(err))
        command = request["command"]
        word = protocol.command_word(command)
        age = time.time() - request["created_unix"]
        if age > protocol.STALE_AFTER_SECS:
            return self._reply(
                request["id"],
                word,
                False,
                f"stale: written {protocol.fixed(age, 0)}s ago; send it again",
            )
        if -age > protocol.STALE_AFTER_SECS:
            return self._reply(
                request["id"],
                word,
                False,
                f"from the future: written {protocol.fixed(-age, 0)}s ahead of this machine's "
                "clock",
            )
        if isinstance(command, dict):
            try:
                result, applied = protocol.change_settings(self.settings, command["set"], "set")
            except protocol.SettingsError as err:
                return self._reply(request["id"], word, False, str(err))
            if not applied:
                return self._reply(request["id"], word, True, "no change")
            self.settings = result
            self._on_settings(result)
            self._reply(request["id"], word, True, f"applied {', '.join(applied)}")
            self._deliver(command)
            return None
        self._reply(request["id"], word, True, "sent to the trainer")
        if command in ("abort_generation", "stop"):
            self._abort(command)
        self._deliver(command)
        return None


def write_abort_mark(run_dir: Path, sequence: int, command: str = "abort_generation") -> None:
    """Tells the other ranks to abort their running generation (`command`
    "abort_generation"), or every generation until the run stops ("stop"):
    they poll this file (a shared run directory; elsewhere they wait for
    their deadline or the next step boundary). `seq` grows with every mark;
    `unix` is when it was written, so that a rank aborts only a generation
    that began before it."""
    record = {"seq": int(sequence), "unix": time.time(), "command": command}
    try:
        write_atomically(run_dir / protocol.ABORT_FILE, protocol.json_text(record).encode())
    except OSError:
        pass


def read_abort_mark(run_dir: Path) -> dict[str, Any] | None:
    """The abort mark rank 0 wrote last (`seq`, `unix`, `command`), or None
    when there is none or it cannot be read whole."""
    try:
        fd = os.open(
            run_dir / protocol.ABORT_FILE,
            os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
        )
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None  # a FIFO or a device is never a mark (and never waited on)
        mark = json.loads(
            os.read(fd, protocol.MAX_REQUEST_BYTES).decode("utf-8"), parse_constant=_no_constant
        )
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)
    if not isinstance(mark, dict):
        return None
    seq, unix, command = mark.get("seq"), mark.get("unix"), mark.get("command", "abort_generation")
    if (
        isinstance(seq, bool)
        or not isinstance(seq, int)
        or isinstance(unix, bool)
        or not isinstance(unix, (int, float))
        or not math.isfinite(unix)
        or command not in ("abort_generation", "stop")
    ):
        return None
    return {"seq": seq, "unix": float(unix), "command": command}


def clear_abort_mark(run_dir: Path) -> None:
    """Removes an abort mark left in the run directory (rank 0, before the
    other ranks look), so that no rank takes an old mark for a new one."""
    try:
        os.unlink(run_dir / protocol.ABORT_FILE)
    except FileNotFoundError:
        pass
