"""The run directory, written as the Rust trainer writes it (crates/protocol/src/rundir/):

```text
RUN_DIR/config.json                  the run's config (rank 0)
RUN_DIR/events.jsonl                 every event, one JSON object a line (rank 0)
RUN_DIR/status/training_status.json  current status, replaced atomically (rank 0)
RUN_DIR/training_output.log          the printed lines (rank 0)
RUN_DIR/lock                         rank 0's advisory lock and pid
RUN_DIR/ranks/rank-N.json            rank N's heartbeat, replaced atomically
RUN_DIR/ranks/rank-N.jsonl           rank N's own record of events
```

Nothing made here is writable by the group or others, whatever the umask:
folders 0755, files 0644 (temporary files made new; no file is opened
through a link), `control/` 0700 and the lock 0600 (as crates/protocol/src/rundir/).

Every write happens on a background thread: the training thread only puts
events on a bounded queue, so a slow disk never slows training (when the
queue is full, `generation_progress` goes first, and the drops are said
once); `flush()` waits for what was queued.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import stat
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

from . import protocol
from .protocol import json_text, rfc3339_millis, serde_safe

#: Lock files of this process, held until their run ends (release_lock).
_HELD_LOCKS: list[int] = []
#: Most items the writer's queue holds; beyond, items are dropped
#: (`generation_progress` first) and the drops are reported once.
MAX_QUEUED = 10_000
#: How long the writer lets items gather after writing a batch (a flush or
#: close cuts it short): events reach the files at most this much later.
GATHER_SECS = 0.05


class RunDirError(Exception):
    """A run directory that cannot be used as asked (the user's mistake: the
    message names the directory and the fix)."""


def check_fresh(root: Path) -> None:
    """Refuses a directory that already holds a run (events.jsonl or
    checkpoints/), or that is not a directory; touches nothing."""
    if root.exists() and not root.is_dir():
        raise RunDirError(f"{root}: not a directory; pick another run directory")
    for name in (protocol.EVENTS_FILE, protocol.CHECKPOINTS_DIR):
        if (root / name).exists() or (root / name).is_symlink():
            raise RunDirError(
                f"{root}: this run directory already holds a run ({root / name} exists); "
                "pick another run directory (Run(run_dir=...) or TRAINUI_RUN_DIR); "
                "nothing in it was changed"
            )


def make_dirs(path: Path) -> None:
    """Creates `path` and every missing folder above it, each with mode 0755
    (less the umask), as Rust's `DirBuilder::new().recursive(true).mode(0o755)`
    does: a parent made with the umask's mode alone could be open to others,
    and the control folder's checks would then refuse the run."""
    missing = []
    folder = Path(path)
    while not folder.is_dir():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, 0o755)
        except FileExistsError:
            if not folder.is_dir():
                raise


def take_lock(root: Path) -> int:
    """Takes RUN_DIR/lock (flock, exclusive, the lock the Rust binary takes)
    and writes this pid into it; release_lock() gives it back when the run
    ends. Creates the directory.

    The lock file is the owner's alone (mode 0600, made so if it was not),
    so no other user can hold it; a link, a FIFO or anything else that is
    not a regular file of this user is refused. When the lock is held only
    by processes this machine can see (/proc/locks) and none of them is the
    one it names, whoever holds it is not a run (a reader of a lock others
    could open, a stray child): a fresh lock file replaces it, with a
    warning (as `RunLock::take` does). A holder it cannot see (another pid
    namespace, another machine) is taken at its word.

    The descriptor is close-on-exec, so a program this process starts does
    not hold the lock; but a child made by fork() alone (DataLoader workers,
    multiprocessing with the "fork" start method) shares the locked file
    until that child ends too. Readers call a run alive only while the pid
    it names exists as well; the lock is only a sign of life."""
    make_dirs(root)
    path = root / protocol.LOCK_FILE
    fd = _open_lock(root, path)
    held = False
    for attempt in range(LOCK_TRIES):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                os.close(fd)
                raise RunDirError(f"{path}: cannot lock: {err}") from err
            if attempt == LOCK_TRIES - 1:
                held = True
                break
            # A reader probing the lock holds it shared for an instant.
            time.sleep(0.02)
    if held:
        named = _lock_pid(fd)
        holders = lock_holders(path) or []
        os.close(fd)
        stray = bool(holders) and all(
            holder != 0 and (named is None or not is_run(holder, named)) for holder in holders
        )
        if not stray:
            raise RunDirError(
                f"{root}: in use by the trainui process {named or '?'} (it holds {path}); watch "
                f"it with `trainui watch {root}`, or train in another run directory"
            )
        fd = _replace_lock(path)
        try:
            sys.stderr.write(
                f"trainui: warning: {path}: held by process "
                f"{', '.join(str(holder) for holder in holders)}, not by the run it names "
                f"({'none' if named is None else f'pid {named}'}); a fresh lock replaces it\n"
            )
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
    try:
        # The pid replaces the old one in one write: a reader sees one or
        # the other.
        pid = f"{os.getpid()}\n".encode()
        os.pwrite(fd, pid, 0)
        os.ftruncate(fd, len(pid))
    except OSError:
        os.close(fd)
        raise
    _HELD_LOCKS.append(fd)
    return fd


#: Tries to take the lock before calling it held: a reader probing it holds
#: it shared for an instant.
LOCK_TRIES = 10


def _open_lock(root: Path, path: Path) -> int:
    """Opens (or makes) the lock file: a regular file of this user, not a
    link, made the owner's alone (0600) whatever its mode was. Never
    blocks (a FIFO in its place is named, not waited on)."""
    fix = f"remove it, or pick another run directory than {root}"
    try:
        fd = os.open(
            path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK, 0o600
        )
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise RunDirError(
                f"{path}: is a symbolic link; a run's lock is a file of its own: {fix}"
            ) from None
        kind = _not_a_file(path)
        if kind is not None:
            raise RunDirError(f"{path}: is {kind}, not a lock file: {fix}") from None
        raise RunDirError(f"{path}: cannot open the lock: {err}") from err
    try:
        meta = os.fstat(fd)
        if not stat.S_ISREG(meta.st_mode):
            raise RunDirError(f"{path}: is {file_kind(meta.st_mode)}, not a lock file: {fix}")
        if meta.st_uid != os.geteuid():
            raise RunDirError(
                f"{path}: belongs to user {meta.st_uid}, not to you "
                f"({os.geteuid()}); pick another run directory than {root}"
            )
        if meta.st_mode & 0o7777 != 0o600:
            os.fchmod(fd, 0o600)
        # Writes of the pid need no O_NONBLOCK (a regular file never blocks on it).
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _lock_pid(fd: int) -> int | None:
    """The pid a lock file names (its first line), or None."""
    try:
        text = os.pread(fd, 64, 0).decode("ascii").strip()
        pid = int(text) if text.isdigit() else 0
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return pid if pid > 0 else None


def _replace_lock(path: Path) -> int:
    """A fresh lock file in place of `path`, locked: made beside it (0600,
    new), locked, then renamed over it."""
    fresh = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        os.unlink(fresh)
    except FileNotFoundError:
        pass
    except OSError as err:
        raise RunDirError(f"{fresh}: cannot make a fresh lock: {err}") from err
    try:
        fd = os.open(
            fresh, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
    except OSError as err:
        raise RunDirError(f"{fresh}: cannot make a fresh lock: {err}") from err
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.replace(fresh, path)
    except OSError as err:
        os.close(fd)
        try:
            os.unlink(fresh)
        except OSError:
            pass
        raise RunDirError(f"{path}: cannot place a fresh lock: {err}") from err
    return fd


def process_exists(pid: int) -> bool:
    """Whether a process `pid` exists on this machine (0 is none)."""
    return pid > 0 and os.path.exists(f"/proc/{pid}")


def is_run(holder: int, pid: int) -> bool:
    """Whether the process this machine knows as `holder` is the one a run
    names as `pid`: the same pid, or that pid in the holder's own pid
    namespace (a run in a container). A holder that is gone is no run: a
    dead run's child may hold its lock. (runlock::is_run)"""
    if not process_exists(holder):
        return False
    if holder == pid:
        return True
    try:
        with open(f"/proc/{holder}/status", encoding="utf-8", errors="replace") as status:
            for line in status:
                if line.startswith("NSpid:"):
                    return str(pid) in line.split()[1:]
    except OSError:
        pass
    return False


def lock_holders(path: Path) -> list[int] | None:
    """The processes that hold a lock on the file at `path`, as /proc/locks
    names them (0: one this process cannot see, in another pid namespace);
    None when that cannot be read. (runlock::holders)"""
    try:
        meta = os.stat(path)
        with open("/proc/locks", encoding="ascii", errors="replace") as locks:
            lines = locks.read().splitlines()
    except OSError:
        return None
    wanted = f"{os.major(meta.st_dev):02x}:{os.minor(meta.st_dev):02x}:{meta.st_ino}"
    holders = []
    for line in lines:
        # `1: FLOCK  ADVISORY  WRITE 4242 fe:00:1234 0 EOF`; a lock waited
        # for has `->` after the number.
        fields = line.split()
        if len(fields) < 6 or fields[1] == "->" or fields[5] != wanted:
            continue
        try:
            pid = int(fields[4])
        except ValueError:
            pid = 0
        holders.append(pid if pid > 0 else 0)
    return holders


def file_kind(mode: int) -> str:
    """What a file that is not a regular file is, for messages."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return "not a regular file"


def _not_a_file(path: Path) -> str | None:
    """What is at `path` when it is there and no regular file (a folder, a
    FIFO, a socket...), for the message of an open that failed."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return None
    return None if stat.S_ISREG(mode) else file_kind(mode)


def release_lock(fd: int | None) -> None:
    """Gives back a lock take_lock() took (closes its descriptor), so that a
    process that lives on does not keep a finished run looking alive."""
    if fd is None or fd not in _HELD_LOCKS:
        return
    _HELD_LOCKS.remove(fd)
    try:
        os.close(fd)
    except OSError:
        pass


#: Flags of a file a run makes: new, never through a link, not inherited.
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def create_file(path: Path) -> int:
    """A new file for a run directory in place of anything at `path` (a
    link there is removed, not followed), open for writing: mode 0644 less
    the umask, so never writable by others whatever the umask."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    return os.open(path, _NEW_FILE, 0o644)


def write_atomically(path: Path, contents: bytes) -> None:
    """Replaces `path` so that a reader sees the old file or the new one,
    never a mix: a fresh temporary file beside it (mode 0644, see
    create_file), then a rename."""
    temp = path.with_name(f"{path.name}.tmp.{os.getpid()}.{threading.get_ident()}")
    try:
        fd = create_file(temp)
        with os.fdopen(fd, "wb") as file:
            file.write(contents)
            file.write(b"\n")
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise


class LineFile:
    """A file of whole lines, appended to: a line the disk takes only in
    part is cut off again, and a file left ending mid-line gets its line
    ended first."""

    def __init__(self, path: Path):
        self.path = path
        self._fd = _open_line_file(path)
        self._broken = False
        size = os.fstat(self._fd).st_size
        if size > 0 and os.pread(self._fd, 1, size - 1) != b"\n":
            os.write(self._fd, b"\n")

    def append(self, line: bytes) -> None:
        whole = (b"\n" if self._broken else b"") + line + b"\n"
        start = os.fstat(self._fd).st_size
        try:
            written = os.write(self._fd, whole)
            if written != len(whole):
                raise OSError(errno.ENOSPC, "short write")
            self._broken = False
        except OSError:
            try:
                os.ftruncate(self._fd, start)
            except OSError:
                self._broken = True
            raise

    def close(self) -> None:
        try:
            os.close(self._fd)
        except OSError:
            pass


def _open_line_file(path: Path) -> int:
    """Opens (or makes, mode 0644) a file of lines for appending: a regular
    file, never a link followed or a FIFO waited on. One already there that
    others could write is made writable by its owner only (the run writes
    it; nobody else may forge its lines)."""
    try:
        fd = os.open(
            path,
            os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK,
            0o644,
        )
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise RunDirError(
                f"{path}: is a symbolic link; a run writes files of its own: "
                "remove it, or pick another run directory"
            ) from None
        kind = _not_a_file(path)
        if kind is not None:
            raise RunDirError(
                f"{path}: is {kind}, not a file a run can write: remove it, or "
                "pick another run directory"
            ) from None
        raise
    try:
        meta = os.fstat(fd)
        if not stat.S_ISREG(meta.st_mode):
            raise RunDirError(
                f"{path}: is {file_kind(meta.st_mode)}, not a file a run can "
                "write: remove it, or pick another run directory"
            )
        if meta.st_mode & 0o022 and meta.st_uid == os.geteuid():
            os.fchmod(fd, meta.st_mode & 0o7755)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


#: Longest line of events.jsonl (and of a rank's record), newline left out:
#: readers take no longer one (runfile::MAX_EVENT_LINE).
MAX_EVENT_LINE = 1 << 20

#: The texts of an event that can be long, by type (rundir::texts_mut): a
#: model's output and what it was given, and messages.
LONG_TEXTS = {
    "generation_started": ("prompt", "golden"),
    "generation_progress": ("text",),
    "sample": ("prompt", "golden", "output"),
    "warning": ("message",),
    "failed": ("message",),
    "command_ack": ("message",),
    "control": ("message",),
}


def _line(event: dict[str, Any], time_text: str, rank: int | None) -> bytes:
    record: dict[str, Any] = {"v": protocol.SCHEMA_VERSION, "time": time_text}
    if rank is not None:
        record["rank"] = rank
    record.update(event)
    return json_text(record).encode()


def fit_event(
    event: dict[str, Any], unix: float, rank: int | None = None
) -> tuple[dict[str, Any], bytes]:
    """`event` (made serde_safe) and its line, the event's longest texts
    cut (each marked `... (N more bytes not recorded)`, half of it at a
    time, as `rundir::event_line` does) until the line is at most
    MAX_EVENT_LINE bytes. An event that fits is returned as it is."""
    time_text = rfc3339_millis(unix)
    line = _line(event, time_text, rank)
    if len(line) <= MAX_EVENT_LINE:
        return event, line
    event = dict(event)
    keys = [key for key in LONG_TEXTS.get(event.get("type"), ()) if isinstance(event.get(key), str)]
    while len(line) > MAX_EVENT_LINE and keys:
        # The longest in bytes; of equals the last, as Rust's max_by_key.
        longest = max(reversed(keys), key=lambda key: len(event[key].encode()))
        data = event[longest].encode()
        kept = data[: len(data) // 2].decode("utf-8", "ignore")
        dropped = len(data) - len(kept.encode())
        event[longest] = f"{kept}... ({dropped} more bytes not recorded)"
        shorter = _line(event, time_text, rank)
        # The long part is elsewhere (texts too short to cut further): the
        # line stays long, and readers skip it and say so.
        if len(shorter) >= len(line):
            break
        line = shorter
    return event, line


def record_line(event: dict[str, Any], unix: float, rank: int | None = None) -> bytes:
    """One events.jsonl line: `{"v":3,"time":...,"type":...,...}` (with
    `"rank"` for a rank's own record), at most MAX_EVENT_LINE bytes (see
    fit_event). Numbers that are not finite are written as serde writes
    them (protocol.serde_safe): text for losses, null elsewhere; never a
    bare NaN."""
    return fit_event(serde_safe(event), unix, rank)[1]


class RunFiles:
    """Rank 0's files: events.jsonl, the status file, training_output.log and
    config.json. Used by the writer thread only."""

    def __init__(self, root: Path, config: dict[str, Any] | None, status: protocol.StatusFold):
        make_dirs(root / "status")
        if config is not None:
            write_atomically(
                root / protocol.CONFIG_FILE,
                json.dumps(protocol.json_safe(config), indent=2, allow_nan=False).encode(),
            )
        self.root = root
        self.events = LineFile(root / protocol.EVENTS_FILE)
        self.log = LineFile(root / protocol.LOG_FILE)
        self.fold = status
        self.write_status()

    def write_status(self) -> None:
        status = self.fold.status
        status["updated_at"] = rfc3339_millis(time.time())
        text = json.dumps(serde_safe(status), indent=2, ensure_ascii=False, allow_nan=False)
        write_atomically(self.root / protocol.STATUS_FILE, text.encode())

    def close(self) -> None:
        self.events.close()
        self.log.close()


class Writer:
    """The one thread that writes a process's files: rank 0's run files
    (events, status, log, stdout) and every rank's own record. The training
    thread only puts items on a bounded queue and never waits for the disk;
    whatever one item does wrong (a value JSON cannot hold, a full disk) is
    reported once and the thread goes on with the next."""

    def __init__(
        self,
        run_files: RunFiles | None,
        rank_record: LineFile | None,
        rank: int,
        print_lines: bool,
        max_queued: int = MAX_QUEUED,
    ):
        self._run_files = run_files
        self._rank_record = rank_record
        self._rank = rank
        self._print = print_lines
        self._items: deque[tuple] = deque()
        self._ready = threading.Condition(threading.Lock())
        self._max_queued = max_queued
        self._progress_queued = 0
        #: The thread waits for an item (an event's put wakes it) ...
        self._waiting = False
        #: ... and a flush or close was put since it took the last items.
        self._urgent = False
        self._dropped = 0
        self._drops_reported = False
        self._warned = False
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="trainui-writer", daemon=True)
        self._thread.start()

    @property
    def dropped(self) -> int:
        """Items dropped because the queue was full."""
        return self._dropped

    # Called by the training thread (and the control, watchdog threads).

    def event(self, event: dict[str, Any], *, run: bool = True, rank: bool = False) -> None:
        """Queues `event` for events.jsonl (rank 0, `run`) and this rank's
        record (`rank`)."""
        self._put(("event", event, time.time(), run, rank))

    def line(self, text: str) -> None:
        """Queues a line for the log and stdout (rank 0)."""
        self._put(("line", text))

    def flush(self, timeout: float = 30.0) -> bool:
        """Waits until everything queued so far is written (at most
        `timeout` seconds); whether it was."""
        if not self._thread.is_alive():
            return False
        done = threading.Event()
        self._put(("flush", done))
        return done.wait(timeout)

    def close(self, timeout: float = 30.0) -> bool:
        """Writes what is queued and closes the files, waiting at most
        `timeout` seconds in all; whether everything was written."""
        deadline = time.monotonic() + timeout
        flushed = self.flush(timeout)
        self._put(("close",))
        self._thread.join(max(0.0, deadline - time.monotonic()))
        return flushed and not self._thread.is_alive()

    def _put(self, item: tuple) -> None:
        with self._ready:
            if item[0] in ("event", "line") and len(self._items) >= self._max_queued:
                # Full: a queued generation_progress makes room, else the
                # new item is dropped. Either way one item is lost.
                self._dropped += 1
                if _is_progress(item) or not self._drop_queued_progress():
                    return
            if _is_progress(item):
                self._progress_queued += 1
            self._items.append(item)
            if item[0] in ("flush", "close"):
                self._urgent = True
                self._ready.notify()
            elif self._waiting:
                self._ready.notify()

    def _drop_queued_progress(self) -> bool:
        """Removes the oldest queued `generation_progress`; whether one was."""
        if self._progress_queued == 0:
            return False
        for index, queued in enumerate(self._items):
            if _is_progress(queued):
                del self._items[index]
                self._progress_queued -= 1
                return True
        return False

    # The thread.

    def _take(self) -> list[tuple]:
        with self._ready:
            while not self._items:
                self._waiting = True
                self._ready.wait()
                self._waiting = False
            items = list(self._items)
            self._items.clear()
            self._progress_queued = 0
            self._urgent = False
        return items

    def _gather(self) -> None:
        """Lets items gather for `GATHER_SECS` (less when a flush or close
        comes): a loop logging every step wakes the thread a few times a
        second, not at every step."""
        with self._ready:
            if not self._urgent:
                self._ready.wait(GATHER_SECS)

    def _serve(self) -> None:
        while True:
            items = self._take()
            status_changed = False
            flushes = []
            closing = False
            for item in items:
                kind = item[0]
                try:
                    if kind == "event":
                        status_changed |= self._write_event(*item[1:])
                    elif kind == "line":
                        self._write_line(item[1])
                    elif kind == "flush":
                        flushes.append(item[1])
                    elif kind == "close":
                        closing = True
                except Exception as err:  # noqa: BLE001 - one bad item never ends the thread
                    self._warn(f"cannot write a {kind}: {type(err).__name__}: {err}")
            if self._dropped and not self._drops_reported:
                self._drops_reported = True
                self._report_drops()
                status_changed = True
            if status_changed and self._run_files is not None:
                self._guard(self._run_files.write_status, "the status file")
            for done in flushes:
                done.set()
            if closing:
                if self._run_files is not None:
                    self._run_files.close()
                if self._rank_record is not None:
                    self._rank_record.close()
                return
            self._gather()

    def _report_drops(self) -> None:
        message = (
            f"the run directory could not keep up: {self._dropped} events were "
            f"dropped (more than {self._max_queued} waited to be written; "
            "generation_progress went first); is its disk slow or full?"
        )
        self._warn(message)
        step = self._run_files.fold.status["current_step"] if self._run_files else 0
        try:
            self._write_event(
                {"type": "warning", "step": step, "message": message}, time.time(), True, True
            )
        except Exception:  # noqa: BLE001 - the writer goes on whatever this warning meets
            pass

    def _write_event(self, event: dict[str, Any], unix: float, run: bool, rank: bool) -> bool:
        changed = False
        # Cut to fit a line once, so that the status and the log show what
        # events.jsonl holds.
        clean, line = fit_event(serde_safe(event), unix)
        if rank and self._rank_record is not None:
            record = self._rank_record
            self._guard(
                lambda: record.append(fit_event(clean, unix, self._rank)[1]), "the rank record"
            )
        if run and self._run_files is not None:
            files = self._run_files
            self._guard(lambda: files.events.append(line), protocol.EVENTS_FILE)
            if protocol.shows_in_status(clean):
                self._guard(lambda: files.fold.apply(clean), "the status file")
                changed = True
            text = None
            try:
                text = protocol.format_event(clean)
            except Exception as err:  # noqa: BLE001 - the event is recorded all the same
                self._warn(f"cannot print a {clean.get('type')} event: {err}")
            if text is not None:
                self._write_line(text)
        return changed

    def _write_line(self, text: str) -> None:
        if self._run_files is None:
            return
        log = self._run_files.log
        self._guard(lambda: log.append(str(text).encode("utf-8", "replace")), protocol.LOG_FILE)
        if self._print:
            try:
                sys.stdout.write(f"{text}\n")
                sys.stdout.flush()
            except (OSError, ValueError):
                pass

    def _guard(self, write: Callable[[], None], what: str) -> None:
        """Runs a write; the first failure is a warning on stderr, and
        training goes on."""
        try:
            write()
        except Exception as err:  # noqa: BLE001 - nothing written may stop training
            self._warn(f"cannot write {what}: {type(err).__name__}: {err}")

    def _warn(self, message: str) -> None:
        if self._warned:
            return
        self._warned = True
        try:
            sys.stderr.write(f"trainui: warning: {message}\n")
        except (OSError, ValueError):
            pass


def _is_progress(item: tuple) -> bool:
    return item[0] == "event" and item[1].get("type") == "generation_progress"


class RankBeat:
    """ranks/rank-N.json: a thread replaces it at most once a second and on
    every phase or state change with what the training thread last set in
    `heartbeat`. `beat_*` is the time of the last heartbeat, not of the
    write, so a rank stuck in a collective keeps its old beat, step and
    phase. `on_tick` runs on the same thread about four times a second. The
    last write, at close(), happens on this thread too, so that a stuck disk
    never holds up the caller for longer than close's timeout."""

    def __init__(
        self,
        root: Path,
        rank: int,
        world_size: int,
        local_rank: int,
        heartbeat: Any,
        on_tick: Callable[[], None] | None = None,
    ):
        self.path = root / protocol.RANKS_DIR / f"rank-{rank}.json"
        self.rank = rank
        self.world_size = world_size
        self.local_rank = local_rank
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.heartbeat = heartbeat
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._on_tick = on_tick
        self._written: tuple | None = None
        #: The stop signal the rank caught before it ended (`SIGTERM`), once
        #: it ends: the file's `signal`.
        self.signal: str | None = None
        self.write()
        self._thread = threading.Thread(target=self._serve, name="trainui-rank-beat", daemon=True)
        self._thread.start()

    def changed(self) -> None:
        """The phase or state changed: write soon."""
        self._wake.set()

    def write(self) -> None:
        heartbeat = self.heartbeat
        phase, state, step, beat = heartbeat.phase, heartbeat.state, heartbeat.step, heartbeat.unix
        record = {
            "v": protocol.SCHEMA_VERSION,
            "rank": self.rank,
            "world_size": self.world_size,
            "local_rank": self.local_rank,
            "host": self.host,
            "pid": self.pid,
            "phase": phase,
            "step": int(step),
            "beat": rfc3339_millis(beat),
            "beat_unix": round(beat, 3),
            "written_unix": round(time.time(), 3),
            "state": state,
        }
        if self.signal is not None:
            record["signal"] = self.signal
        try:
            write_atomically(self.path, json_text(serde_safe(record)).encode())
        except (OSError, ValueError, TypeError):
            pass
        self._written = (phase, state)

    def _serve(self) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            self._wake.wait(0.25)
            self._wake.clear()
            if self._stop.is_set():
                break
            if self._on_tick is not None:
                try:
                    self._on_tick()
                except Exception:  # noqa: BLE001 - a helper's failure never stops the beat
                    pass
            now = time.monotonic()
            heartbeat = self.heartbeat
            if now - last >= 1.0 or (heartbeat.phase, heartbeat.state) != self._written:
                self.write()
                last = now
        self.write()  # the final phase and state

    def close(self, timeout: float = 5.0) -> bool:
        """Stops the thread after its final write; waits at most `timeout`
        seconds. Whether the final write was made."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        return not self._thread.is_alive()
