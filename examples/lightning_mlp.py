#!/usr/bin/env python3
"""A PyTorch Lightning job that trainui watches and steers.

A small MLP reads the last 8 characters and predicts the next one; it learns
the demo tasks (`67+1=` -> `68`, `rev 498455=` -> `554894`, `sort 40721=` ->
`01247`) on the CPU in seconds, with no download. `TrainuiCallback` makes
the run directory what `trainui train` writes, and its sample hook
(`complete` below) writes the answers of the evaluation's samples:

    trainui run -- python examples/lightning_mlp.py --max-steps 3000
    trainui run -- python examples/lightning_mlp.py --max-steps 3000 --devices 2   # DDP
    trainui ctl runs/job-... eval        # evaluate now; `save`, `pause`, `stop`, `set ...`

Without `trainui run`, name the run directory: `--run-dir runs/pl`.
`--devices 2` runs Lightning's own DDP on the CPU (gloo; on a machine whose
network is only the loopback, set GLOO_SOCKET_IFNAME=lo). The callback's
checkpoints go to RUN_DIR/checkpoints/checkpoint-STEP.ckpt.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

try:
    import lightning.pytorch as pl
except ImportError:
    import pytorch_lightning as pl

try:
    import trainui  # noqa: F401 - the installed package (pip install ./python)
except ImportError:
    # Run from a clone without installing: the package folder beside it.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
from trainui.lightning import SampleRequest, TrainuiCallback

CHARS = "\n 0123456789+-=ersotv"  # "\n" ends an answer (and pads the context)
CONTEXT = 8


def demo_example(rng: random.Random) -> tuple[str, str]:
    """One task with exactly one right answer."""
    task = rng.randrange(4)
    if task == 0:
        a, b = rng.randrange(100), rng.randrange(100)
        return f"{a}+{b}=", str(a + b)
    if task == 1:
        a, b = sorted((rng.randrange(100), rng.randrange(100)), reverse=True)
        return f"{a}-{b}=", str(a - b)
    digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(3, 6)))
    if task == 2:
        return f"rev {digits}=", digits[::-1]
    return f"sort {digits}=", "".join(sorted(digits))


def demo_data(train: int, val: int, seed: int) -> tuple[list[dict], list[dict]]:
    rng = random.Random(seed)
    rows = [dict(zip(("prompt", "completion"), demo_example(rng))) for _ in range(train + val)]
    for i, row in enumerate(rows[train:]):
        row["origin"] = f"val:{i + 1}"
    return rows[:train], rows[train:]


def encode(text: str) -> list[int]:
    return [CHARS.index(c) for c in text]


def windows(rows: list[dict]) -> torch.utils.data.TensorDataset:
    """Every (last CONTEXT characters, next character) of each answer and its end."""
    contexts, targets = [], []
    for row in rows:
        prompt, answer = encode(row["prompt"]), encode(row["completion"] + "\n")
        text = [0] * CONTEXT + prompt + answer
        for i in range(CONTEXT + len(prompt), len(text)):
            contexts.append(text[i - CONTEXT : i])
            targets.append(text[i])
    return torch.utils.data.TensorDataset(torch.tensor(contexts), torch.tensor(targets))


class CharMLP(pl.LightningModule):
    def __init__(self, width: int = 128, learning_rate: float = 3e-3, step_sleep: float = 0.0):
        super().__init__()
        self.save_hyperparameters()
        self.embed = nn.Embedding(len(CHARS), 16)
        self.mlp = nn.Sequential(
            nn.Linear(CONTEXT * 16, width), nn.ReLU(), nn.Linear(width, len(CHARS))
        )

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.embed(context).flatten(1))

    def training_step(self, batch, batch_idx):
        if self.hparams.step_sleep:
            time.sleep(self.hparams.step_sleep)
        context, target = batch
        return F.cross_entropy(self(context), target)

    def validation_step(self, batch, batch_idx):
        context, target = batch
        self.log("val_loss", F.cross_entropy(self(context), target), sync_dist=True)

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.hparams.learning_rate)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: min(1.0, (step + 1) / 50)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def complete(module: CharMLP, request: SampleRequest) -> str:
    """The sample hook: the answer after `request.prompt`, one character at a
    time, until the end of the answer, max_new_tokens, or the deadline."""
    text = ""
    while len(text) < request.max_new_tokens and not request.expired():
        ids = ([0] * CONTEXT + encode(request.prompt + text))[-CONTEXT:]
        logits = module(torch.tensor([ids], device=module.device))[0]
        if len(text) < request.min_new_tokens:
            logits[0] = -float("inf")  # not the end yet
        if request.temperature > 0:
            char = int(torch.multinomial(F.softmax(logits / request.temperature, -1), 1))
        else:
            char = int(logits.argmax())
        if char == 0:
            break
        text += CHARS[char]
        request.progress(text, len(text))
    return text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--run-dir",
        default=os.environ.get("TRAINUI_RUN_DIR"),
        help="run directory (default: $TRAINUI_RUN_DIR, which `trainui run` sets)",
    )
    parser.add_argument("--max-steps", type=int, required=True)
    parser.add_argument("--devices", type=int, default=1, help="processes (2 or more: DDP)")
    parser.add_argument(
        "--eval-steps",
        type=int,
        default=0,
        help="validate every N steps (0: at the end, and on request)",
    )
    parser.add_argument(
        "--save-steps",
        type=int,
        default=0,
        help="checkpoint.save_steps (0: on request, and at a stop)",
    )
    parser.add_argument(
        "--model-checkpoint-steps",
        type=int,
        default=0,
        help="also a Lightning ModelCheckpoint every N steps (0: none)",
    )
    parser.add_argument("--log-steps", type=int, default=10, help="train.log_steps")
    parser.add_argument("--samples", type=int, default=4, help="eval.samples per evaluation")
    parser.add_argument(
        "--eval-timeout",
        type=float,
        default=10.0,
        help="eval.eval_timeout_seconds: the deadline of one sample",
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--accumulate", type=int, default=1, help="accumulate_grad_batches")
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--train-examples", type=int, default=3000)
    parser.add_argument("--val-examples", type=int, default=200)
    parser.add_argument(
        "--step-sleep",
        type=float,
        default=0.0,
        help="seconds each training step waits (a slower job to steer)",
    )
    parser.add_argument("--seed", type=int, default=2025)
    args = parser.parse_args(argv)
    if not args.run_dir:
        parser.error(
            "--run-dir DIR is needed (or run it under `trainui run`, which sets TRAINUI_RUN_DIR)"
        )
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    pl.seed_everything(args.seed, verbose=False)
    train_rows, val_rows = demo_data(args.train_examples, args.val_examples, args.seed)
    train = torch.utils.data.DataLoader(
        windows(train_rows), batch_size=args.batch_size, shuffle=True
    )
    val = torch.utils.data.DataLoader(windows(val_rows), batch_size=256)
    run_dir = Path(args.run_dir)

    callback = TrainuiCallback(
        run_dir,
        generate_sample=complete,
        eval_examples=val_rows,
        batch_tokens=lambda batch: len(batch[1]),  # one character predicted per window
        settings={
            "train": {"log_steps": args.log_steps},
            "eval": {"samples": args.samples, "eval_timeout_seconds": args.eval_timeout},
            "checkpoint": {"save_steps": args.save_steps},
        },
    )
    callbacks: list[pl.Callback] = [callback]
    if args.model_checkpoint_steps:
        # As a job would keep its own checkpoints; the callback reports them too.
        callbacks.append(
            pl.callbacks.ModelCheckpoint(
                dirpath=Path(os.environ.get("TRAINUI_RUN_DIR") or run_dir)
                / "lightning-checkpoints",
                filename="model-{step}",
                every_n_train_steps=args.model_checkpoint_steps,
                save_top_k=-1,
            )
        )
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=args.devices,
        strategy="ddp" if args.devices > 1 else "auto",
        max_steps=args.max_steps,
        accumulate_grad_batches=args.accumulate,
        # Validation by steps: every --eval-steps, else once at the end.
        check_val_every_n_epoch=None,
        val_check_interval=args.eval_steps or args.max_steps * args.accumulate,
        num_sanity_val_steps=0,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=bool(args.model_checkpoint_steps),
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(run_dir),
    )
    module = CharMLP(learning_rate=args.learning_rate, step_sleep=args.step_sleep)
    # After a stall, `trainui run --restart-on-stall` relaunches the job with
    # its newest checkpoint; None on a first start.
    trainer.fit(module, train, val, ckpt_path=callback.resume_checkpoint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
