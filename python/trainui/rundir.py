"""The run directory, written as the Rust trainer writes it (src/rundir.rs):

```text
RUN_DIR/config.json                  the run's config (rank 0)
RUN_DIR/events.jsonl                 every event, one JSON object a line (rank 0)
RUN_DIR/status/training_status.json  current status, replaced atomically (rank 0)
RUN_DIR/training_output.log          the printed lines (rank 0)
RUN_DIR/lock                         rank 0's advisory lock and pid
RUN_DIR/ranks/rank-N.json            rank N's heartbeat, replaced atomically
RUN_DIR/ranks/rank-N.jsonl           rank N's own record of events
```

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
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Deque, Dict, List, Optional

from . import protocol
from .protocol import json_text, rfc3339_millis, serde_safe

#: Lock files of this process, held until their run ends (release_lock).
_HELD_LOCKS: List[int] = []
#: Most items the writer's queue holds; beyond, items are dropped
#: (`generation_progress` first) and the drops are reported once.
MAX_QUEUED = 10_000


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

    The descriptor is close-on-exec, so a program this process starts does
    not hold the lock; but a child made by fork() alone (DataLoader workers,
    multiprocessing with the "fork" start method) shares the locked file
    and keeps the run looking alive until that child ends too. The lock is
    only a sign of life; nothing is lost by it."""
    make_dirs(root)
    path = root / protocol.LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    for attempt in range(6):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN) or attempt == 5:
                holder = ""
                try:
                    holder = path.read_text().strip()
                except OSError:
                    pass
                os.close(fd)
                if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise RunDirError(
                        f"{root}: in use by the trainui process {holder or '?'} (it holds "
                        f"{path}); watch it with `trainui watch {root}`, or train in another "
                        "run directory"
                    ) from None
                raise RunDirError(f"{path}: cannot lock: {err}") from err
            # A reader probing the lock holds it shared for an instant.
            time.sleep(0.02)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    except OSError:
        os.close(fd)
        raise
    _HELD_LOCKS.append(fd)
    return fd


def release_lock(fd: Optional[int]) -> None:
    """Gives back a lock take_lock() took (closes its descriptor), so that a
    process that lives on does not keep a finished run looking alive."""
    if fd is None or fd not in _HELD_LOCKS:
        return
    _HELD_LOCKS.remove(fd)
    try:
        os.close(fd)
    except OSError:
        pass


def write_atomically(path: Path, contents: bytes) -> None:
    """Replaces `path` so that a reader sees the old file or the new one,
    never a mix: a temporary file beside it, then a rename."""
    temp = path.with_name(f"{path.name}.tmp.{os.getpid()}.{threading.get_ident()}")
    try:
        with open(temp, "wb") as file:
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
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._broken = False
        size = os.fstat(self._fd).st_size
        if size > 0:
            with open(path, "rb") as file:
                file.seek(size - 1)
                if file.read(1) != b"\n":
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


def record_line(event: Dict[str, Any], unix: float, rank: Optional[int] = None) -> bytes:
    """One events.jsonl line: `{"v":3,"time":...,"type":...,...}` (with
    `"rank"` for a rank's own record). Numbers that are not finite are
    written as serde writes them (protocol.serde_safe): text for losses,
    null elsewhere; never a bare NaN."""
    record: Dict[str, Any] = {"v": protocol.SCHEMA_VERSION, "time": rfc3339_millis(unix)}
    if rank is not None:
        record["rank"] = rank
    record.update(serde_safe(event))
    return json_text(record).encode()


class RunFiles:
    """Rank 0's files: events.jsonl, the status file, training_output.log and
    config.json. Used by the writer thread only."""

    def __init__(self, root: Path, config: Optional[Dict[str, Any]], status: protocol.StatusFold):
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
        run_files: Optional[RunFiles],
        rank_record: Optional[LineFile],
        rank: int,
        print_lines: bool,
        max_queued: int = MAX_QUEUED,
    ):
        self._run_files = run_files
        self._rank_record = rank_record
        self._rank = rank
        self._print = print_lines
        self._items: Deque[tuple] = deque()
        self._ready = threading.Condition(threading.Lock())
        self._max_queued = max_queued
        self._progress_queued = 0
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

    def event(self, event: Dict[str, Any], *, run: bool = True, rank: bool = False) -> None:
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

    def _take(self) -> List[tuple]:
        with self._ready:
            while not self._items:
                self._ready.wait()
            items = list(self._items)
            self._items.clear()
            self._progress_queued = 0
        return items

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
                except Exception as err:  # one bad item never ends the thread
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

    def _report_drops(self) -> None:
        message = (f"the run directory could not keep up: {self._dropped} events were "
                   f"dropped (more than {self._max_queued} waited to be written; "
                   "generation_progress went first); is its disk slow or full?")
        self._warn(message)
        step = self._run_files.fold.status["current_step"] if self._run_files else 0
        try:
            self._write_event({"type": "warning", "step": step, "message": message},
                              time.time(), True, True)
        except Exception:
            pass

    def _write_event(self, event: Dict[str, Any], unix: float, run: bool, rank: bool) -> bool:
        changed = False
        clean = serde_safe(event)
        if rank and self._rank_record is not None:
            record = self._rank_record
            self._guard(lambda: record.append(record_line(clean, unix, self._rank)),
                        "the rank record")
        if run and self._run_files is not None:
            files = self._run_files
            self._guard(lambda: files.events.append(record_line(clean, unix)),
                        protocol.EVENTS_FILE)
            if protocol.shows_in_status(clean):
                self._guard(lambda: files.fold.apply(clean), "the status file")
                changed = True
            text = None
            try:
                text = protocol.format_event(clean)
            except Exception as err:
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

    def __init__(self, root: Path, rank: int, world_size: int, local_rank: int,
                 heartbeat: Any, on_tick: Optional[Callable[[], None]] = None):
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
        self._written: Optional[tuple] = None
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
                except Exception:  # a helper's failure never stops the beat
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
