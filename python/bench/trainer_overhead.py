"""What `TrainuiCallback` costs a `transformers.Trainer` job that logs every step.

    python python/bench/trainer_overhead.py [--steps 300]
    torchrun --nproc-per-node 2 --master-addr 127.0.0.1 --master-port 29534 \\
        python/bench/trainer_overhead.py --steps 200      (gloo, CPU; GLOO_SOCKET_IFNAME=lo)

Trains the tiny GPT-2 of examples/hf_trainer.py with `logging_steps=1`
(the worst case: a step event every step) and no scheduled evaluation or
checkpoint, and measures on the training thread the time spent inside the
callback's hooks (`on_log`, `on_step_end`, `on_step_begin`, ...: the run
handle's `log_step` and `boundary`, under torchrun the agreement's
all_reduce) against the whole step time. The share is what trainui takes
from training; the target is at most 1 %. A run without the callback gives
the step time for comparison (on a busy machine that difference is noise;
the time inside the hooks is not). Rank 0 prints.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "python"))

from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments  # noqa: E402
from transformers.trainer_callback import PrinterCallback  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from trainui.hf import TrainuiCallback  # noqa: E402


def example_module():
    spec = importlib.util.spec_from_file_location("hf_trainer", REPO / "examples" / "hf_trainer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TimedCallback(TrainuiCallback):
    """The callback, with the time of every hook added up."""

    HOOKS = ("on_train_begin", "on_step_begin", "on_step_end", "on_log", "on_substep_end")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.spent = 0.0
        for name in self.HOOKS:
            hook = getattr(super(), name, None)
            if hook is not None:
                setattr(self, name, self._timed(hook, count=name != "on_train_begin"))

    def _timed(self, hook, count):
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return hook(*args, **kwargs)
            finally:
                if count:
                    self.spent += time.perf_counter() - started

        return timed


def train(example, steps: int, run_dir: Path | None) -> tuple[float, float | None]:
    """Seconds per step, and seconds per step inside the callback (None without it)."""
    train_rows, val_rows = example.demo_data(4000, 64, 2025)
    tokenizer = example.char_tokenizer()
    torch.manual_seed(2025)
    model = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=len(tokenizer),
            n_positions=4096,
            n_layer=2,
            n_embd=64,
            n_head=2,
            bos_token_id=tokenizer.eos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    out = Path(tempfile.mkdtemp(prefix="trainui-bench-")) / "checkpoints"
    args = TrainingArguments(
        output_dir=str(run_dir / "checkpoints" if run_dir else out),
        max_steps=steps,
        per_device_train_batch_size=32,
        learning_rate=2e-3,
        logging_strategy="steps",
        logging_steps=1,
        eval_strategy="no",
        save_strategy="no",
        use_cpu=True,
        ddp_backend="gloo" if world_size > 1 else None,
        ddp_find_unused_parameters=False,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        seed=2025,
        log_level="warning",
        include_num_input_tokens_seen="non_padding",
    )
    callbacks = []
    callback = None
    if run_dir is not None:
        callback = TimedCallback(
            run_dir,
            tokenizer=tokenizer,
            eval_examples=val_rows,
            settings={"eval": {"eval_steps": 0}, "checkpoint": {"save_steps": 0}},
        )
        callbacks.append(callback)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=example.PromptCompletion(train_rows, tokenizer),
        data_collator=example.collate(tokenizer.pad_token_id),
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)
    started = time.perf_counter()
    trainer.train()
    per_step = (time.perf_counter() - started) / steps
    return per_step, (callback.spent / steps if callback else None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    hf_logging.disable_progress_bar()
    torch.set_num_threads(1)
    example = example_module()
    rank = int(os.environ.get("RANK", "0"))
    plain, _ = train(example, args.steps, None)
    root = Path(tempfile.mkdtemp(prefix="trainui-bench-run-"))
    with_trainui, inside = train(example, args.steps, root / "run")
    if rank == 0:
        world = os.environ.get("WORLD_SIZE", "1")
        print(
            f"transformers.Trainer, tiny GPT-2, logging every step, {args.steps} steps, "
            f"world size {world}"
        )
        print(f"  step without the callback  {plain * 1e3:8.2f} ms")
        print(f"  step with the callback     {with_trainui * 1e3:8.2f} ms")
        print(
            f"  inside the callback        {inside * 1e6:8.1f} us a step "
            f"= {100 * inside / with_trainui:.2f} % of the step (target <= 1 %)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
