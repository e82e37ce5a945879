#!/usr/bin/env python3
"""An Accelerate loop that trainui watches and steers: a small MLP learns
a noisy linear map on the CPU.

    trainui run -- python examples/accelerate_loop.py --max-steps 1000
    trainui run -- accelerate launch --cpu --num_processes 2 \\
        examples/accelerate_loop.py --max-steps 1000

`TrainuiTracker` turns `accelerator.log()` into the run's steps and
validation losses, and `tracker.boundary(step)` into the commands every
rank applies at the same step.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from accelerate import Accelerator
from torch import nn

try:
    import trainui  # noqa: F401 - the installed package (pip install ./python)
except ImportError:
    # Run from a clone without installing: the package folder beside it.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
from trainui.accelerate import TrainuiTracker  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", help="run directory (default: $TRAINUI_RUN_DIR)")
    parser.add_argument("--max-steps", type=int, default=1000)
    args = parser.parse_args()
    torch.manual_seed(0)
    x = torch.randn(4096, 8)
    y = x @ torch.randn(8, 1) + 0.1 * torch.randn(4096, 1)
    data = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x[:3584], y[:3584]), batch_size=64, shuffle=True
    )
    val_x, val_y = x[3584:], y[3584:]

    tracker = TrainuiTracker(
        args.run_dir, max_steps=args.max_steps, settings={"eval": {"eval_steps": 100}}
    )
    accelerator = Accelerator(cpu=True, log_with=tracker)
    accelerator.init_trackers("mlp", config={"lr": 1e-2, "batch_size": 64})
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model, optimizer, data = accelerator.prepare(model, optimizer, data)
    step = 0
    while step < args.max_steps:
        for batch_x, batch_y in data:
            step += 1
            loss = nn.functional.mse_loss(model(batch_x), batch_y)
            accelerator.backward(loss)
            norm = accelerator.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
            lr = optimizer.param_groups[0]["lr"]
            accelerator.log({"loss": loss.detach(), "lr": lr, "grad_norm": norm}, step=step)
            actions = tracker.boundary(step)  # every rank, every step: commands agreed
            if actions.eval:
                with torch.no_grad():
                    val = nn.functional.mse_loss(model(val_x), val_y)
                accelerator.log({"eval_loss": val}, step=step)
            if actions.stop or step == args.max_steps:
                break
        if tracker.run.stop_requested:
            break
    accelerator.end_training()  # finished, or stopped by a command
    return 0


if __name__ == "__main__":
    sys.exit(main())
