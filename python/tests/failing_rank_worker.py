"""Run under torchrun (2 ranks, gloo) by test_rank_failure.py: rank 1 raises
in its 4th step while rank 0 waits for it in a collective (as DDP's gradient
all_reduce waits), so rank 0 fails only with gloo's news of the lost peer.

Usage: failing_rank_worker.py RUN_DIR
"""

import sys
import time

import torch
import torch.distributed as dist

import trainui

ERROR = "bad batch 7: shapes (3, 4) and (5,) do not match"


def main() -> None:
    root = sys.argv[1]
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    with trainui.Run(
        root,
        max_steps=1000,
        print_lines=False,
        settings={"train": {"log_steps": 1}, "eval": {"eval_steps": 0}},
    ) as run:
        run.start()
        for step in range(1, 1001):
            time.sleep(0.05)
            if rank == 1 and step == 4:
                raise ValueError(ERROR)
            gradient = torch.ones(4)
            dist.all_reduce(gradient)  # rank 0 waits here for rank 1
            run.log_step(step, 1.0, 1e-3)
            if run.boundary(step).stop:
                break


if __name__ == "__main__":
    main()
