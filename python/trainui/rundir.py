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
events on a queue, so a slow disk never slows training; `flush()` waits
for what was queued.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import queue
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from . import protocol
from .protocol import json_text, rfc3339_millis

#: Lock files of this process, kept open (and so locked) until it ends.
_HELD_LOCKS: List[int] = []


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


def take_lock(root: Path) -> int:
    """Takes RUN_DIR/lock (flock, exclusive, the lock the Rust binary takes)
    and writes this pid into it; the descriptor stays open for as long as
    the process lives. Creates the directory."""
    root.mkdir(parents=True, exist_ok=True, mode=0o755)
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
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _HELD_LOCKS.append(fd)
    return fd


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
    `"rank"` for a rank's own record)."""
    record: Dict[str, Any] = {"v": protocol.SCHEMA_VERSION, "time": rfc3339_millis(unix)}
    if rank is not None:
        record["rank"] = rank
    record.update(event)
    return json_text(record).encode()


class RunFiles:
    """Rank 0's files: events.jsonl, the status file, training_output.log and
    config.json. Used by the writer thread only."""

    def __init__(self, root: Path, config: Optional[Dict[str, Any]], status: protocol.StatusFold):
        (root / "status").mkdir(parents=True, exist_ok=True)
        if config is not None:
            write_atomically(
                root / protocol.CONFIG_FILE,
                json.dumps(config, indent=2, allow_nan=False, default=str).encode(),
            )
        self.root = root
        self.events = LineFile(root / protocol.EVENTS_FILE)
        self.log = LineFile(root / protocol.LOG_FILE)
        self.fold = status
        self.write_status()

    def write_status(self) -> None:
        status = self.fold.status
        status["updated_at"] = rfc3339_millis(time.time())
        text = json.dumps(status, indent=2, ensure_ascii=False, allow_nan=False)
        write_atomically(self.root / protocol.STATUS_FILE, text.encode())

    def close(self) -> None:
        self.events.close()
        self.log.close()


class Writer:
    """The one thread that writes a process's files: rank 0's run files
    (events, status, log, stdout) and every rank's own record. The training
    thread only puts items on the queue."""

    def __init__(
        self,
        run_files: Optional[RunFiles],
        rank_record: Optional[LineFile],
        rank: int,
        print_lines: bool,
    ):
        self._run_files = run_files
        self._rank_record = rank_record
        self._rank = rank
        self._print = print_lines
        self._queue: "queue.SimpleQueue[tuple]" = queue.SimpleQueue()
        self._warned = False
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="trainui-writer", daemon=True)
        self._thread.start()

    # Called by the training thread (and the control, watchdog threads).

    def event(self, event: Dict[str, Any], *, run: bool = True, rank: bool = False) -> None:
        """Queues `event` for events.jsonl (rank 0, `run`) and this rank's
        record (`rank`)."""
        self._queue.put(("event", event, time.time(), run, rank))

    def line(self, text: str) -> None:
        """Queues a line for the log and stdout (rank 0)."""
        self._queue.put(("line", text))

    def flush(self, timeout: float = 30.0) -> bool:
        """Waits until everything queued so far is written."""
        if not self._thread.is_alive():
            return False
        done = threading.Event()
        self._queue.put(("flush", done))
        return done.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        self.flush(timeout)
        self._queue.put(("close",))
        self._thread.join(timeout)

    # The thread.

    def _serve(self) -> None:
        while True:
            items = [self._queue.get()]
            while True:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            status_changed = False
            flushes = []
            closing = False
            for item in items:
                kind = item[0]
                if kind == "event":
                    status_changed |= self._write_event(*item[1:])
                elif kind == "line":
                    self._write_line(item[1])
                elif kind == "flush":
                    flushes.append(item[1])
                elif kind == "close":
                    closing = True
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

    def _write_event(self, event: Dict[str, Any], unix: float, run: bool, rank: bool) -> bool:
        changed = False
        if rank and self._rank_record is not None:
            line = record_line(event, unix, self._rank)
            self._guard(lambda: self._rank_record.append(line), "the rank record")
        if run and self._run_files is not None:
            files = self._run_files
            line = record_line(event, unix)
            self._guard(lambda: files.events.append(line), protocol.EVENTS_FILE)
            if protocol.shows_in_status(event):
                files.fold.apply(event)
                changed = True
            text = protocol.format_event(event)
            if text is not None:
                self._write_line(text)
        return changed

    def _write_line(self, text: str) -> None:
        if self._run_files is None:
            return
        log = self._run_files.log
        self._guard(lambda: log.append(text.encode()), protocol.LOG_FILE)
        if self._print:
            try:
                sys.stdout.write(text + "\n")
                sys.stdout.flush()
            except (OSError, ValueError):
                pass

    def _guard(self, write: Callable[[], None], what: str) -> None:
        """Runs a write; the first failure is a warning on stderr, and
        training goes on."""
        try:
            write()
        except (OSError, ValueError) as err:
            if not self._warned:
                self._warned = True
                try:
                    sys.stderr.write(f"trainui: warning: cannot write {what}: {err}\n")
                except (OSError, ValueError):
                    pass


class RankBeat:
    """ranks/rank-N.json: a thread replaces it at most once a second and on
    every phase or state change with what the training thread last set in
    `heartbeat`. `beat_*` is the time of the last heartbeat, not of the
    write, so a rank stuck in a collective keeps its old beat, step and
    phase. `on_tick` runs on the same thread about four times a second."""

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
            write_atomically(self.path, json_text(record).encode())
        except OSError:
            pass
        self._written = (phase, state)

    def _serve(self) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            self._wake.wait(0.25)
            self._wake.clear()
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

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(5)
        self.write()
