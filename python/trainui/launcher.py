"""What `trainui run` tells the job it starts, through the environment.

`trainui run -- COMMAND` sets these for the job (and for every rank a
launcher such as torchrun starts from it); the run handle and the
integrations honour them, so a job needs no code of its own to be
relaunched after a stall:

- `TRAINUI_RUN_DIR`: the run directory trainui watches (it wins over the
  one the job names).
- `TRAINUI_ON_STALL=exit` (under `--restart-on-stall N`): the watchdog ends
  a stalled job with the stall exit status, 75, and trainui relaunches it.
- `TRAINUI_RESTART=K`: this is the K-th relaunch after a stall; the run
  directory already holds the run, which goes on in it.
- `TRAINUI_RESUME_CHECKPOINT=PATH`: the newest checkpoint the run's events
  name that is still on disk (unset when there is none: start over).
  `resume_checkpoint()` returns it (None on a first start), e.g. for
  `trainer.train(resume_from_checkpoint=trainui.resume_checkpoint())`.
- `TRAINUI_PRINT_LINES=0`: trainui prints the log lines from the events;
  the job does not print them too.
- `TRAINUI_ALERTS=launcher`: trainui runs `alerts.command`; the job does not.
"""

from __future__ import annotations

import os

__all__ = [
    "ON_STALL_ENV",
    "RESTART_ENV",
    "RESUME_CHECKPOINT_ENV",
    "PRINT_LINES_ENV",
    "on_stall",
    "print_lines",
    "restart_number",
    "resume_checkpoint",
]

ON_STALL_ENV = "TRAINUI_ON_STALL"
RESTART_ENV = "TRAINUI_RESTART"
RESUME_CHECKPOINT_ENV = "TRAINUI_RESUME_CHECKPOINT"
PRINT_LINES_ENV = "TRAINUI_PRINT_LINES"


def resume_checkpoint() -> str | None:
    """The checkpoint a job relaunched after a stall resumes from, or None
    (not relaunched, or no checkpoint was on disk)."""
    if not restart_number():
        return None
    return os.environ.get(RESUME_CHECKPOINT_ENV) or None


def restart_number() -> int:
    """Which relaunch after a stall this job is: 0 for its first start."""
    text = os.environ.get(RESTART_ENV, "").strip()
    if not text:
        return 0
    if not text.isdigit():
        raise ValueError(
            f"{RESTART_ENV}={text!r}: expected a whole number (trainui run sets it on a "
            "relaunch); unset it to start a new run"
        )
    return int(text)


def on_stall(asked: str) -> str:
    """What a stall does: `exit` when trainui run relaunches stalled jobs,
    else what the job asked for."""
    from_env = os.environ.get(ON_STALL_ENV, "").strip()
    if not from_env:
        return asked
    if from_env not in ("warn", "exit"):
        raise ValueError(f'{ON_STALL_ENV}={from_env!r}: expected "warn" or "exit"')
    return from_env


def print_lines(asked: bool) -> bool:
    """Whether the job prints its log lines: not when trainui prints them."""
    return False if os.environ.get(PRINT_LINES_ENV, "").strip() == "0" else asked
