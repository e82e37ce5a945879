"""What `trainui.lightning.TrainuiCallback` costs a PyTorch Lightning job.

    python python/bench/lightning_overhead.py [--steps 2000] [--log-steps 1]

Trains the small MLP of examples/lightning_mlp.py on the CPU (a step of a
few milliseconds: Lightning's own loop is most of it) for the same number
of steps without and with the callback, alternately, in one process, and
measures on the training thread the time spent inside the callback's hooks
(`on_before_optimizer_step`, `on_train_batch_end`: the gradient norm, the
run handle's `log_step` and `boundary`) against the whole step time. The
share is what trainui takes from training; the target is at most 1 %. On a
busy machine the difference of the two step times is noise; the time
inside the hooks is not. A run with an empty callback shows what
Lightning itself spends calling a callback's hooks (a job with its default
callbacks, progress bar and ModelCheckpoint, pays it already). The two
hooks called back to back with a stand-in Trainer (no Lightning loop
between them) give the callback's own cost without the machine's noise.
``--batch-size`` and ``--width`` make the step longer.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "python"))

from trainui.lightning import TrainuiCallback  # noqa: E402


def example_module():
    spec = importlib.util.spec_from_file_location(
        "lightning_mlp", REPO / "examples" / "lightning_mlp.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TimedCallback(TrainuiCallback):
    """The callback, with the time of its per-step hooks added up."""

    spent = 0.0
    spent_cpu = 0.0

    def on_before_optimizer_step(self, *args, **kwargs):
        started, started_cpu = time.perf_counter(), time.thread_time()
        try:
            return super().on_before_optimizer_step(*args, **kwargs)
        finally:
            self.spent += time.perf_counter() - started
            self.spent_cpu += time.thread_time() - started_cpu

    def on_train_batch_end(self, *args, **kwargs):
        started, started_cpu = time.perf_counter(), time.thread_time()
        try:
            return super().on_train_batch_end(*args, **kwargs)
        finally:
            self.spent += time.perf_counter() - started
            self.spent_cpu += time.thread_time() - started_cpu


def train(
    example, steps: int, log_steps: int, run_dir: Path | None, empty: bool = False, shape=(64, 128)
):
    """Seconds per step and CPU seconds of the training thread per step, and
    both inside the callback (None without it)."""
    pl = example.pl
    pl.seed_everything(2025, verbose=False)
    train_rows, _ = example.demo_data(3000, 10, 2025)
    batch_size, width = shape
    data = torch.utils.data.DataLoader(
        example.windows(train_rows), batch_size=batch_size, shuffle=True
    )
    callback = None
    if run_dir is not None:
        callback = TimedCallback(
            run_dir,
            settings={"train": {"log_steps": log_steps}},
            batch_tokens=lambda batch: len(batch[1]),
        )
    callbacks = [callback] if callback else [pl.Callback()] if empty else []
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=steps,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=tempfile.mkdtemp(prefix="trainui-bench-"),
    )
    module = example.CharMLP(width=width)
    started, started_cpu = time.perf_counter(), time.thread_time()
    trainer.fit(module, data)
    per_step = (time.perf_counter() - started) / steps
    cpu_per_step = (time.thread_time() - started_cpu) / steps
    if callback is None:
        return per_step, cpu_per_step, None, None
    return per_step, cpu_per_step, callback.spent / steps, callback.spent_cpu / steps


def back_to_back(steps: int, log_steps: int, run_dir: Path) -> float:
    """Microseconds a step of the callback's two per-step hooks take when
    nothing else runs between them (a stand-in Trainer; a real model's
    gradients for the norm)."""
    model = torch.nn.Sequential(torch.nn.Linear(128, 128), torch.nn.Linear(128, 21))
    model(torch.randn(64, 128)).sum().backward()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    trainer = SimpleNamespace(
        accumulate_grad_batches=1,
        optimizers=[optimizer],
        lr_scheduler_configs=[],
        check_val_every_n_epoch=1,
        val_check_batch=None,
        enable_validation=False,
        log_every_n_steps=log_steps,
        max_steps=steps,
        global_step=0,
        checkpoint_callbacks=[],
        should_stop=False,
    )
    callback = TrainuiCallback(run_dir, batch_tokens=lambda batch: 64)
    callback.on_train_start(trainer, model)
    outputs = {"loss": torch.tensor(1.5)}
    started = time.perf_counter()
    for step in range(1, steps + 1):
        callback.on_before_optimizer_step(trainer, model, optimizer)
        trainer.global_step = step
        callback.on_train_batch_end(trainer, model, outputs, None, step - 1)
    spent = time.perf_counter() - started
    callback.on_train_end(trainer, model)
    return spent / steps * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--log-steps", type=int, default=1, help="train.log_steps (1: worst case)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--width", type=int, default=128, help="the MLP's hidden width")
    args = parser.parse_args()
    torch.set_num_threads(1)
    # As under `trainui run`: the job writes its events and prints no lines.
    os.environ["TRAINUI_PRINT_LINES"] = "0"
    example = example_module()
    root = Path(tempfile.mkdtemp(prefix="trainui-bench-run-"))
    plain, empty, timed = [], [], []
    shape = (args.batch_size, args.width)
    train(example, 200, args.log_steps, None, shape=shape)  # warm up
    for repeat in range(args.repeats):
        plain.append(train(example, args.steps, args.log_steps, None, shape=shape))
        empty.append(train(example, args.steps, args.log_steps, None, empty=True, shape=shape))
        timed.append(
            train(example, args.steps, args.log_steps, root / f"run-{repeat}", shape=shape)
        )
    alone = statistics.median(
        back_to_back(args.steps, args.log_steps, root / f"alone-{i}") for i in range(args.repeats)
    )

    def median(rows, column: int) -> float:
        return statistics.median(row[column] for row in rows)

    print(
        f"Lightning {example.pl.__version__}, MLP of examples/lightning_mlp.py (width "
        f"{args.width}), batch {args.batch_size}, "
        f"{args.steps} steps x {args.repeats}, train.log_steps {args.log_steps}, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    for name, column in (("wall", 0), ("CPU of the training thread", 1)):
        without, with_it = median(plain, column) * 1e3, median(timed, column) * 1e3
        with_empty = median(empty, column) * 1e3
        inside = median(timed, column + 2) * 1e6
        print(f"  {name}:")
        print(f"    step without the callback  {without:8.3f} ms")
        print(
            f"    step with an empty one     {with_empty:8.3f} ms  "
            f"(ratio {with_empty / without:.3f}: Lightning's calls of a callback's hooks)"
        )
        print(
            f"    step with the callback     {with_it:8.3f} ms  (ratio {with_it / without:.3f}; "
            f"{with_it / with_empty:.3f} of the empty one)"
        )
        print(
            f"    inside the callback        {inside:8.1f} us a step "
            f"= {100 * inside / 1e3 / with_it:.2f} % of the step (target <= 1 %)"
        )
    print(f"  the two hooks back to back   {alone:8.1f} us a step (nothing between them)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
