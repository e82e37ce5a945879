"""What the records of the other ranks say of their failure, so that rank 0
of a multi-process job names the rank that failed first, with its own error.
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

from . import protocol
from .rundir import MAX_EVENT_LINE

#: Most bytes read from the end of a rank's record to find its failure: its
#: last line, however long a line may be (rundir.MAX_EVENT_LINE).
RECORD_TAIL_BYTES = MAX_EVENT_LINE + 2


def rank_failure(root: Path, rank: int) -> tuple[float, int, str] | None:
    """When `rank`'s own record (ranks/rank-N.jsonl) ends with a `failed`
    event: its time (unix seconds), step and message. Reads only the end of
    a regular file, never through a link, never waiting on a FIFO."""
    path = root / protocol.RANKS_DIR / f"rank-{rank}.jsonl"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        meta = os.fstat(fd)
        if not stat.S_ISREG(meta.st_mode):
            return None
        start = max(0, meta.st_size - RECORD_TAIL_BYTES)
        tail = os.pread(fd, meta.st_size - start, start)
    except OSError:
        return None
    finally:
        os.close(fd)
    lines = tail.split(b"\n")
    if start > 0:
        lines = lines[1:]  # the first may be the end of a line cut off
    for line in reversed(lines):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except (ValueError, RecursionError):
            return None
        if not isinstance(event, dict) or event.get("type") != "failed":
            return None
        unix = protocol.parse_rfc3339(event.get("time"))
        step, message = event.get("step"), event.get("message")
        if (
            unix is None
            or isinstance(step, bool)
            or not isinstance(step, int)
            or not isinstance(message, str)
        ):
            return None
        return unix, step, message
    return None


def with_earlier_failure(root: Path, world_size: int, own: str) -> str:
    """`own` failure message of rank 0, after the failure of the rank
    that failed first, when another rank's record says it failed."""
    now = time.time()
    failures = []
    for rank in range(1, world_size):
        failure = rank_failure(root, rank)
        if failure is not None and failure[0] <= now:
            failures.append((failure[0], rank, failure[1], failure[2]))
    if not failures:
        return own
    failures.sort()
    _, rank, step, message = failures[0]
    also = [str(other[1]) for other in failures[1:]]
    more = f"; rank{'s' if len(also) > 1 else ''} {', '.join(also)} failed too" if also else ""
    return f"rank {rank} failed at step {step}: {message} (then rank 0: {own}{more})"
