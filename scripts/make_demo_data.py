#!/usr/bin/env python3
"""Writes the demo dataset: short tasks with exactly one right answer.

Deterministic: the same seed always writes byte-identical files, so the
dataset in assets/demo/ can be checked against this generator.

Tasks (prompt -> completion):
  47+38=      -> 85       two-digit addition
  91-37=      -> 54       two-digit subtraction, never negative
  rev 40721=  -> 12704    reverse a digit string
  sort 40721= -> 01247    sort the digits of a string

Usage: make_demo_data.py [OUT_DIR] [--train N] [--val N] [--seed S]
"""

import argparse
import json
import os
import random


def example(rng):
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


def write(path, rows):
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        for prompt, completion in rows:
            out.write(json.dumps({"prompt": prompt, "completion": completion}) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", nargs="?", default="assets/demo")
    parser.add_argument("--train", type=int, default=20000)
    parser.add_argument("--val", type=int, default=500)
    parser.add_argument("--seed", type=int, default=2025)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    seen = set()
    rows = []
    while len(rows) < args.train + args.val:
        row = example(rng)
        # The validation set holds prompts never seen in training.
        if len(rows) >= args.train and row[0] in seen:
            continue
        seen.add(row[0])
        rows.append(row)

    os.makedirs(args.out_dir, exist_ok=True)
    write(os.path.join(args.out_dir, "train.jsonl"), rows[: args.train])
    write(os.path.join(args.out_dir, "val.jsonl"), rows[args.train :])


if __name__ == "__main__":
    main()
