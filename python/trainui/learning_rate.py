"""A live change of the learning rate (`trainui ctl RUN_DIR set
train.learning_rate=...`), applied to a torch optimizer and its schedulers.

Imports nothing: it works on any object shaped like a torch optimizer
(``param_groups``) and like torch's learning-rate schedulers (``base_lrs``,
and ``_schedulers`` for the chained and sequential ones).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["set_learning_rate"]


def set_learning_rate(optimizer: Any, schedulers: Any, rate: float) -> None:
    """Makes `rate` the peak learning rate of `optimizer` from now on.

    `schedulers`: the optimizer's scheduler, a list of them, or None. Their
    base rates become `rate` and each group's current rate is scaled by the
    same factor, so a warmup or decay schedule goes on from where it is, at
    the new height.
    """
    if schedulers is None:
        found: list[Any] = []
    elif isinstance(schedulers, Iterable) and not hasattr(schedulers, "step"):
        found = list(schedulers)
    else:
        found = [schedulers]
    for scheduler in list(found):
        found.extend(getattr(scheduler, "_schedulers", []) or [])
    bases = None
    for scheduler in found:
        if getattr(scheduler, "base_lrs", None) is not None:
            bases = list(scheduler.base_lrs)
            scheduler.base_lrs = [rate for _ in scheduler.base_lrs]
    for i, group in enumerate(optimizer.param_groups):
        base = bases[i] if bases and i < len(bases) else group.get("initial_lr", group["lr"])
        factor = group["lr"] / base if base else 1.0
        group["lr"] = rate * factor
        group["initial_lr"] = rate
