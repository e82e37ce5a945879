#!/usr/bin/env python3
"""Where a training step of the bench model goes, by ATen operator.

Runs the PyTorch peer's training step under torch's profiler and prints the
operators by self time, grouped the way docs/performance.md
reports them. trainui calls the same ATen kernels through libtorch, so this is
also the breakdown of trainui's step (tch has no profiler of its own).

    python bench/profile_peer.py [--threads 2] [--steps 5]
"""

import argparse
import collections
import os
import sys
import warnings

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peer_torch  # noqa: E402

GROUPS = [
    ("matmul (mm, addmm, bmm)", ("aten::mm", "aten::addmm", "aten::bmm")),
    ("attention (flash, fwd + bwd)", ("flash_attention",)),
    ("GELU tanh (fwd + bwd)", ("aten::gelu",)),
    ("log-softmax / NLL (fwd + bwd)", ("softmax", "nll_loss")),
    ("layer norm (fwd + bwd)", ("layer_norm",)),
    ("fill / copy / cat", ("aten::fill_", "aten::copy_", "aten::cat", "aten::zero_")),
    ("optimizer + clipping elementwise", (
        "aten::lerp_", "aten::addcdiv_", "aten::addcmul_", "aten::sqrt", "aten::mul_",
        "aten::div", "aten::add_", "linalg_vector_norm", "aten::clamp", "aten::stack",
    )),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    model = peer_torch.GPT(2048, 4, 4, 256, 128)
    train = {"learning_rate": 6e-4, "weight_decay": 0.1}
    optimizer = peer_torch.make_optimizer(model, train)
    pool = torch.randint(0, 2048, (64, 129))

    def step():
        data = pool[torch.randint(0, 64, (16,))]
        logits = model(data[:, :-1])
        loss = F.cross_entropy(logits.view(-1, 2048), data[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()

    for _ in range(3):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    grouped = collections.Counter()
    for e in events:
        for name, keys in GROUPS:
            if any(k in e.key for k in keys):
                grouped[name] += e.self_cpu_time_total
                break
        else:
            grouped["everything else"] += e.self_cpu_time_total
    per_step_ms = total / args.steps / 1e3
    print(f"self CPU time per step: {per_step_ms:.1f} ms ({args.threads} threads)")
    for name, _ in GROUPS + [("everything else", ())]:
        share = grouped[name] / total
        print(f"  {name:36s} {100 * share:5.1f} %  {share * per_step_ms:6.1f} ms")


if __name__ == "__main__":
    main()
