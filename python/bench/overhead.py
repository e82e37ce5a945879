"""What trainui costs a training loop: `Run.log_step` + `Run.boundary` per step.

    python python/bench/overhead.py [--steps 20000]
    torchrun --nproc-per-node 2 --master-addr 127.0.0.1 --master-port 29533 \\
        python/bench/overhead.py --steps 3000          (gloo, CPU; GLOO_SOCKET_IFNAME=lo)

Measures, on the calling thread, microseconds per step of
  - log_step with a float loss, then boundary (the loop of a plain script);
  - log_step with a tensor loss (kept on its device, read back once a window),
    then boundary;
back to back (the worst case: no training step between two boundaries), and
inside a real loop: the step time of the example's tiny GPT
(examples/torchrun_loop.py, batch 32 on CPU) alone and with both calls.
Under torchrun each agreement begins one all_reduce of five int64 flags
(waited for at the next agreement, so it overlaps training): at every
boundary when steps take 0.2 s or more, else about every 0.2 s (back to
back, that is rarely); rank 0 prints.
The target is at most 1 % of a realistic step.
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

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import trainui  # noqa: E402


def per_step_us(body, steps: int, repeats: int = 3) -> float:
    """Median over `repeats` of the mean microseconds of `body(step)`."""
    results = []
    for _ in range(repeats):
        started = time.perf_counter()
        for step in range(1, steps + 1):
            body(step)
        results.append((time.perf_counter() - started) / steps * 1e6)
    return statistics.median(results)


def example_step(distributed: bool):
    """One training step of the example's model, as a function of the step."""
    spec = importlib.util.spec_from_file_location(
        "torchrun_loop", HERE.parent.parent / "examples" / "torchrun_loop.py"
    )
    loop = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loop)
    model = loop.TinyGPT()
    wrapped = torch.nn.parallel.DistributedDataParallel(model) if distributed else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    inputs, targets, _ = loop.tensors([("47+38=", "85", "x")] * 32)

    def step(_):
        loss = loop.loss_of(wrapped, inputs, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    step(0)
    return step


def with_model(run, model_step, steps: int, rounds: int = 5):
    """Milliseconds per step of the model alone and of the model with
    log_step + boundary, alternating rounds of `steps` (medians)."""
    alone, traced = [], []
    offset = [0]

    def both(_):
        loss = model_step(0)
        offset[0] += 1
        run.log_step(offset[0], loss, 1e-3, 512)
        run.boundary(offset[0])

    for _ in range(rounds):
        alone.append(per_step_us(model_step, steps, repeats=1) / 1000)
        traced.append(per_step_us(both, steps, repeats=1) / 1000)
    return statistics.median(alone), statistics.median(traced)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--model-steps", type=int, default=40)
    args = parser.parse_args()
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        if os.environ.get("MASTER_ADDR") in ("127.0.0.1", "localhost"):
            os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
        torch.distributed.init_process_group("gloo")
    torch.set_num_threads(1)
    rank = torch.distributed.get_rank() if distributed else 0
    base = Path(tempfile.mkdtemp(prefix="trainui-bench-")) if rank == 0 else None
    if distributed:
        box = [str(base) if base else None]
        torch.distributed.broadcast_object_list(box, src=0)
        base = Path(box[0])

    results = {}
    steps = args.steps
    for name, loss in (("float loss", 1.25), ("tensor loss", torch.tensor(1.25))):
        run = trainui.Run(
            base / name.replace(" ", "-"),
            max_steps=10 * steps + 10,
            handle_signals=False,
            print_lines=False,
            settings={"eval": {"eval_steps": 0}},
        )
        run.start()
        offset = [0]

        def body(step, run=run, loss=loss, offset=offset):
            offset[0] += 1
            run.log_step(offset[0], loss, 1e-3, 512)
            run.boundary(offset[0])

        results[name] = per_step_us(body, steps)
        run.finish()
    empty = per_step_us(lambda step: None, steps)
    model_step = example_step(distributed)
    run = trainui.Run(
        base / "with-model",
        max_steps=10**9,
        handle_signals=False,
        print_lines=False,
        settings={"eval": {"eval_steps": 0}},
    )
    run.start()
    alone_ms, traced_ms = with_model(run, model_step, args.model_steps)
    run.finish()
    if rank == 0:
        world = torch.distributed.get_world_size() if distributed else 1
        agreement = (
            (
                " (a gloo all_reduce at each agreement: every boundary, or every 0.2 s"
                " when steps are faster)"
            )
            if distributed
            else ""
        )
        print(f"trainui overhead per step, {world} rank(s){agreement}:")
        print(f"  back to back, {steps} steps, median of 3 (no training step to hide behind):")
        print(f"    empty loop                          {empty:9.2f} us")
        for name, us in results.items():
            print(
                f"    log_step({name}) + boundary   {us:9.2f} us"
                f"   {100 * us / 100_000:6.3f} % of a 100 ms step"
            )
        added = (traced_ms - alone_ms) * 1000
        print(
            f"  inside the example's training loop (tiny GPT, batch 32, CPU), "
            f"{args.model_steps} steps x 5 rounds, medians:"
        )
        print(
            f"    step alone {alone_ms:8.2f} ms | with log_step(tensor) + boundary "
            f"{traced_ms:8.2f} ms | added {added:8.1f} us = "
            f"{100 * added / (alone_ms * 1000):6.3f} %"
        )
    if distributed:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
