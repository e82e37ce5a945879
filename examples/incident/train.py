#!/usr/bin/env python3
"""The training script of the 2025-11-16 incident, with TrainuiCallback instead of SIGALRM.

The original fine-tuned a model with transformers.Trainer and, every
`eval_steps`, a callback generated a sample with `model.generate()` and
compared it with the golden answer. One pathological example made
generation run for 2.5 hours; the fix wrapped `generate()` in
`signal.alarm(60)`. That hack only works on the main thread, fights any other
SIGALRM user, leaves the CUDA stream mid-kernel when the exception lands, and
throws the partial output away. Here the callback is `TrainuiCallback`: every
generation has a deadline checked before each decoding step
(`eval.eval_timeout_seconds`, changeable while the run goes on with
`trainui ctl RUN_DIR set eval.eval_timeout_seconds=30`), the partial output is
kept, timeouts are counted in the status file, and the job can be watched and
steered with `trainui watch` / `trainui ctl`. See README.md in this folder for
the lines that changed.

The model is the tiny local GPT-2 of examples/hf_trainer.py (nothing is
downloaded). `--pathological` makes the `sort` examples generate very slowly
and never end (like the examples that hung the original job):

    examples/incident/train.py --run-dir runs/incident --max-steps 400 --pathological
    grep -i timeout runs/incident/training_output.log
    jq '{step: .current_step, loss: .loss, timeouts: .timeouts}' runs/incident/status/training_status.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel, LogitsProcessor, LogitsProcessorList
from transformers import Trainer, TrainingArguments
from transformers.trainer_callback import PrinterCallback

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parents[1] / "python"))
from hf_trainer import PromptCompletion, char_tokenizer, collate, demo_data  # noqa: E402

from trainui.hf import TrainuiCallback  # noqa: E402

# The job's config.json, as in the incident (eval_timeout_seconds was there
# all along; now something reads it).
CONFIG = {
    "learning_rate": 2e-3,
    "batch_size": 32,
    "eval_steps": 200,
    "save_steps": 200,
    "logging_steps": 10,
    "eval_timeout_seconds": 60,
    "max_new_tokens": 512,
    "eval_samples": 4,
}


class Pathological(LogitsProcessor):
    """Some examples make the model crawl and never stop: here, prompts that start with
    `sort`. Each decoding step of such a prompt takes `delay` seconds longer and
    end-of-text is never chosen."""

    def __init__(self, prefix_ids: list[int], eos_id: int, delay: float = 0.02):
        self.prefix = torch.tensor(prefix_ids)
        self.eos_id = eos_id
        self.delay = delay

    def __call__(self, input_ids, scores):
        width = len(self.prefix)
        if input_ids.shape[1] >= width and torch.equal(input_ids[0, :width].cpu(), self.prefix):
            time.sleep(self.delay)
            scores[:, self.eos_id] = -float("inf")
        return scores


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--max-steps", type=int, default=3000)
    parser.add_argument("--eval-steps", type=int, default=CONFIG["eval_steps"])
    parser.add_argument("--eval-timeout", type=float, default=CONFIG["eval_timeout_seconds"])
    parser.add_argument("--pathological", action="store_true",
                        help="`sort` examples generate very slowly and never end")
    args = parser.parse_args()
    torch.set_num_threads(1)

    tokenizer = char_tokenizer()
    train_rows, eval_examples = demo_data(4000, 64, seed=2025)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(
        vocab_size=len(tokenizer), n_positions=1024, n_layer=2, n_embd=64, n_head=2,
        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    ))

    generate_kwargs = {}
    if args.pathological:
        sort_ids = tokenizer("sort", add_special_tokens=False)["input_ids"]
        generate_kwargs["logits_processor"] = LogitsProcessorList(
            [Pathological(sort_ids, tokenizer.eos_token_id)])

    training_args = TrainingArguments(
        output_dir=str(Path(args.run_dir) / "checkpoints"),
        max_steps=args.max_steps,
        per_device_train_batch_size=CONFIG["batch_size"],
        learning_rate=CONFIG["learning_rate"],
        logging_steps=CONFIG["logging_steps"],
        eval_strategy="steps",
        eval_steps=args.eval_steps,
        save_steps=CONFIG["save_steps"],
        use_cpu=True,
        report_to="none",
        disable_tqdm=True,
        remove_unused_columns=False,
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=PromptCompletion(train_rows, tokenizer),
        eval_dataset=PromptCompletion(eval_examples, tokenizer),
        data_collator=collate(tokenizer.pad_token_id),
        # Was: callbacks=[GenerationEvalCallback(model, tokenizer, eval_examples)],
        # whose on_evaluate wrapped model.generate() in signal.alarm(60).
        callbacks=[TrainuiCallback(
            args.run_dir,
            tokenizer=tokenizer,
            eval_examples=eval_examples,
            settings={"eval": {
                "eval_timeout_seconds": args.eval_timeout,
                "max_new_tokens": CONFIG["max_new_tokens"],
                "samples": CONFIG["eval_samples"],
            }},
            generate_kwargs=generate_kwargs,
        )],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    return 0


if __name__ == "__main__":
    sys.exit(main())
