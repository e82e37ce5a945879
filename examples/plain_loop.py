#!/usr/bin/env python3
"""A plain PyTorch loop that is not a language model: a small MLP learns a
noisy function of 16 inputs, on the CPU, in a few seconds.

    trainui run -- python examples/plain_loop.py --max-steps 2000
    trainui run --restart-on-stall 2 -- python examples/plain_loop.py --max-steps 2000

It logs the loss, the learning rate and the gradient norm at every step, a
validation loss every `eval.eval_steps` steps (and whenever `e` or
`trainui ctl RUN eval` asks), saves a checkpoint every
`checkpoint.save_steps` steps and when asked (`s`, `ctl save`, a stop),
and resumes from the checkpoint `trainui run --restart-on-stall` hands it
after a stall. `trainui ctl RUN set eval.eval_steps=50
train.learning_rate=1e-3` changes them while it runs.

`--fault hang_once` makes the loop hang at step 150 in its first launch (a
call that never returns), for the watchdog and the restart to catch.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path

import torch
from torch import nn

try:
    import trainui  # the installed package (pip install ./python)
except ImportError:
    # Run from a clone without installing: the package folder beside it.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
    import trainui


def batches(seed: int, size: int = 64):
    """Endless batches of y = sin(x . w) + noise: one w, the batches drawn
    by `seed` (training and validation draw different ones)."""
    w = torch.randn(16, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(seed)
    while True:
        x = torch.randn(size, 16, generator=generator)
        noise = 0.05 * torch.randn(size, 1, generator=generator)
        yield x, torch.sin(x @ w).unsqueeze(1) + noise


def validation_loss(model: nn.Module, data, count: int = 8) -> float:
    model.eval()
    with torch.no_grad():
        total = sum(
            nn.functional.mse_loss(model(x), y).item()
            for x, y in (next(data) for _ in range(count))
        )
    model.train()
    return total / count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", help="run directory (default: $TRAINUI_RUN_DIR)")
    parser.add_argument("--max-steps", type=int, default=2000)
    parser.add_argument("--eval-steps", type=int, default=100)
    parser.add_argument("--save-steps", type=int, default=500)
    parser.add_argument("--stall-timeout", type=float, default=60.0)
    parser.add_argument("--fault", choices=["hang_once"])
    args = parser.parse_args()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 1))
    optimizer = torch.optim.AdamW(model.parameters())
    train, val = batches(seed=1), batches(seed=2)
    settings = {
        "train": {"learning_rate": 3e-3},
        "eval": {"eval_steps": args.eval_steps},
        "checkpoint": {"save_steps": args.save_steps},
        "watchdog": {"stall_timeout_seconds": args.stall_timeout},
    }

    with trainui.Run(args.run_dir, max_steps=args.max_steps, settings=settings) as run:
        start = 0
        if run.resume_checkpoint:  # trainui run relaunched the job after a stall
            saved = torch.load(run.resume_checkpoint)
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            start = saved["step"]
        run.start(parameters=sum(p.numel() for p in model.parameters()), start_step=start)
        for step in range(start + 1, args.max_steps + 1):
            lr = run.settings["train"]["learning_rate"]  # changed live by `set`
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = next(train)
            loss = nn.functional.mse_loss(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            norm = nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            run.log_step(step, loss.detach(), lr, grad_norm=norm)
            actions = run.boundary(step)  # the settings' cadence, and commands
            if actions.eval:
                run.log_val_loss(step, validation_loss(model, val))
            if actions.save or actions.stop:
                path = Path(run.root) / "checkpoints" / f"step-{step}.pt"
                path.parent.mkdir(exist_ok=True)
                state = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
                torch.save({**state, "step": step}, path)
                run.checkpoint(step, path)
            if actions.stop:
                break
            if args.fault == "hang_once" and step == 150 and not os.environ.get("TRAINUI_RESTART"):
                threading.Event().wait()  # a call that never returns
    return 0


if __name__ == "__main__":
    sys.exit(main())
