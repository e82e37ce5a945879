#!/usr/bin/env python3
"""A transformers.Trainer job that trainui watches and steers.

A tiny GPT-2 (2 layers, 64 wide, one token per character) learns the demo
tasks (`67+1=` -> `68`, `rev 498455=` -> `554894`, `sort 40721=` -> `01247`)
on the CPU, built entirely in-process: no download, no Hub. The
`TrainuiCallback` makes the run directory what `trainui train` writes:

    examples/hf_trainer.py --run-dir runs/hf --max-steps 300
    trainui watch runs/hf            # in another terminal
    trainui ctl runs/hf eval         # evaluate now; `stop`, `save`, `set ...`

Under torchrun (gloo, on the CPU):

    GLOO_SOCKET_IFNAME=lo torchrun --nproc-per-node 2 --master-addr 127.0.0.1 \\
        --master-port 29500 examples/hf_trainer.py --run-dir runs/hf2 --max-steps 300

The Trainer's checkpoints go to RUN_DIR/checkpoints/checkpoint-STEP.

A job relaunched after a stall by `trainui run --restart-on-stall N`
resumes from the checkpoint trainui hands it (`callback.resume_checkpoint`):

    trainui run --restart-on-stall 2 -- examples/hf_trainer.py --max-steps 300

Faults, to see the deadline and the restart at work:
  --fault never_eos          the model can never end a sample (end-of-text is
                             forbidden and max_new_tokens is unbounded): every
                             generation runs into eval.eval_timeout_seconds
  --fault never_eos_on_rank:R  the same, only on rank R of a torchrun job
  --fault hang_eval_once     the validation data never comes (as from a file
                             system that stopped answering), in the job's
                             first launch only: no generation deadline
                             catches it, the watchdog does
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedTokenizerFast,
    Trainer,
    TrainingArguments,
)
from transformers.trainer_callback import PrinterCallback
from transformers.utils import logging as hf_logging

try:
    import trainui  # noqa: F401 - the installed package (pip install ./python)
except ImportError:
    # Run from a clone without installing: the package folder beside it.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
from trainui.hf import TrainuiCallback  # noqa: E402

EOS = "<|endoftext|>"
NEVER = 10**12
CHARS = " 0123456789+-=abcdefghijklmnopqrstuvwxyz"


def demo_example(rng: random.Random) -> tuple[str, str]:
    """One task with exactly one right answer (as scripts/make_demo_data.py)."""
    task = rng.randrange(4)
    if task == 0:
        a, b = rng.randrange(100), rng.randrange(100)
        return f"{a}+{b}=", str(a + b)
    if task == 1:
        a, b = rng.randrange(100), rng.randrange(100)
        a, b = max(a, b), min(a, b)
        return f"{a}-{b}=", str(a - b)
    digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(3, 6)))
    if task == 2:
        return f"rev {digits}=", digits[::-1]
    return f"sort {digits}=", "".join(sorted(digits))


def demo_data(train: int, val: int, seed: int) -> tuple[list[dict], list[dict]]:
    rng = random.Random(seed)
    seen: set[str] = set()
    rows: list[dict] = []
    while len(rows) < train + val:
        prompt, completion = demo_example(rng)
        if len(rows) >= train and prompt in seen:
            continue  # validation prompts are never seen in training
        seen.add(prompt)
        rows.append({"prompt": prompt, "completion": completion})
    for i, row in enumerate(rows[train:]):
        row["origin"] = f"val:{i + 1}"
    return rows[:train], rows[train:]


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                row = json.loads(line)
                row.setdefault("origin", f"{path.name}:{number}")
                rows.append(row)
    return rows


def char_tokenizer() -> PreTrainedTokenizerFast:
    """One token per character; <|endoftext|> (id 0) ends a sample and pads."""
    vocab = {EOS: 0, "<unk>": 1}
    for ch in CHARS:
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=EOS,
                                   unk_token="<unk>")


class PromptCompletion(torch.utils.data.Dataset):
    """prompt + completion + <|endoftext|>, the loss on the completion only."""

    def __init__(self, rows: list[dict], tokenizer: PreTrainedTokenizerFast):
        self.items = []
        for row in rows:
            prompt = tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]
            completion = tokenizer(row["completion"], add_special_tokens=False)["input_ids"]
            ids = prompt + completion + [tokenizer.eos_token_id]
            self.items.append((ids, [-100] * len(prompt) + completion + [tokenizer.eos_token_id]))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        ids, labels = self.items[i]
        return {"input_ids": ids, "labels": labels}


class NeverComes(torch.utils.data.Dataset):
    """A dataset whose first item never arrives."""

    def __init__(self, rows: PromptCompletion):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        threading.Event().wait()
        return self.rows[i]


def collate(pad_id: int):
    def pad(batch: list[dict]) -> dict:
        width = max(len(item["input_ids"]) for item in batch)
        ids = [item["input_ids"] + [pad_id] * (width - len(item["input_ids"])) for item in batch]
        labels = [item["labels"] + [-100] * (width - len(item["labels"])) for item in batch]
        mask = [[1] * len(item["input_ids"]) + [0] * (width - len(item["input_ids"]))
                for item in batch]
        return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels),
                "attention_mask": torch.tensor(mask)}

    return pad


class ForbidTokens(LogitsProcessor):
    """A model that cannot say these tokens (here: end-of-text, so it never stops)."""

    def __init__(self, token_ids: list[int]):
        self.token_ids = token_ids

    def __call__(self, input_ids, scores):
        scores[:, self.token_ids] = -float("inf")
        return scores


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--run-dir",
        default=os.environ.get("TRAINUI_RUN_DIR"),
        help="run directory (default: $TRAINUI_RUN_DIR, which `trainui run` sets)",
    )
    parser.add_argument("--max-steps", type=int, required=True)
    parser.add_argument("--eval-steps", type=int, default=100)
    parser.add_argument("--save-steps", type=int, default=100)
    parser.add_argument("--logging-steps", type=int, default=10)
    parser.add_argument("--eval-timeout", type=float, default=10.0,
                        help="eval.eval_timeout_seconds: the deadline of one generation")
    parser.add_argument("--samples", type=int, default=4, help="eval.samples per evaluation")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--train-examples", type=int, default=4000)
    parser.add_argument("--val-examples", type=int, default=64)
    parser.add_argument("--data", type=Path,
                        help="a folder with train.jsonl and val.jsonl (default: made in-process)")
    parser.add_argument("--seed", type=int, default=2025)
    parser.add_argument("--stall-timeout", type=float, default=300.0)
    parser.add_argument("--fault", default=None,
                        help="never_eos, or never_eos_on_rank:R")
    args = parser.parse_args(argv)
    if not args.run_dir:
        parser.error("--run-dir DIR is needed (or run it under `trainui run`, which sets TRAINUI_RUN_DIR)")
    if args.fault and args.fault not in ("never_eos", "hang_eval_once") and not args.fault.startswith(
            "never_eos_on_rank:"):
        parser.error(f"--fault {args.fault}: expected never_eos, never_eos_on_rank:R or hang_eval_once")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    hf_logging.disable_progress_bar()
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))

    if args.data:
        train_rows = read_jsonl(args.data / "train.jsonl")
        val_rows = read_jsonl(args.data / "val.jsonl")
    else:
        train_rows, val_rows = demo_data(args.train_examples, args.val_examples, args.seed)
    tokenizer = char_tokenizer()
    torch.manual_seed(args.seed)
    model = GPT2LMHeadModel(GPT2Config(
        vocab_size=len(tokenizer), n_positions=4096, n_layer=2, n_embd=64, n_head=2,
        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    ))
    model.generation_config.pad_token_id = tokenizer.pad_token_id

    run_dir = Path(args.run_dir)
    training_args = TrainingArguments(
        output_dir=str(run_dir / "checkpoints"),
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=64,
        learning_rate=args.learning_rate,
        warmup_steps=min(20, args.max_steps // 10),
        lr_scheduler_type="linear",
        logging_strategy="steps",
        logging_steps=args.logging_steps,
        # 0 = only on request (trainui ctl eval / save); the Trainer wants a
        # number, trainui's settings say 0 below.
        eval_strategy="steps",
        eval_steps=args.eval_steps or NEVER,
        save_strategy="steps",
        save_steps=args.save_steps or NEVER,
        save_total_limit=3,
        use_cpu=True,
        ddp_backend="gloo" if world_size > 1 else None,
        ddp_find_unused_parameters=False,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        include_num_input_tokens_seen="non_padding",
        remove_unused_columns=False,
        seed=args.seed,
        log_level="warning",
    )

    faulty = args.fault == "never_eos" or (
        args.fault is not None and args.fault == f"never_eos_on_rank:{rank}")
    generate_kwargs = {}
    if faulty:
        generate_kwargs = {
            "logits_processor": LogitsProcessorList([ForbidTokens([tokenizer.eos_token_id])]),
            "max_new_tokens": 10**6,
        }
    eval_dataset = PromptCompletion(val_rows, tokenizer)
    if args.fault == "hang_eval_once" and not os.environ.get("TRAINUI_RESTART"):
        eval_dataset = NeverComes(eval_dataset)
    callback = TrainuiCallback(
        run_dir,
        tokenizer=tokenizer,
        eval_examples=val_rows,
        settings={
            "eval": {"samples": args.samples, "eval_timeout_seconds": args.eval_timeout,
                     "max_new_tokens": args.max_new_tokens, "eval_steps": args.eval_steps},
            "checkpoint": {"save_steps": args.save_steps},
            "watchdog": {"stall_timeout_seconds": args.stall_timeout},
        },
        generate_kwargs=generate_kwargs,
        config={"example": "examples/hf_trainer.py", "args": {k: str(v) for k, v in vars(args).items()}},
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=PromptCompletion(train_rows, tokenizer),
        eval_dataset=eval_dataset,
        data_collator=collate(tokenizer.pad_token_id),
        callbacks=[callback],
    )
    # trainui prints the progress lines; the Trainer's own dicts would repeat them.
    trainer.remove_callback(PrinterCallback)
    # After a stall, `trainui run --restart-on-stall` relaunches the job with
    # its newest checkpoint; None on a first start.
    trainer.train(resume_from_checkpoint=callback.resume_checkpoint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
