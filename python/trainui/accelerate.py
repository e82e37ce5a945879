"""An Accelerate tracker that makes the job a trainui run.

```python
from accelerate import Accelerator
from trainui.accelerate import TrainuiTracker

tracker = TrainuiTracker("runs/x", max_steps=1000)
accelerator = Accelerator(log_with=tracker)
accelerator.init_trackers("x", config={"lr": 3e-4})       # opens the run
model, optimizer, data = accelerator.prepare(model, optimizer, data)
for step, batch in enumerate(data, start=1):
    loss = model(**batch).loss
    accelerator.backward(loss)
    optimizer.step(); optimizer.zero_grad()
    accelerator.log({"loss": loss.detach(), "lr": optimizer.param_groups[0]["lr"]}, step=step)
    actions = tracker.boundary(step)         # every rank, every step: commands agreed
    if actions.eval:
        accelerator.log({"eval_loss": evaluate(model)}, step=step)
    if actions.save or step == 1000:
        accelerator.save_state(f"runs/x/checkpoints/checkpoint-{step}")
        tracker.run.checkpoint(step, f"runs/x/checkpoints/checkpoint-{step}")
    if actions.stop or step == 1000:
        break
accelerator.end_training()                   # finished, or stopped by a command
```

``alerts={"command": ..., "timeout_seconds": ...}`` runs a shell command
when the run ends, fails or stalls, as `trainui.Run` does (rank 0 only).

`log()` maps ``loss``/``train_loss``, ``lr``/``learning_rate`` and
``grad_norm`` onto `Run.log_step` (a ``tokens`` value counts tokens trained
on), and
``eval_loss`` onto an evaluation with that validation loss. Other keys are
left to the other trackers. ``tracker.run`` is the `trainui.Run` for
everything else (samples: `trainui.evaluate_samples`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from accelerate.tracking import GeneralTracker

from .alerts import settings_of
from .protocol import json_safe
from .run import Actions, Run

__all__ = ["TrainuiTracker"]


class TrainuiTracker(GeneralTracker):
    """Accelerate tracker ``trainui``: every rank keeps a `trainui.Run`.

    The run opens at ``accelerator.init_trackers()`` (after the process group
    exists), with the configuration given there as ``config.json``.
    """

    name = "trainui"
    requires_logging_directory = False
    # Every rank needs its run: commands are agreed at the step boundary by all ranks.
    main_process_only = False

    def __init__(
        self,
        run_dir: str | os.PathLike | None = None,
        *,
        max_steps: int,
        run_name: str | None = None,
        settings: Mapping[str, Any] | None = None,
        on_stall: str = "warn",
        config: Mapping[str, Any] | None = None,
        device: str | None = None,
        parameters: int = 0,
        vocab_size: int = 0,
        train_examples: int = 0,
        val_examples: int = 0,
        start_step: int = 0,
        print_lines: bool = True,
        alerts: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        settings_of(alerts)  # a mistake is told here, not when the run opens
        self.alerts = None if alerts is None else dict(alerts)
        self.run_dir = run_dir
        self.max_steps = max_steps
        self.run_name = run_name
        self.settings = dict(settings or {})
        self.on_stall = on_stall
        self.config = dict(config or {})
        self.device = device
        self.start_info = dict(
            parameters=parameters,
            vocab_size=vocab_size,
            train_examples=train_examples,
            val_examples=val_examples,
            start_step=start_step,
        )
        self.print_lines = print_lines
        self._started = False
        self._run: Run | None = None
        self._learning_rate = 0.0
        #: A step boundary applied a stop (the same on every rank).
        self._stopped = False

    # GeneralTracker interface

    @property
    def tracker(self) -> Run:
        return self.run

    @property
    def run(self) -> Run:
        """The trainui run (opened on first use if init_trackers gave no config)."""
        if self._run is None:
            self._open({})
        assert self._run is not None
        return self._run

    def start(self) -> None:
        # init_trackers calls this, then store_init_configuration when it has
        # a config: the run opens at the first of the two that can write it.
        self._started = True

    def store_init_configuration(self, values: dict) -> None:
        self._open(values)

    def log(self, values: dict, step: int | None = None, **kwargs: Any) -> None:
        run = self.run
        step = run.step if step is None else int(step)
        rate = values.get("lr", values.get("learning_rate"))
        if rate is not None:
            self._learning_rate = float(rate)
        loss = values.get("loss", values.get("train_loss"))
        if loss is not None:
            run.log_step(
                step,
                loss,
                self._learning_rate,
                tokens=int(values.get("tokens", 0) or 0),
                grad_norm=values.get("grad_norm"),
            )
        if "eval_loss" in values:
            eval_loss = values["eval_loss"]
            eval_loss = float(eval_loss.item() if hasattr(eval_loss, "item") else eval_loss)
            run.log_val_loss(step, eval_loss, int(values.get("eval_batches", 1) or 1))

    def finish(self) -> None:
        """Ends the run: `stopped` when a step boundary applied a stop, else
        `finished`: a stop (command or signal) that arrives after the last
        boundary comes too late to be applied."""
        if self._run is not None and not self._run.finished:
            self._run.finish("stopped" if self._stopped else "finished")

    # trainui

    def boundary(self, step: int) -> Actions:
        """Heartbeat and step boundary: call on every rank after every step."""
        run = self.run
        run.beat("training", step)
        actions = run.boundary(step)
        self._stopped = self._stopped or actions.stop
        return actions

    def _open(self, config: Mapping[str, Any] | None) -> None:
        if self._run is not None:
            return
        merged = {**self.config, **dict(config or {})}
        self._run = Run(
            self.run_dir,
            max_steps=self.max_steps,
            run_name=self.run_name,
            config={"accelerate": json_safe(merged)},
            settings=self.settings,
            framework="accelerate",
            on_stall=self.on_stall,
            print_lines=self.print_lines,
            alerts=self.alerts,
        )
        device = self.device
        if device is None:
            try:
                from accelerate import PartialState

                device = str(PartialState().device)
            except Exception:  # noqa: BLE001 - only a label
                device = "cpu"
        self._run.start(device=device, **self.start_info)
