#!/usr/bin/env python3
"""A plain PyTorch training loop that trainui watches and steers.

    python examples/torchrun_loop.py --run-dir runs/py --max-steps 300
    torchrun --nproc-per-node 2 --master-addr 127.0.0.1 --master-port 29500 \\
        examples/torchrun_loop.py --run-dir runs/py2 --max-steps 300

then, from another terminal: `trainui watch runs/py`, `trainui ctl runs/py eval`,
`trainui ctl runs/py set eval.eval_steps=50`, `trainui ctl runs/py stop`.

A tiny character-level GPT learns the demo tasks (assets/demo: `47+38=` ->
`85`, `rev 40721=` -> `12704`). Under torchrun it is DistributedDataParallel
on gloo (CPU), each rank training on its own share of the data. Every
`eval.eval_steps` steps each rank evaluates: validation loss, then a few
greedy generations under a deadline (`eval.eval_timeout_seconds`) and the
operator's abort flag, checked before every decoding step. Rank 0 saves
checkpoints into RUN_DIR/checkpoints/checkpoint-STEP/ (written to a hidden
folder, then renamed). A stop (ctl stop, SIGTERM, SIGINT) saves and exits 0.

`--fault never_eos_on_rank:R` makes rank R's generations never end (no
end-of-text, no length limit), so only their deadline ends them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
try:
    import trainui  # the installed package (pip install ./python)
except ImportError:
    # Run from a clone without installing: the package folder beside it.
    sys.path.insert(0, str(HERE.parent / "python"))
    import trainui

DEMO = HERE.parent / "assets" / "demo"
CHARS = " 0123456789+-=abcdefghijklmnopqrstuvwxyz"
EOS = 0
STOI = {ch: i + 1 for i, ch in enumerate(CHARS)}
ITOS = {i: ch for ch, i in STOI.items()}
VOCAB = len(CHARS) + 1
BLOCK = 32
IGNORE = -100


def encode(text: str) -> list:
    return [STOI[ch] for ch in text if ch in STOI]


def decode_ids(ids) -> str:
    return "".join(ITOS.get(int(i), "") for i in ids)


def load_examples(path: Path, limit: int):
    """(prompt, completion, origin) of the first `limit` lines of a JSONL
    file; made up in-process when the file is not there."""
    examples = []
    if path.is_file():
        with open(path) as file:
            for number, line in enumerate(file, 1):
                if len(examples) >= limit:
                    break
                record = json.loads(line)
                examples.append((record["prompt"], record["completion"],
                                 f"{path.name}:{number}"))
    else:
        generator = torch.Generator().manual_seed(len(path.name))
        for number in range(limit):
            a, b = torch.randint(10, 99, (2,), generator=generator).tolist()
            examples.append((f"{a}+{b}=", str(a + b), f"{path.name}:{number + 1}"))
    return examples


def tensors(examples):
    """Inputs and targets (completion and end-of-text only), padded."""
    inputs = torch.full((len(examples), BLOCK), EOS, dtype=torch.long)
    targets = torch.full((len(examples), BLOCK), IGNORE, dtype=torch.long)
    tokens = 0
    for row, (prompt, completion, _) in enumerate(examples):
        p, c = encode(prompt), encode(completion)
        ids = (p + c + [EOS])[: BLOCK + 1]
        inputs[row, : len(ids) - 1] = torch.tensor(ids[:-1])
        start = max(len(p) - 1, 0)
        targets[row, start: len(ids) - 1] = torch.tensor(ids[start + 1:])
        tokens += len(ids) - 1
    return inputs, targets, tokens


class TinyGPT(nn.Module):
    def __init__(self, dim: int = 64, heads: int = 4, layers: int = 2):
        super().__init__()
        self.tok = nn.Embedding(VOCAB, dim)
        self.pos = nn.Embedding(BLOCK, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, VOCAB)

    def forward(self, idx):
        length = idx.shape[1]
        x = self.tok(idx) + self.pos(torch.arange(length, device=idx.device))
        mask = nn.Transformer.generate_square_subsequent_mask(length, device=idx.device)
        x = self.blocks(x, mask=mask, is_causal=True)
        return self.head(self.norm(x))


def loss_of(model, inputs, targets):
    logits = model(inputs)
    return F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1), ignore_index=IGNORE)


@torch.no_grad()
def greedy(model, run, prompt_ids, max_new_tokens, deadline, never_end, on_token):
    """Greedy decoding, checking the deadline and the abort flag before
    every step. Returns (new token ids, outcome)."""
    ids = list(prompt_ids)
    out = []
    try:
        while True:
            if run.abort.is_set():
                return out, "aborted"
            if time.monotonic() >= deadline:
                return out, "timed_out"
            if not never_end and len(out) >= max_new_tokens:
                return out, "completed"
            window = torch.tensor([ids[-BLOCK:]], dtype=torch.long)
            logits = model(window)[0, -1]
            if never_end:
                logits[EOS] = -math.inf
            token = int(logits.argmax())
            if token == EOS:
                return out, "completed"
            ids.append(token)
            out.append(token)
            on_token(out)
    except RuntimeError as err:
        return out, ("error", str(err))


def evaluate(run, model, val, step, rank, fault_rank):
    model.eval()
    settings = run.settings["eval"]
    samples = min(settings["samples"], len(val))
    timeout = settings["eval_timeout_seconds"]
    run.eval_started(step, samples)
    deadline = time.monotonic() + timeout
    total, batches, timed_out = 0.0, 0, False
    with torch.no_grad():
        for index in range(settings["val_batches"]):
            if time.monotonic() >= deadline:
                timed_out = True
                break
            run.beat("validating", step)
            chunk = val[(index * 32) % len(val):][:32]
            inputs, targets, _ = tensors(chunk)
            total += float(loss_of(model, inputs, targets))
            batches += 1
    run.val_loss(step, total / batches if batches else None, batches, timed_out)
    first = ((run.evals - 1) * samples + rank * samples) % len(val)
    for number in range(samples):
        index = (first + number) % len(val)
        prompt, golden, origin = val[index]
        inputs, targets, _ = tensors([val[index]])
        with torch.no_grad():
            example_loss = float(loss_of(model, inputs, targets))
        common = dict(step=step, sample=number + 1, of=samples, example=index, origin=origin,
                      prompt=prompt, golden=golden, golden_tokens=len(encode(golden)))
        run.generation_started(**common, timeout_secs=timeout)
        started = time.monotonic()

        def progress(out, started=started, number=number):
            run.generation_progress(step=step, sample=number + 1, text=decode_ids(out),
                                    tokens=len(out), elapsed_secs=time.monotonic() - started)

        out, outcome = greedy(model, run, encode(prompt), settings["max_new_tokens"],
                              started + timeout, rank == fault_rank, progress)
        run.sample(**common, output=decode_ids(out), output_tokens=len(out), outcome=outcome,
                   loss=example_loss, elapsed_secs=time.monotonic() - started,
                   timeout_secs=timeout)
    run.eval_finished(step)
    model.train()


def save(run, step, model, optimizer, root: Path):
    """Rank 0: a checkpoint folder, written hidden and renamed into place;
    the oldest beyond checkpoint.save_total_limit are removed."""
    run.beat("saving", step)
    checkpoints = root / "checkpoints"
    # Nobody else may change or delete a checkpoint, whatever the umask.
    checkpoints.mkdir(mode=0o755, exist_ok=True)
    final = checkpoints / f"checkpoint-{step}"
    temp = checkpoints / f".checkpoint-{step}.tmp-{os.getpid()}"
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir(mode=0o755)
    torch.save(model.state_dict(), temp / "model.pt")
    torch.save(optimizer.state_dict(), temp / "optimizer.pt")
    (temp / "trainer_state.json").write_text(json.dumps({"step": step}))
    for written in temp.iterdir():
        written.chmod(0o644)
    if final.exists():
        shutil.rmtree(final)
    os.rename(temp, final)
    run.checkpoint(step, final)
    limit = run.settings["checkpoint"]["save_total_limit"]
    if limit:
        kept = sorted(checkpoints.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        for old in kept[:-limit]:
            shutil.rmtree(old, ignore_errors=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--run-dir",
        default=os.environ.get("TRAINUI_RUN_DIR"),
        help="run directory (default: $TRAINUI_RUN_DIR, which `trainui run` sets)",
    )
    parser.add_argument("--max-steps", type=int, required=True)
    parser.add_argument("--log-steps", type=int, default=10)
    parser.add_argument("--eval-steps", type=int, default=100)
    parser.add_argument("--save-steps", type=int, default=0)
    parser.add_argument("--eval-timeout", type=float, default=60.0)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--stall-timeout", type=float, default=300.0)
    parser.add_argument("--on-stall", choices=("warn", "exit"), default="warn")
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--step-sleep", type=float, default=0.0,
                        help="seconds to sleep after every step (to watch it slowly)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--fault", default=None,
                        help="never_eos_on_rank:R: rank R's generations never end")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.run_dir:
        sys.exit("--run-dir DIR is needed (or run it under `trainui run`, which sets TRAINUI_RUN_DIR)")
    torch.set_num_threads(args.threads)
    fault_rank = -1
    if args.fault:
        name, _, value = args.fault.partition(":")
        if name != "never_eos_on_rank" or not value.isdigit():
            sys.exit(f"--fault {args.fault}: expected never_eos_on_rank:R")
        fault_rank = int(value)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        if os.environ.get("MASTER_ADDR") in ("127.0.0.1", "localhost"):
            os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
        torch.distributed.init_process_group("gloo")
    rank = torch.distributed.get_rank() if distributed else 0
    world = torch.distributed.get_world_size() if distributed else 1

    torch.manual_seed(1337)
    train = load_examples(DEMO / "train.jsonl", 4000)
    val = load_examples(DEMO / "val.jsonl", 200)
    shard = train[rank::world]
    model = TinyGPT()
    wrapped = torch.nn.parallel.DistributedDataParallel(model) if distributed else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate)
    settings = {
        "train": {"log_steps": args.log_steps, "learning_rate": args.learning_rate},
        "eval": {"eval_steps": args.eval_steps, "samples": args.samples,
                 "eval_timeout_seconds": args.eval_timeout, "val_batches": 2},
        "checkpoint": {"save_steps": args.save_steps},
        "watchdog": {"stall_timeout_seconds": args.stall_timeout},
    }
    root = Path(args.run_dir)
    generator = torch.Generator().manual_seed(1000 + rank)
    with trainui.Run(root, max_steps=args.max_steps, config=vars(args), settings=settings,
                     on_stall=args.on_stall) as run:
        run.start(device="cpu", parameters=sum(p.numel() for p in model.parameters()),
                  vocab_size=VOCAB, train_examples=len(train), val_examples=len(val))
        step = 0
        stopped = False
        while step < args.max_steps:
            batch = [shard[i] for i in torch.randint(len(shard), (args.batch_size,),
                                                     generator=generator).tolist()]
            inputs, targets, tokens = tensors(batch)
            learning_rate = run.settings["train"]["learning_rate"]
            loss = loss_of(wrapped, inputs, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            run.log_step(step, loss.detach(), learning_rate, tokens * world)
            actions = run.boundary(step)
            if actions.settings and "train.learning_rate" in actions.settings:
                for group in optimizer.param_groups:
                    group["lr"] = run.settings["train"]["learning_rate"]
            if actions.eval:
                evaluate(run, model, val, step, rank, fault_rank)
            if (actions.save or actions.stop or step == args.max_steps) and rank == 0:
                save(run, step, model, optimizer, root)
            if actions.stop:
                stopped = True
                break
            if args.step_sleep:
                time.sleep(args.step_sleep)
        run.finish("stopped" if stopped else "finished")
    if distributed:
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
