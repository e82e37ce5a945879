"""Run under torchrun (2 ranks, gloo) by test_generate.py: synced generation stop agreement.

Usage: dist_generate_worker.py OUT_DIR SCENARIO...
  timeout_on_rank1  rank 0's model ends at once (its sequence is finished and it
                    no longer calls stopping criteria), rank 1's never ends and
                    has a 1 s deadline; rank 0's deadline is 600 s.
  abort_on_rank0    both never end, deadline 600 s; rank 0's abort flag is set
                    from a timer thread after 0.5 s.
  wrapped_timeout_on_rank1
                    timeout_on_rank1 through a wrapper module that hands
                    generate() to the model inside it, so the forward hook on
                    the wrapper never runs.
  error_on_both     both models' 4th forward raises (in the same step on
                    both ranks).
Each rank writes OUT_DIR/rank-N.json: {scenario: {outcome, tokens, seconds,
beats, warnings, raised}}.
"""

import json
import os
import sys
import threading
import time
import warnings

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_fixtures import always_eos, char_tokenizer, failing, never_eos, tiny_gpt2
from trainui.generate import generate


class HandsOnGenerate(torch.nn.Module):
    """A wrapper whose generate() runs the inner model's forward, not its own (as FSDP1's
    wrapper or a PEFT model do)."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, *args, **kwargs):
        return self.inner(*args, **kwargs)

    def generate(self, *args, **kwargs):
        return self.inner.generate(*args, **kwargs)


def run_scenario(scenario: str, rank: int, tok) -> dict:
    model = tiny_gpt2(tok)
    abort = threading.Event()
    timeout = 600.0
    min_new = 10**6
    if scenario in ("timeout_on_rank1", "wrapped_timeout_on_rank1"):
        if rank == 0:
            always_eos(model, tok.eos_token_id)
            min_new = 0
        else:
            never_eos(model, tok.eos_token_id)
            timeout = 1.0
        if scenario.startswith("wrapped"):
            model = HandsOnGenerate(model)
    elif scenario == "abort_on_rank0":
        never_eos(model, tok.eos_token_id)
        if rank == 0:
            threading.Timer(0.5, abort.set).start()
    elif scenario == "error_on_both":
        failing(never_eos(model, tok.eos_token_id), after=3)
    else:
        raise SystemExit(f"unknown scenario {scenario}")
    beats = [0]

    def heartbeat():
        beats[0] += 1

    dist.barrier()
    started = time.monotonic()
    result = None
    raised = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = generate(
                model,
                tokenizer=tok,
                prompt="rev 498455=",
                timeout=timeout,
                abort=abort,
                max_new_tokens=10**6,
                min_new_tokens=min_new,
                synced_gpus=True,
                heartbeat=heartbeat,
            )
        except RuntimeError as error:
            raised = str(error)
    seconds = time.monotonic() - started
    # A collective after generation proves no rank is left inside one.
    dist.barrier()
    return {
        "outcome": result.outcome if result else None,
        "tokens": result.tokens if result else None,
        "seconds": seconds,
        "beats": beats[0],
        "warnings": [str(w.message) for w in caught if w.category is RuntimeWarning],
        "raised": raised,
    }


def main() -> None:
    out_dir, scenarios = sys.argv[1], sys.argv[2:]
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.set_num_threads(1)
    tok = char_tokenizer()
    results = {scenario: run_scenario(scenario, rank, tok) for scenario in scenarios}
    with open(os.path.join(out_dir, f"rank-{rank}.json"), "w") as f:
        json.dump(results, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
