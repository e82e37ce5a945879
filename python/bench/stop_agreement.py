"""What the stop agreement of synced generation costs per decoding step.

Run: torchrun --nproc-per-node 2 --master-addr 127.0.0.1 --master-port 29531 \\
         python/bench/stop_agreement.py [--tokens 300] [--repeats 5]
(gloo; set GLOO_SOCKET_IFNAME=lo on a machine without a routable interface.)

Every rank generates the same number of tokens from a tiny GPT-2 with
``synced_gpus=True`` (the FSDP / ZeRO-3 loop, which already does one
all_reduce per step) in three ways: plain ``model.generate()``, trainui's
``generate()`` deciding alone (``synced=False``) and ``generate()`` agreeing
on the stop (``synced=True``: one more all_reduce(MAX) per step). Rank 0
prints microseconds per decoding step, median of the repeats.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
import torch.distributed as dist
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from trainui.generate import generate


def tiny():
    vocab = {"<|endoftext|>": 0}
    for ch in " 0123456789+-=abcdefghijklmnopqrstuvwxyz":
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )
    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=len(vocab),
            n_positions=2048,
            n_layer=2,
            n_embd=32,
            n_head=2,
            eos_token_id=0,
            bos_token_id=0,
            pad_token_id=0,
        )
    ).eval()
    return tokenizer, model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.set_num_threads(1)
    tokenizer, model = tiny()
    enc = tokenizer("rev 498455=", return_tensors="pt")
    common = dict(
        max_new_tokens=args.tokens,
        min_new_tokens=args.tokens,
        do_sample=False,
        pad_token_id=0,
        eos_token_id=0,
        synced_gpus=True,
    )

    def plain():
        model.generate(enc["input_ids"], attention_mask=enc["attention_mask"], **common)

    def alone():
        r = generate(model, enc["input_ids"], timeout=600, synced=False, **common)
        assert r.outcome == "completed" and r.tokens == args.tokens

    def agreed():
        r = generate(model, enc["input_ids"], timeout=600, synced=True, **common)
        assert r.outcome == "completed" and r.tokens == args.tokens

    ways = {
        "model.generate (synced_gpus)": plain,
        "generate(synced=False)": alone,
        "generate(synced=True)": agreed,
    }
    times: dict[str, list[float]] = {name: [] for name in ways}
    plain()  # warm up
    for _ in range(args.repeats):
        for name, way in ways.items():
            dist.barrier()
            started = time.perf_counter()
            way()
            times[name].append((time.perf_counter() - started) / args.tokens * 1e6)
    flag = torch.zeros(1, dtype=torch.int32)
    dist.barrier()
    started = time.perf_counter()
    for _ in range(1000):
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        int(flag.item())
    one_reduce = (time.perf_counter() - started) / 1000 * 1e6
    if rank == 0:
        print(
            f"world size {dist.get_world_size()}, backend {dist.get_backend()}, "
            f"{args.tokens} tokens, median of {args.repeats}"
        )
        base = statistics.median(times["generate(synced=False)"])
        for name, values in times.items():
            median = statistics.median(values)
            print(f"{name:30s} {median:8.1f} us/step  (min {min(values):.1f})")
        print(f"one all_reduce(MAX) of a 1-element tensor: {one_reduce:.1f} us")
        synced = statistics.median(times["generate(synced=True)"])
        print(f"stop agreement costs {synced - base:+.1f} us per decoding step")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
