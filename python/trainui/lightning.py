"""A PyTorch Lightning callback that makes the job a trainui run.

```python
from trainui.lightning import TrainuiCallback

def complete(module, request):            # the sample hook: text after request.prompt
    text = ""
    while len(text) < request.max_new_tokens and not request.expired():
        text += module.next_char(request.prompt + text)
        request.progress(text, len(text))
    return text

callback = TrainuiCallback("runs/pl", generate_sample=complete,
                           eval_examples=[{"prompt": "67+1=", "completion": "68"}])
trainer = lightning.pytorch.Trainer(max_steps=1000, callbacks=[callback])
trainer.fit(module, train_loader, val_loader)
```

The run directory then holds what `trainui train` writes (events, status
file, log lines, per-rank records) and `trainui watch`/`status`/`ctl`
handle the job. Works with ``lightning.pytorch`` and ``pytorch_lightning``
(either or both installed), alone or under Lightning's own DDP or
`torchrun`: give the callback to the Trainer on every rank (Lightning does
when the script builds the Trainer); only rank 0 writes the shared files.

What it records, each optimizer step (`trainer.global_step`): the loss
`training_step` returned (a gradient accumulation window's mean), the
learning rate of the first parameter group the step used and, with
``batch_tokens``, the tokens trained on; and the gradient norm of the step
that closes each logging window (`train.log_steps`), as the Trainer logs
it: the 2-norm of every gradient the optimizer is about to apply, before
clipping (rank 0's gradients, which DDP has already averaged; one shard's
under FSDP). Each validation (not the sanity check) is an evaluation: the
validation loss is the metric ``val_loss_key`` (``self.log("val_loss",
...)`` in ``validation_step``), then ``eval.samples`` of the
``eval_examples`` go through ``generate_sample``. Checkpoints: those the
callback writes, and those Lightning's ``ModelCheckpoint`` callbacks write
(reported at the next step).

Commands (`trainui ctl`, control files, signals) are applied at the end of
an optimizer step, agreed by every rank at the same step (`Run.boundary`):
`stop` saves a final checkpoint and ends training (exit 0), `save` writes
RUN_DIR/checkpoints/checkpoint-STEP.ckpt, `eval_now` runs the validation
loop now (or only the samples when the job has no validation), `pause`
holds every rank at that step until `resume` or `stop` (a `save` or
`eval_now` meanwhile is made at once, at that step, and the pause goes on),
and `set` changes live settings: `train.learning_rate` (every optimizer and
its schedulers' base rates), `train.log_steps`, `eval.eval_steps`,
`checkpoint.save_steps`, `checkpoint.save_total_limit` (of the checkpoints
the callback writes) and the sample settings (`eval.samples`,
`eval.max_new_tokens`, `eval.min_new_tokens`, `eval.temperature`,
`eval.eval_timeout_seconds`). `eval.val_batches` is not used: the
validation runs the Trainer's ``limit_val_batches``. After a stall,
`trainui run --restart-on-stall` relaunches the job: pass
``ckpt_path=callback.resume_checkpoint`` to ``trainer.fit``.

Validation schedule: ``eval.eval_steps`` starts as the Trainer's interval in
optimizer steps when it validates by steps (``check_val_every_n_epoch=None``
and an int ``val_check_interval``), else 0. A value N above 0 validates every
N steps instead of the Trainer's schedule; 0 leaves the Trainer's schedule
by epochs as it is and turns one by steps off.

Samples: ``generate_sample(module, request)`` gets the LightningModule (in
eval mode, without gradients) and a `SampleRequest` (the prompt, the
settings in force, the deadline and the abort flag) and returns the text
generated after the prompt, or an object with ``text`` and, optionally,
``tokens``, ``outcome`` and ``loss`` (as `trainui.generate.Generation`).
The callback cannot interrupt the hook: the hook keeps the deadline by
checking ``request.expired()`` between two tokens. A text returned after the
deadline is ``timed_out``, after an abort (``ctl abort``, a stop)
``aborted``; an exception is the sample's ``error`` and the evaluation goes
on. Tokens are counted in characters unless the result says otherwise.
"""

from __future__ import annotations

import importlib
import math
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from . import launcher
from .alerts import settings_of
from .learning_rate import set_learning_rate
from .protocol import json_safe
from .run import Run

__all__ = ["TrainuiCallback", "SampleRequest"]


def _callback_classes() -> tuple[type, ...]:
    """The `Callback` base of every Lightning installed: a Trainer of either
    package accepts the callback."""
    found = []
    for name in ("lightning.pytorch", "pytorch_lightning"):
        try:
            found.append(importlib.import_module(name).Callback)
        except ImportError:
            pass
    if not found:
        raise ImportError(
            "trainui.lightning needs PyTorch Lightning: pip install 'trainui[lightning]' "
            "(pytorch-lightning), or the lightning package"
        )
    return tuple(found)


_CALLBACK_CLASSES = _callback_classes()


@dataclass
class SampleRequest:
    """One sample generation asked of the ``generate_sample`` hook."""

    prompt: str
    #: The live `eval.*` settings in force when the evaluation began.
    max_new_tokens: int
    min_new_tokens: int
    temperature: float
    timeout_secs: float
    #: When the generation must end, on the `time.monotonic()` clock.
    deadline: float
    #: `Run.abort`: raised by `ctl abort` for this generation and by a stop.
    abort: Any
    _progress: Callable[[str, int], None] = field(repr=False)

    def expired(self) -> bool:
        """Whether the generation must end now: past its deadline, or aborted."""
        return self.abort.is_set() or time.monotonic() >= self.deadline

    def progress(self, text: str, tokens: int) -> None:
        """The text generated so far: a heartbeat, and shown live (at most
        four times a second)."""
        self._progress(text, tokens)


def _number(value: Any) -> float | None:
    """A metric as a float (a tensor read back), or None."""
    if value is None:
        return None
    try:
        return float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError, RuntimeError):
        return None


def _loss_of(outputs: Any) -> Any:
    """The loss `training_step` returned: the tensor itself, or the dict's ``loss``."""
    loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
    if isinstance(loss, torch.Tensor):
        return loss.detach() if loss.requires_grad else loss
    if loss is None or isinstance(loss, (int, float)):
        return loss
    if isinstance(outputs, Mapping):  # a mapping that is no dict
        return _loss_of(dict(outputs))
    return None


def _total_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """The 2-norm of all `grads` together, as a tensor (not read back).

    One fused call over the list where torch can (`get_total_norm` takes a
    slower path per tensor on the CPU); else tensor by tensor, a sparse
    gradient (``nn.Embedding(sparse=True)``) by its summed values, the norms
    gathered on the first one's device."""
    foreach_norm = getattr(torch, "_foreach_norm", None)
    if foreach_norm is not None:
        try:
            return torch.linalg.vector_norm(torch.stack(foreach_norm(grads)))
        except (RuntimeError, TypeError, NotImplementedError):
            pass
    norms = [
        torch.linalg.vector_norm(g.coalesce().values() if g.is_sparse else g).float() for g in grads
    ]
    device = norms[0].device
    return torch.linalg.vector_norm(torch.stack([n.to(device) for n in norms]))


def _peak_learning_rate(trainer: Any) -> float | None:
    """The first optimizer's learning rate before its schedule: the base rate
    of a scheduler of it, else the rate of its first group."""
    optimizers = list(getattr(trainer, "optimizers", []) or [])
    if not optimizers or not optimizers[0].param_groups:
        return None
    first = optimizers[0]
    for config in getattr(trainer, "lr_scheduler_configs", []) or []:
        scheduler = getattr(config, "scheduler", None)
        bases = getattr(scheduler, "base_lrs", None)
        if getattr(scheduler, "optimizer", None) is first and bases:
            rate = _number(bases[0])
            break
    else:
        group = first.param_groups[0]
        rate = _number(group.get("initial_lr", group["lr"]))
    return rate if rate is not None and math.isfinite(rate) and rate > 0 else None


def _merge(base: dict[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    out = {section: dict(values) for section, values in base.items()}
    for section, values in (overrides or {}).items():
        out.setdefault(section, {}).update(values)
    return out


class TrainuiCallback(*_CALLBACK_CLASSES):
    """Writes the run directory of a Lightning job and obeys its commands (see the module doc).

    ``run_dir``: the run directory (``$TRAINUI_RUN_DIR`` wins, as for
    `trainui.Run`). ``generate_sample`` and ``eval_examples`` (dicts
    ``{"prompt", "completion", "origin"?}``) enable the samples of each
    evaluation. ``settings``: nested live settings that win over what the
    Trainer implies (``{"eval": {"samples": 4, "eval_timeout_seconds": 30}}``).
    ``val_loss_key``: the logged metric that is the validation loss.
    ``batch_tokens(batch)``: the tokens in one rank's training batch (for
    tokens/s: rank 0's count times the number of ranks).
    ``grad_norm``: compute the gradient norm of every step (one norm of the
    gradients, on rank 0 only). ``checkpoint_dir``: where `save` and `stop`
    write (default RUN_DIR/checkpoints). ``alerts``: ``{"command": ...,
    "timeout_seconds": ...}``, a shell command run when the run ends, fails
    or stalls (see `trainui.Run`).
    """

    def __init__(
        self,
        run_dir: str | os.PathLike | None = None,
        *,
        generate_sample: Callable[[Any, SampleRequest], Any] | None = None,
        eval_examples: Sequence[Mapping[str, Any]] | None = None,
        settings: Mapping[str, Any] | None = None,
        val_loss_key: str = "val_loss",
        batch_tokens: Callable[[Any], int] | None = None,
        grad_norm: bool = True,
        checkpoint_dir: str | os.PathLike | None = None,
        on_stall: str = "warn",
        run_name: str | None = None,
        config: Mapping[str, Any] | None = None,
        alerts: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        settings_of(alerts)  # a mistake is told here, not when training begins
        self.alerts = None if alerts is None else dict(alerts)
        self.run_dir = run_dir
        self.generate_sample = generate_sample
        self.eval_examples = list(eval_examples or [])
        self.settings = settings
        self.val_loss_key = val_loss_key
        self.batch_tokens = batch_tokens
        self.grad_norm = grad_norm
        self.checkpoint_dir = checkpoint_dir
        self.on_stall = on_stall
        self.run_name = run_name
        self.config = config
        #: The trainui run, from `on_train_start` on.
        self.run: Run | None = None
        #: A stop command ended training (the same on every rank).
        self.stopped = False
        self._reset_step()
        self._logged_step = 0
        self._first_optimizer: Any = None
        self._is_main = False
        self._world_size = 1
        self._automatic = True
        self._accumulate = 1
        self._warned_no_loss = False
        # The validation schedule (see the module doc).
        self._eval_pending = False
        #: The validation loop about to run was asked for while paused: the
        #: pause holds again at its end.
        self._hold_pause = False
        #: An evaluation asked for during a validation: after the next batch.
        self._eval_next = False
        self._step_schedule = False
        self._patched_loop: Any = None
        self._patched_own: Any = None
        self._in_eval = False
        self._val_batches = 0
        self._fitting = False
        # Checkpoints: the Trainer's ModelCheckpoint callbacks and what each
        # saved last, and the callback's own (on rank 0, for save_total_limit).
        self._model_checkpoints: list[Any] = []
        self._seen_saves: dict[int, tuple[Any, Any]] = {}
        self._saved: list[Path] = []
        self._example_cursor = 0

    @property
    def resume_checkpoint(self) -> str | None:
        """The checkpoint to resume from when `trainui run --restart-on-stall`
        relaunched the job (None on a first start): pass it on,
        ``trainer.fit(module, ..., ckpt_path=callback.resume_checkpoint)``."""
        return launcher.resume_checkpoint()

    def _reset_step(self) -> None:
        """Starts the readings of the next optimizer step."""
        self._loss_sum: Any = None
        self._loss_batches = 0
        self._tokens = 0
        self._norms: list[Any] = []
        #: The first optimizer's learning rate in this step (None: not seen).
        self._learning_rate: Any = None

    # ------------------------------------------------------------------
    # Beginning and end

    def on_train_start(self, trainer, pl_module) -> None:
        self._automatic = bool(getattr(pl_module, "automatic_optimization", True))
        self._accumulate = max(int(getattr(trainer, "accumulate_grad_batches", 1) or 1), 1)
        optimizers = list(getattr(trainer, "optimizers", []) or [])
        self._first_optimizer = optimizers[0] if optimizers else None
        self._step_schedule = (
            getattr(trainer, "check_val_every_n_epoch", 0) is None
            and getattr(trainer, "_val_check_time_interval", None) is None
            and isinstance(getattr(trainer, "val_check_batch", None), int)
        )
        eval_steps = 0
        if self._step_schedule and trainer.enable_validation:
            eval_steps = max(int(trainer.val_check_batch) // self._accumulate, 1)
        implied: dict[str, dict[str, Any]] = {
            "train": {"log_steps": max(int(getattr(trainer, "log_every_n_steps", 0) or 0), 1)},
            "eval": {"eval_steps": eval_steps},
            "checkpoint": {"save_steps": 0, "save_total_limit": 0},
        }
        peak = _peak_learning_rate(trainer)
        if peak is not None:
            implied["train"]["learning_rate"] = peak
        max_steps = int(getattr(trainer, "max_steps", -1) or -1)
        if max_steps < 0:
            estimated = getattr(trainer, "estimated_stepping_batches", 0)
            max_steps = int(estimated) if math.isfinite(estimated) else 0
        config = self.config
        if config is None:
            config = {"lightning": self._trainer_config(trainer, pl_module)}
        self.run = run = Run(
            self.run_dir,
            max_steps=max_steps,
            run_name=self.run_name,
            config=json_safe(config),
            settings=_merge(implied, self.settings),
            framework="lightning",
            on_stall=self.on_stall,
            alerts=self.alerts,
        )
        self._is_main = run.is_main
        self._world_size = run.world_size
        user_keys = {
            f"{section}.{key}"
            for section, values in (self.settings or {}).items()
            for key in values
        }
        self._apply_settings(trainer, user_keys)
        self._watch_validation(trainer)
        self._model_checkpoints = list(getattr(trainer, "checkpoint_callbacks", []) or [])
        self._seen_saves = {id(cb): self._last_save(cb) for cb in self._model_checkpoints}
        self._logged_step = int(trainer.global_step)
        self._fitting = True
        run.start(
            device=str(getattr(pl_module, "device", "cpu")),
            parameters=sum(p.numel() for p in pl_module.parameters()),
            train_examples=self._train_examples(trainer),
            val_examples=len(self.eval_examples),
            start_step=int(trainer.global_step),
        )

    def on_train_end(self, trainer, pl_module) -> None:
        self._fitting = False
        self._unwatch_validation()
        run = self.run
        if run is None or run.finished:
            return
        self._report_lightning_checkpoints(trainer)
        run.beat(step=int(trainer.global_step))
        run.finish("stopped" if self.stopped else "finished")

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._fitting = False
        self._unwatch_validation()
        if self.run is not None and not self.run.finished:
            self.run.fail(f"training ended with {type(exception).__name__}: {exception}")

    def teardown(self, trainer, pl_module, stage: str) -> None:
        # Fitting ended without on_train_end nor on_exception (nothing else
        # ends a run that began): say where it stopped.
        if self.run is not None and not self.run.finished and stage == "fit":
            self._unwatch_validation()
            self.run.finish()

    # ------------------------------------------------------------------
    # Steps

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        run = self.run
        if run is None:
            return
        if self._first_optimizer is None or optimizer is self._first_optimizer:
            self._learning_rate = optimizer.param_groups[0]["lr"]
        if not (self.grad_norm and self._is_main):
            return
        # The norm of the step that writes a `step` event, as the Trainer
        # logs the norm of its logging step: one norm a window, not a step.
        step = self._logged_step + 1
        if step % run.settings["train"]["log_steps"] and step != run.max_steps:
            return
        grads = [
            p.grad
            for group in optimizer.param_groups
            for p in group["params"]
            if p.grad is not None
        ]
        if grads:
            self._norms.append(_total_norm(grads))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        run = self.run
        if run is None:
            return
        if self._is_main:
            loss = _loss_of(outputs)
            if loss is not None:
                self._loss_sum = loss if self._loss_sum is None else self._loss_sum + loss
                self._loss_batches += 1
            if self.batch_tokens is not None:
                # Every rank trains on a batch of the same size (DistributedSampler).
                self._tokens += int(self.batch_tokens(batch)) * self._world_size
        step = int(trainer.global_step)
        if step == self._logged_step:  # accumulating gradients (or a skipped batch)
            run.beat()
            return
        self._logged_step = step
        self._report_lightning_checkpoints(trainer)
        self._log_step(trainer, step)
        if self._eval_pending:  # asked for at the last step, and no validation ran
            self._eval_pending = False
            self._evaluate_samples_only(pl_module, step)
        if self._eval_next:  # asked for during a validation: the loop runs after this batch
            self._eval_next = False
            self._eval_pending = True
        self._at_boundary(trainer, pl_module, step, in_validation=False)

    def _at_boundary(self, trainer, pl_module, step: int, *, in_validation: bool) -> None:
        """Applies what the run's step boundary says, on every rank at `step`.

        While paused, a save is made at once and the pause holds on; so is an
        evaluation of the samples alone. An evaluation with the validation
        loop ends this hook with the pause still held: Lightning validates
        right after the batch, and `on_validation_end` holds the pause again
        (`in_validation`: from there, where a second validation cannot run,
        an evaluation waits for the resume, and its answer says so)."""
        run = self.run
        # From inside a validation, a second one cannot run now.
        acts = ("save",) if in_validation else ("save", "eval")
        while True:
            actions = run.boundary(step, act_while_paused=acts)
            if actions.settings:
                self._apply_settings(trainer, set(actions.settings))
            if actions.save:
                self._save(trainer, step)
            if actions.stop:
                self.stopped = True
                self._eval_pending = False
                trainer.should_stop = True
                return
            if actions.eval:
                # (Asked only now: Lightning's answer costs microseconds.)
                with_validation = in_validation or (
                    self._patched_loop is not None and trainer.enable_validation
                )
                if with_validation and not in_validation:
                    self._eval_pending = True  # the validation loop runs after this batch
                    self._hold_pause = actions.paused
                    return
                if with_validation:
                    self._eval_next = True
                else:
                    self._evaluate_samples_only(pl_module, step)
            if not actions.paused:
                return

    def _log_step(self, trainer, step: int) -> None:
        run = self.run
        assert run is not None, "only called after on_train_start"
        rate = self._learning_rate
        if rate is None and self._first_optimizer is not None:
            rate = self._first_optimizer.param_groups[0]["lr"]  # no optimizer hook ran
        loss, batches, tokens, norms = self._loss_sum, self._loss_batches, self._tokens, self._norms
        self._reset_step()
        if rate is None:
            rate = 0.0
        if not self._is_main:
            run.log_step(step, 0.0, rate)  # only rank 0's values are read
            return
        if loss is not None:
            if self._automatic and self._accumulate > 1:
                # Automatic optimization divides each batch's loss by the
                # accumulation: their sum is the mean of a full window.
                loss = loss * (self._accumulate / batches)
            elif batches > 1:
                loss = loss / batches
        else:
            loss = _number(trainer.callback_metrics.get("train_loss"))
        norm = None
        if len(norms) == 1:
            norm = norms[0]
        elif norms:
            norm = torch.linalg.vector_norm(torch.stack(norms))
        if loss is None:
            if not self._warned_no_loss:
                self._warned_no_loss = True
                run.warning(
                    "no training loss to show: training_step returns none (return the loss, "
                    "or a dict with 'loss', or self.log('train_loss', ...))"
                )
            run.beat("training", step)
            return
        run.log_step(step, loss, rate, tokens=tokens, grad_norm=norm)

    # ------------------------------------------------------------------
    # Evaluations

    def on_validation_start(self, trainer, pl_module) -> None:
        if self.run is None or not self._fitting or trainer.sanity_checking:
            return
        self._eval_pending = False
        self._in_eval = True
        self._val_batches = 0
        self.run.eval_started(int(trainer.global_step), self._sample_count())

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        if self._in_eval:
            self._val_batches += 1
            self.run.beat("validating", int(trainer.global_step))

    def on_validation_end(self, trainer, pl_module) -> None:
        if not self._in_eval:
            return
        self._in_eval = False
        run = self.run
        step = int(trainer.global_step)
        loss = _number(trainer.callback_metrics.get(self.val_loss_key))
        run.val_loss(step, loss, self._val_batches)
        self._samples(pl_module, step)
        run.eval_finished(step, val_loss=loss)
        if self._hold_pause:  # an evaluation made while paused: the pause goes on
            self._hold_pause = False
            self._at_boundary(trainer, pl_module, step, in_validation=True)

    def _evaluate_samples_only(self, pl_module, step: int) -> None:
        """An evaluation without the validation loop: the samples alone."""
        run = self.run
        run.eval_started(step, self._sample_count())
        self._samples(pl_module, step)
        run.eval_finished(step)

    def _sample_count(self) -> int:
        if self.generate_sample is None or not self.eval_examples:
            return 0
        return min(int(self.run.settings["eval"]["samples"]), len(self.eval_examples))

    def _samples(self, module: Any, step: int) -> None:
        """The next `eval.samples` examples through the hook, each reported
        as a `sample` (every rank generates the same examples; the run
        reports rank 0's and each rank records its own)."""
        run = self.run
        count = self._sample_count()
        if not count:
            return
        settings = run.settings["eval"]
        timeout = float(settings["eval_timeout_seconds"])
        total = len(self.eval_examples)
        indices = [(self._example_cursor + i) % total for i in range(count)]
        self._example_cursor = (self._example_cursor + count) % total
        was_training = module.training
        module.eval()
        try:
            with torch.no_grad():
                for n, index in enumerate(indices, start=1):
                    if run.stop_requested:
                        break
                    run.abort.clear()  # a spent abort; a pending stop keeps it raised
                    if run.abort.is_set():
                        break
                    self._sample(module, step, n, len(indices), index, timeout, settings)
        finally:
            module.train(was_training)

    def _sample(
        self,
        module: Any,
        step: int,
        n: int,
        of: int,
        index: int,
        timeout: float,
        settings: Mapping[str, Any],
    ) -> None:
        run = self.run
        example = self.eval_examples[index]
        prompt = str(example["prompt"])
        golden = str(example["completion"])
        common = dict(
            step=step,
            sample=n,
            of=of,
            example=index,
            origin=str(example.get("origin") or f"eval_examples[{index}]"),
            prompt=prompt,
            golden=golden,
            golden_tokens=len(golden),
        )
        run.generation_started(**common, timeout_secs=timeout)
        began = time.monotonic()

        def progress(text: str, tokens: int) -> None:
            run.generation_progress(
                step=step,
                sample=n,
                text=str(text),
                tokens=int(tokens),
                elapsed_secs=time.monotonic() - began,
            )

        request = SampleRequest(
            prompt=prompt,
            max_new_tokens=int(settings["max_new_tokens"]),
            min_new_tokens=int(settings["min_new_tokens"]),
            temperature=float(settings["temperature"]),
            timeout_secs=timeout,
            deadline=began + timeout,
            abort=run.abort,
            _progress=progress,
        )
        loss = None
        try:
            result = self.generate_sample(module, request)
        except Exception as err:  # noqa: BLE001 - one sample's error; the evaluation goes on
            text, tokens = "", 0
            outcome: Any = ("error", f"{type(err).__name__}: {err}")
        else:
            ended = time.monotonic()
            if isinstance(result, str):
                text, tokens, outcome = result, len(result), None
            else:
                text = str(getattr(result, "text", ""))
                tokens = getattr(result, "tokens", None)
                tokens = len(text) if tokens is None else int(tokens)
                outcome = getattr(result, "run_outcome", None) or getattr(result, "outcome", None)
                loss = _number(getattr(result, "loss", None))
            if outcome is None:
                if run.abort.is_set():
                    outcome = "aborted"
                elif ended > request.deadline:
                    outcome = "timed_out"
                else:
                    outcome = "completed"
        run.sample(
            **common,
            output=text,
            output_tokens=tokens,
            outcome=outcome,
            loss=loss,
            elapsed_secs=time.monotonic() - began,
            timeout_secs=timeout,
        )

    def _watch_validation(self, trainer) -> None:
        """Puts the callback in front of the epoch loop's question "validate
        after this batch?": yes after `eval_now` or `eval.eval_steps`, no
        after a stop command, and the Trainer's own answer otherwise (unless
        `eval.eval_steps` replaces its schedule)."""
        loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
        original = getattr(loop, "_should_check_val_fx", None)
        if not callable(original):
            return  # a Lightning without it: evaluations run the samples only
        own = loop.__dict__.get("_should_check_val_fx")

        def should_validate(*args: Any, **kwargs: Any) -> bool:
            if self.stopped:
                return False
            if self._eval_pending:
                return True
            run = self.run
            if run is not None and (run.settings["eval"]["eval_steps"] or self._step_schedule):
                return False  # `eval.eval_steps` decides, at the step boundary
            return original(*args, **kwargs)

        loop._should_check_val_fx = should_validate
        self._patched_loop, self._patched_own = loop, own

    def _unwatch_validation(self) -> None:
        loop, self._patched_loop = self._patched_loop, None
        if loop is None:
            return
        if self._patched_own is not None:
            loop._should_check_val_fx = self._patched_own
        else:
            loop.__dict__.pop("_should_check_val_fx", None)
        self._patched_own = None

    # ------------------------------------------------------------------
    # Checkpoints

    def _save(self, trainer, step: int) -> None:
        """Writes a checkpoint on every rank (Lightning's save is collective)."""
        run = self.run
        folder = Path(self.checkpoint_dir) if self.checkpoint_dir is not None else None
        path = (folder or run.root / "checkpoints") / f"checkpoint-{step}.ckpt"
        run.beat("saving", step)
        trainer.save_checkpoint(str(path), weights_only=False)  # all of it: to resume from
        run.checkpoint(step, path)
        if not self._is_main:
            return
        if path in self._saved:
            self._saved.remove(path)
        self._saved.append(path)
        limit = int(run.settings["checkpoint"]["save_total_limit"])
        while limit and len(self._saved) > limit:
            old = self._saved.pop(0)
            try:
                if old.is_dir() and not old.is_symlink():
                    shutil.rmtree(old)
                else:
                    old.unlink()
            except FileNotFoundError:
                pass
            except OSError as err:
                run.warning(f"could not remove the old checkpoint {old}: {err}")

    @staticmethod
    def _last_save(callback: Any) -> tuple[Any, Any]:
        """What a ModelCheckpoint says it saved last: (path, step)."""
        path = getattr(callback, "_last_checkpoint_saved", None)
        if path is None:
            path = getattr(callback, "last_model_path", "")
        return path, getattr(callback, "_last_global_step_saved", None)

    def _report_lightning_checkpoints(self, trainer) -> None:
        """Reports what Lightning's ModelCheckpoint callbacks saved since the
        last look (they run after this callback, so a save is seen at the
        next step, with its own step)."""
        for callback in self._model_checkpoints:
            last = self._last_save(callback)
            if last == self._seen_saves.get(id(callback)):
                continue
            self._seen_saves[id(callback)] = last
            path, step = last
            if path:
                self.run.checkpoint(int(trainer.global_step if step is None else step), path)

    # ------------------------------------------------------------------
    # Settings and description

    def _apply_settings(self, trainer, changed: set[str]) -> None:
        """Puts the live settings named in `changed` where Lightning reads them
        (the others are read where the callback uses them)."""
        rate = self.run.settings["train"].get("learning_rate")
        if "train.learning_rate" in changed and rate is not None:
            configs = list(getattr(trainer, "lr_scheduler_configs", []) or [])
            for optimizer in list(getattr(trainer, "optimizers", []) or []):
                schedulers = [
                    c.scheduler
                    for c in configs
                    if getattr(c.scheduler, "optimizer", None) is optimizer
                ]
                set_learning_rate(optimizer, schedulers, float(rate))

    @staticmethod
    def _train_examples(trainer) -> int:
        loader = getattr(trainer, "train_dataloader", None)
        try:
            return len(loader.dataset)
        except (AttributeError, TypeError):
            return 0

    @staticmethod
    def _trainer_config(trainer, pl_module) -> dict[str, Any]:
        """What the config.json of the run records of the Trainer and the module."""
        strategy = getattr(trainer, "strategy", None)
        trainer_fields = {
            name: getattr(trainer, name, None)
            for name in (
                "max_steps",
                "max_epochs",
                "accumulate_grad_batches",
                "val_check_interval",
                "check_val_every_n_epoch",
                "log_every_n_steps",
                "gradient_clip_val",
                "precision",
                "world_size",
            )
        }
        trainer_fields["strategy"] = type(strategy).__name__ if strategy is not None else None
        hparams = getattr(pl_module, "hparams", None)
        return {
            "trainer": trainer_fields,
            "module": type(pl_module).__name__,
            "hparams": dict(hparams) if isinstance(hparams, Mapping) else {},
        }
