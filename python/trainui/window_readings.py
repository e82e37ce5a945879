"""The readings of one logging window: the losses (and gradient norms) a
training loop hands `Run.log_step`, floats or tensors, kept as they were
given and read back from the device together once per window.
"""

from __future__ import annotations

from typing import Any


def is_tensor(value: Any) -> bool:
    """Whether `value` is a tensor (told by its methods: torch is not imported)."""
    return hasattr(value, "detach") and hasattr(value, "reshape")


class Readings:
    """The values of one logging window as they were given (floats, tensors,
    None), read back together once: no device sync per step. Runs of
    scalar tensors are stacked on their device now and then, so a long
    window holds a few tensors, not thousands."""

    STACK_EVERY = 256

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.count = 0
        self._tensor_tail = 0

    def append(self, value: Any) -> None:
        self.count += 1
        if is_tensor(value):
            if value.requires_grad:
                value = value.detach()
            if value.dim() != 0:
                value = (value.float().mean() if value.numel() != 1 else value).reshape(())
            self.items.append(value)
            self._tensor_tail += 1
            if self._tensor_tail >= self.STACK_EVERY:
                import torch

                tail = self.items[-self._tensor_tail :]
                try:
                    stacked = torch.stack(tail)
                except (RuntimeError, TypeError):  # mixed devices or kinds: keep them
                    stacked = None
                if stacked is not None:
                    del self.items[-self._tensor_tail :]
                    self.items.append(stacked)
                self._tensor_tail = 0
        else:
            self.items.append(None if value is None else float(value))
            self._tensor_tail = 0

    def floats(self) -> list[float | None]:
        """Every value as a float (None stays None), in order; one read-back
        from the device for all the window's tensors."""
        if len(self.items) == 1 and is_tensor(self.items[0]) and self.items[0].dim() == 0:
            return [float(self.items[0].item())]  # a window of one step
        tensors = [item for item in self.items if is_tensor(item)]
        read: list[float] = []
        if tensors:
            import torch

            try:
                read = torch.cat([t.reshape(-1) for t in tensors]).tolist()
            except (RuntimeError, TypeError):  # mixed devices or kinds
                read = [float(v) for t in tensors for v in t.reshape(-1).double().cpu().tolist()]
        out: list[float | None] = []
        position = 0
        for item in self.items:
            if is_tensor(item):
                size = int(item.numel())
                out.extend(float(v) for v in read[position : position + size])
                position += size
            else:
                out.append(item)
        return out
