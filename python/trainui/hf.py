"""A `transformers.Trainer` callback that makes the job a trainui run.

```python
from trainui.hf import TrainuiCallback

examples = [{"prompt": "67+1=", "completion": "68"}]
trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=val,
                  callbacks=[TrainuiCallback("runs/x", tokenizer=tokenizer,
                                             eval_examples=examples)])
trainer.train()
```

The run directory then holds what `trainui train` writes (events, status
file, log lines, per-rank records), `trainui watch`/`status`/`ctl` handle
the job, and every evaluation generates samples under a deadline
(`eval.eval_timeout_seconds`), so no `model.generate()` can hang the job.

Commands (`trainui ctl`, control files, signals) are applied at a step
boundary, agreed by every rank at the same step: `stop` ends training after
the step with a final checkpoint (exit 0), `save` and `eval_now` do what they
say, `pause`/`resume` hold the loop, `set` changes live settings:
`train.learning_rate` (the optimizer and the scheduler's base rates),
`train.log_steps`, `eval.eval_steps` and `checkpoint.save_steps` (where the
Trainer reads them), `checkpoint.save_total_limit` and the `eval.*` keys of
the sample evaluation.

Deadlines: the sample generations have one; the Trainer's own validation
loss pass (``Trainer.evaluate``, when ``eval_strategy`` is not ``"no"``) has
none. It beats the watchdog at every prediction step (phase `validating`),
so a hang there shows as `stalled`, but nothing ends it: bound it with the
size of ``eval_dataset``.

`step` events: the Trainer logs the mean loss of its logging window; the
callback hands the run one reading per optimizer step of that window, so
tokens/s and the ETA are per step. An evaluation or checkpoint in the middle
of a window (``eval_now``, ``save``) restarts the run's clock, so that one
window's rate counts only the steps after it.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from transformers import TrainerCallback

from . import launcher
from .alerts import settings_of
from .generate import evaluate_samples
from .learning_rate import set_learning_rate
from .protocol import json_safe
from .run import Run

__all__ = ["TrainuiCallback", "trainui_settings_from_args"]

#: A step interval that never comes: the Trainer divides by its intervals, so
#: "never" cannot be 0 there.
_NEVER = sys.maxsize


def _strategy(value: Any) -> str:
    return str(getattr(value, "value", value))


def trainui_settings_from_args(args: Any, state: Any) -> dict[str, dict[str, Any]]:
    """The live settings a Trainer's arguments imply (intervals as the Trainer computed them)."""
    eval_steps = state.eval_steps if _strategy(args.eval_strategy) == "steps" else 0
    save_steps = state.save_steps if _strategy(args.save_strategy) == "steps" else 0
    log_steps = state.logging_steps if _strategy(args.logging_strategy) == "steps" else 0
    settings: dict[str, dict[str, Any]] = {
        "train": {"learning_rate": float(args.learning_rate)},
        "eval": {"eval_steps": int(eval_steps or 0)},
        "checkpoint": {
            "save_steps": int(save_steps or 0),
            "save_total_limit": int(args.save_total_limit or 0),
        },
    }
    if log_steps:
        settings["train"]["log_steps"] = int(log_steps)
    return settings


def _merge(base: dict[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    out = {section: dict(values) for section, values in base.items()}
    for section, values in (overrides or {}).items():
        out.setdefault(section, {}).update(values)
    return out


class TrainuiCallback(TrainerCallback):
    """Writes the run directory of a `transformers.Trainer` job and obeys its commands.

    ``run_dir``: the run directory (or ``$TRAINUI_RUN_DIR``). ``tokenizer``
    and ``eval_examples`` (dicts ``{"prompt", "completion", "origin"?}``)
    enable the sample evaluation at every evaluation. ``settings``: nested
    live settings that win over what the Trainer's arguments imply (for
    example ``{"eval": {"samples": 4, "eval_timeout_seconds": 30}}``).
    ``generate_kwargs`` go to every ``model.generate()`` of the evaluation.
    ``alerts``: ``{"command": ..., "timeout_seconds": ...}``, a shell command
    run when the run ends, fails or stalls (see `trainui.Run`).
    Give the callback to the Trainer on every rank; only rank 0 writes the
    shared files.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike | None = None,
        *,
        tokenizer: Any = None,
        eval_examples: Sequence[Mapping[str, Any]] | None = None,
        settings: Mapping[str, Any] | None = None,
        on_stall: str = "warn",
        run_name: str | None = None,
        generate_kwargs: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
        alerts: Mapping[str, Any] | None = None,
    ) -> None:
        settings_of(alerts)  # a mistake is told here, not when training begins
        self.alerts = None if alerts is None else dict(alerts)
        self.run_dir = run_dir
        self.tokenizer = tokenizer
        self.eval_examples = list(eval_examples or [])
        self.settings = settings
        self.on_stall = on_stall
        self.run_name = run_name
        self.generate_kwargs = dict(generate_kwargs or {})
        self.config = config
        #: The trainui run, from `on_train_begin` on.
        self.run: Run | None = None
        self.stopped = False
        self._tokens_seen = 0
        self._logged_step = 0
        self._has_val = False
        # A pause to hold again once the Trainer has saved or evaluated, and
        # what waits for the end of a pause.
        self._hold_pause = False
        self._save_after_pause = False
        self._eval_after_pause = False
        #: The Trainer that calls this callback, when found (see _find_trainer):
        #: it evaluates while paused, from whichever hook holds the pause.
        self._trainer: Any = None

    @property
    def resume_checkpoint(self) -> str | None:
        """The checkpoint to resume from when `trainui run --restart-on-stall`
        relaunched the job after a stall (None otherwise): pass it on, as
        ``trainer.train(resume_from_checkpoint=callback.resume_checkpoint)``."""
        return launcher.resume_checkpoint()

    # ------------------------------------------------------------------
    # Beginning and end

    def on_train_begin(
        self,
        args,
        state,
        control,
        model=None,
        processing_class=None,
        train_dataloader=None,
        **kwargs,
    ):
        if self.tokenizer is None and processing_class is not None and self.eval_examples:
            self.tokenizer = processing_class
        self._has_val = _strategy(args.eval_strategy) != "no"
        settings = _merge(trainui_settings_from_args(args, state), self.settings)
        if state.is_world_process_zero:
            _forget_empty_output_dir(self.run_dir, args.output_dir)
        config = self.config
        if config is None:
            config = {"trainer": json.loads(args.to_json_string())}
            if model is not None and hasattr(model, "config"):
                config["model"] = json_safe(model.config.to_dict())
        self.run = Run(
            self.run_dir,
            max_steps=state.max_steps,
            run_name=self.run_name,
            config=json_safe(config),
            settings=settings,
            framework="transformers",
            on_stall=self.on_stall,
            alerts=self.alerts,
        )
        atexit.register(self._fail_if_unfinished)
        self._trainer = self._find_trainer()
        self._apply_settings(args, state, None, None, set(_flat_keys(self.run.settings)))
        train_examples = 0
        dataset = getattr(train_dataloader, "dataset", None)
        try:
            train_examples = len(dataset) if dataset is not None else 0
        except TypeError:
            pass
        parameters = sum(p.numel() for p in model.parameters()) if model is not None else 0
        vocab = getattr(getattr(model, "config", None), "vocab_size", 0) or 0
        self._tokens_seen = int(getattr(state, "num_input_tokens_seen", 0) or 0)
        self._logged_step = int(state.global_step)
        self.run.start(
            device=str(args.device),
            parameters=parameters,
            vocab_size=int(vocab),
            train_examples=train_examples,
            val_examples=len(self.eval_examples),
            start_step=state.global_step,
        )
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if self.run is not None and not self.run.finished:
            self.run.beat(step=state.global_step)
            self.run.finish("stopped" if self.stopped else "finished")
        return control

    def _find_trainer(self) -> Any:
        """The Trainer whose `on_train_begin` this is, from the calling frames
        (the callback events do not pass it), or None."""
        frame = sys._getframe(1)
        for _ in range(8):
            if frame is None:
                return None
            candidate = frame.f_locals.get("self")
            handler = getattr(candidate, "callback_handler", None)
            if any(c is self for c in getattr(handler, "callbacks", ())) and callable(
                getattr(candidate, "evaluate", None)
            ):
                return candidate
            frame = frame.f_back
        return None

    def _fail_if_unfinished(self) -> None:
        """At exit: a Trainer that raised never calls on_train_end; say so."""
        run = self.run
        if run is None or run.finished:
            return
        error = getattr(sys, "last_value", None)
        run.fail(
            f"training ended with {type(error).__name__}: {error}"
            if error is not None
            else "training ended before on_train_end"
        )

    # ------------------------------------------------------------------
    # Steps

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.run is None or not logs or "loss" not in logs:
            return control
        seen = int(getattr(state, "num_input_tokens_seen", 0) or 0)
        tokens, self._tokens_seen = max(seen - self._tokens_seen, 0), seen
        rate = logs.get("learning_rate")
        if rate is None:
            optimizer = kwargs.get("optimizer")
            rate = optimizer.param_groups[0]["lr"] if optimizer is not None else 0.0
        grad_norm = logs.get("grad_norm")
        first, self._logged_step = self._logged_step + 1, state.global_step
        log_window(
            self.run,
            first,
            state.global_step,
            float(logs["loss"]),
            float(rate),
            tokens=tokens,
            grad_norm=None if grad_norm is None else float(grad_norm),
        )
        return control

    def on_step_end(
        self, args, state, control, model=None, optimizer=None, lr_scheduler=None, **kwargs
    ):
        run = self.run
        if run is None:
            return control
        step = state.global_step
        run.beat("training", step)
        # A save or evaluation that waited for the end of a pause.
        if self._save_after_pause:
            self._save_after_pause = False
            control.should_save = True
        if self._eval_after_pause:
            self._eval_after_pause = False
            control.should_evaluate = True
        return self._at_boundary(
            args, state, control, model, optimizer, lr_scheduler, can_save=True, can_eval=True
        )

    def _at_boundary(
        self, args, state, control, model, optimizer, lr_scheduler, *, can_save, can_eval
    ):
        """Applies what the run's step boundary says. While paused, a save
        or an evaluation is made at once: the boundary returns for it; the
        Trainer saves (`can_save`) or evaluates (`can_eval`) right after
        this hook, and `on_evaluate` or `on_save` holds the pause again; an
        evaluation the Trainer would not make from here runs here
        (`Trainer.evaluate`, or the sample evaluation alone when there is
        no validation set), and the pause holds on. Only when the Trainer
        could not be found does such an evaluation wait for the resume (and
        its answer says so)."""
        run = self.run
        step = state.global_step
        while True:
            acts = ("save",) if can_save else ()
            if can_eval or not self._has_val or self._trainer is not None:
                acts += ("eval",)
            actions = run.boundary(step, act_while_paused=acts)
            if actions.settings:
                self._apply_settings(args, state, optimizer, lr_scheduler, set(actions.settings))
            if actions.stop:
                self.stopped = True
                control.should_training_stop = True
                control.should_save = can_save
                control.should_evaluate = False
                return control
            if actions.save:
                if can_save:
                    control.should_save = True
                else:
                    self._save_after_pause = True
            if actions.eval:
                if not self._has_val:
                    self._evaluate(model, step)
                elif can_eval:
                    control.should_evaluate = True
                elif self._trainer is not None:
                    self._trainer.evaluate()  # its on_evaluate reports it
                else:
                    self._eval_after_pause = True
            # Held again once the Trainer has done them (on_evaluate, on_save).
            self._hold_pause = actions.paused and (control.should_save or control.should_evaluate)
            if not actions.paused or self._hold_pause:
                break
        if control.should_save and not control.should_evaluate:
            run.beat("saving", step)
        return control

    def on_prediction_step(self, args, state, control, **kwargs):
        if self.run is not None:
            self.run.beat("validating", state.global_step)
        return control

    def on_evaluate(
        self, args, state, control, metrics=None, model=None, eval_dataloader=None, **kwargs
    ):
        if self.run is None:
            return control
        loss = (metrics or {}).get("eval_loss")
        batches = 0
        try:
            batches = len(eval_dataloader) if eval_dataloader is not None else 0
        except TypeError:
            pass
        self._evaluate(model, state.global_step, val_loss=loss, val_batches=batches)
        if self._hold_pause and not control.should_save:
            self._hold_pause = False
            self._at_boundary(
                args,
                state,
                control,
                model,
                kwargs.get("optimizer"),
                kwargs.get("lr_scheduler"),
                can_save=True,
                can_eval=False,
            )
        if control.should_save:
            self.run.beat("saving", state.global_step)
        return control

    def on_save(self, args, state, control, **kwargs):
        if self.run is not None:
            path = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
            self.run.checkpoint(state.global_step, path)
            if self._hold_pause:
                self._hold_pause = False
                self._hold_after_save(args, state, control, path, **kwargs)
        return control

    def _hold_after_save(self, args, state, control, path, **kwargs) -> None:
        """Holds the pause again after a save made while paused. A save asked
        for meanwhile is the one just made (nothing has trained since): it
        is announced again."""
        while True:
            self._at_boundary(
                args,
                state,
                control,
                kwargs.get("model"),
                kwargs.get("optimizer"),
                kwargs.get("lr_scheduler"),
                can_save=True,
                can_eval=False,
            )
            if not (self._hold_pause and control.should_save):
                return
            control.should_save = False
            self._hold_pause = False
            self.run.checkpoint(state.global_step, path)

    # ------------------------------------------------------------------
    # Helpers

    def _evaluate(
        self,
        model: Any,
        step: int,
        *,
        val_loss: float | None = None,
        val_batches: int | None = None,
    ) -> None:
        run = self.run
        assert run is not None, "only called after on_train_begin"
        if model is not None and self.tokenizer is not None and self.eval_examples:
            evaluate_samples(
                run,
                model,
                self.tokenizer,
                self.eval_examples,
                step,
                val_loss=val_loss,
                val_batches=val_batches,
                generate_kwargs=self.generate_kwargs,
            )
            return
        run.eval_started(step, 0)
        if val_batches is not None:
            run.val_loss(step, val_loss, val_batches)
        run.eval_finished(step, val_loss=val_loss)

    def _apply_settings(self, args, state, optimizer, lr_scheduler, changed: set[str]) -> None:
        """Puts the live settings named in `changed` where the Trainer reads them."""
        settings = self.run.settings
        if "train.log_steps" in changed and settings["train"].get("log_steps"):
            state.logging_steps = args.logging_steps = int(settings["train"]["log_steps"])
        if "eval.eval_steps" in changed:
            every = int(settings["eval"]["eval_steps"])
            state.eval_steps = every or _NEVER
            args.eval_steps = every or None
        if "checkpoint.save_steps" in changed:
            state.save_steps = int(settings["checkpoint"]["save_steps"])
            if state.save_steps:
                args.save_steps = state.save_steps
        if "checkpoint.save_total_limit" in changed:
            args.save_total_limit = int(settings["checkpoint"]["save_total_limit"]) or None
        rate = settings["train"].get("learning_rate")
        if "train.learning_rate" in changed and rate is not None and optimizer is not None:
            set_learning_rate(optimizer, lr_scheduler, float(rate))
            args.learning_rate = float(rate)


def log_window(
    run: Run,
    first: int,
    last: int,
    loss: float,
    learning_rate: float,
    *,
    tokens: int = 0,
    grad_norm: float | None = None,
) -> None:
    """Hands `run` the Trainer's logging window: steps `first`..`last`, mean loss `loss`.

    `Run.log_step` counts one call as one step (its rate and ETA divide the
    window's time by the calls), so each step of the window gets one, with
    the window's mean: the mean the run computes is then the Trainer's.
    Steps before `last` that the run would write its `step` event at (a
    multiple of `train.log_steps`, when the Trainer logs on another
    schedule) are passed as the step before, so the event comes at `last`
    with the whole window. The Trainer cannot say which step of a window
    went non-finite: when `loss` is not finite, only `last` carries it (one
    `non_finite` step), the others carry 0 so the mean stays `loss`.
    """
    log_steps = int(run.settings["train"]["log_steps"])
    filler = loss if math.isfinite(loss) else 0.0
    for step in range(max(first, 1), last):
        quiet = step if step % log_steps else step - 1
        if quiet % log_steps and quiet != run.max_steps:  # none when log_steps is 1
            run.log_step(quiet, filler, learning_rate)
    run.log_step(last, loss, learning_rate, tokens=tokens, grad_norm=grad_norm)


def _forget_empty_output_dir(run_dir: Any, output_dir: str) -> None:
    """Removes `RUN_DIR/checkpoints` when it is the Trainer's output folder, empty, and no run
    is there yet.

    The Trainer makes its output folder when it is built, before training
    begins; a run directory that holds `checkpoints/` looks like an earlier
    run to trainui, which refuses it. An empty folder holds nothing, and the
    Trainer makes it again at its first save.
    """
    # As trainui.Run decides it: the environment wins.
    run_dir = os.environ.get("TRAINUI_RUN_DIR") or run_dir
    if run_dir is None:
        return
    checkpoints = os.path.join(run_dir, "checkpoints")
    try:
        if (
            os.path.realpath(output_dir) == os.path.realpath(checkpoints)
            and not os.path.islink(checkpoints)
            and os.path.isdir(checkpoints)
            and not os.listdir(checkpoints)
            and not os.path.exists(os.path.join(run_dir, "events.jsonl"))
        ):
            os.rmdir(checkpoints)
    except OSError:
        pass  # the run then refuses the directory and says why


def _flat_keys(settings: Mapping[str, Mapping[str, Any]]) -> list[str]:
    return [f"{section}.{key}" for section, values in settings.items() for key in values]
