import os

import torch
import trainui

if "WORLD_SIZE" in os.environ:  # started by torchrun: one process per rank
    torch.distributed.init_process_group("gloo")
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(16, 1))
else:
    model = torch.nn.Linear(16, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
truth = torch.randn(16, 1, generator=torch.Generator().manual_seed(0))  # what it learns

# The run directory is the one `trainui run` names (TRAINUI_RUN_DIR).
with trainui.Run(max_steps=2000) as run:
    run.start(parameters=sum(p.numel() for p in model.parameters()))
    for step in range(1, 2001):
        x = torch.randn(64, 16)
        loss = torch.nn.functional.mse_loss(model(x), x @ truth)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        run.log_step(step, loss.detach(), 0.05)
        if run.boundary(step).stop:  # `trainui ctl RUN stop`, or q in the TUI
            break
