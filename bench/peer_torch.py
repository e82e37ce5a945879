#!/usr/bin/env python3
"""The PyTorch peer of `trainui bench`: what a user would run instead.

The bench model, data shape, optimizer and greedy KV-cache decoding written
in plain eager PyTorch, the way nanoGPT does it. `trainui bench` writes a spec
(JSON: model sizes, training settings, what to measure), runs this script with
the same torch wheel and thread count, and reads one JSON object from stdout:

    {"parameters": N, "step_secs": [...], "tokens_per_step": N,
     "decode_secs": [[...], ...], "check": {"max_abs_diff": x} | null}

`decode_secs[r][i]` is the time of the decoding step that fed position
`prompt_len + i` in repeat `r` (index 0 is the prompt's prefill).

Only the standard library and torch are needed: the weights to check come as
a safetensors file, which is read here by hand.
"""

import argparse
import json
import math
import struct
import sys
import time

import warnings

# The wheel's optional NumPy bridge is not needed here.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd, n_head):
        super().__init__()
        self.n_head = n_head
        self.n_embd = n_embd
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)

    def forward(self, x, cache=None, start=0):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        hd = C // self.n_head
        q = q.view(B, T, self.n_head, hd).transpose(1, 2)
        k = k.view(B, T, self.n_head, hd).transpose(1, 2)
        v = v.view(B, T, self.n_head, hd).transpose(1, 2)
        if cache is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            keys, values = cache
            keys[:, :, start : start + T] = k
            values[:, :, start : start + T] = v
            y = F.scaled_dot_product_attention(
                q, keys[:, :, : start + T], values[:, :, : start + T], is_causal=T > 1
            )
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, n_embd):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd)
        self.c_proj = nn.Linear(4 * n_embd, n_embd)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, n_embd, n_head):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = MLP(n_embd)

    def forward(self, x, cache=None, start=0):
        x = x + self.attn(self.ln_1(x), cache, start)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, vocab_size, n_layer, n_head, n_embd, block_size):
        super().__init__()
        self.block_size = block_size
        self.n_head = n_head
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(vocab_size, n_embd),
                wpe=nn.Embedding(block_size, n_embd),
                h=nn.ModuleList([Block(n_embd, n_head) for _ in range(n_layer)]),
                ln_f=nn.LayerNorm(n_embd),
            )
        )
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx, cache=None, start=0):
        T = idx.size(1)
        pos = torch.arange(start, start + T, dtype=torch.long, device=idx.device)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)
        for i, block in enumerate(self.transformer.h):
            x = block(x, None if cache is None else cache[i], start)
        if cache is not None:
            x = x[:, -1, :]
        return self.lm_head(self.transformer.ln_f(x))

    def new_cache(self, batch, device):
        first = self.transformer.h[0].attn
        hd = first.n_embd // first.n_head
        shape = (batch, first.n_head, self.block_size, hd)
        zeros = lambda: torch.zeros(shape, device=device)  # noqa: E731
        return [(zeros(), zeros()) for _ in self.transformer.h]


def learning_rate(train, step):
    if step < train["warmup_steps"]:
        return train["learning_rate"] * (step + 1) / train["warmup_steps"]
    decay = max(train["max_steps"] - train["warmup_steps"], 1)
    progress = min((step - train["warmup_steps"]) / decay, 1.0)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    low = train["min_learning_rate"]
    return low + cosine * (train["learning_rate"] - low)


def make_optimizer(model, train):
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": train["weight_decay"]},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=train["learning_rate"], betas=(0.9, 0.95), eps=1e-8)


def measure_training(model, spec, device):
    train = spec["train"]
    batch, block = train["batch_size"], spec["model"]["block_size"]
    vocab = spec["vocab_size"]
    generator = torch.Generator().manual_seed(spec["seed"])
    # A fixed pool of random sequences, drawn from in a shuffled order.
    pool = torch.randint(0, vocab, (max(64, 4 * batch), block + 1), generator=generator)
    pool = pool.to(device)
    optimizer = make_optimizer(model, train)
    model.train()
    step_secs = []
    for step in range(spec["train_steps"]):
        started = time.perf_counter()
        rows = torch.randint(0, pool.size(0), (batch,), generator=generator).to(device)
        data = pool[rows]
        x, y = data[:, :-1], data[:, 1:]
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(train, step)
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.reshape(-1), ignore_index=-100)
        loss.backward()
        if train["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), train["grad_clip"])
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()
        step_secs.append(time.perf_counter() - started)
    return step_secs, batch * block


@torch.no_grad()
def measure_generation(model, spec, device):
    generator = torch.Generator().manual_seed(spec["seed"] + 1)
    model.eval()
    runs = []
    for _ in range(spec["gen_repeats"]):
        prompt = torch.randint(0, spec["vocab_size"], (1, spec["prompt_len"]), generator=generator)
        # Each step's time runs from the end of the previous one, so that it
        # includes making the next input, as trainui's does.
        last = time.perf_counter()
        cache = model.new_cache(1, device)
        times = []
        tokens = []
        feed, start = prompt.to(device), 0
        for _ in range(spec["new_tokens"]):
            logits = model(feed, cache, start)
            token = logits.argmax(-1).item()
            tokens.append(token)
            now = time.perf_counter()
            times.append(now - last)
            last = now
            start += feed.size(1)
            feed = torch.tensor([[token]], device=device)
        runs.append(times)
    return runs


def read_safetensors(path):
    dtypes = {"F32": torch.float32, "I64": torch.int64, "F64": torch.float64}
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
        data = f.read()
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        flat = torch.frombuffer(bytearray(data[begin:end]), dtype=dtypes[info["dtype"]])
        tensors[name] = flat.reshape(info["shape"])
    return tensors


@torch.no_grad()
def check_logits(model, weights_path, check_path, device):
    weights = read_safetensors(weights_path)
    state = model.state_dict()
    unknown = sorted(set(weights) - set(state))
    missing = sorted(set(state) - set(weights) - {"lm_head.weight"})
    if unknown or missing:
        raise SystemExit(f"peer: weight names differ: unknown {unknown}, missing {missing}")
    model.load_state_dict(weights, strict=False)
    model.eval()
    check = read_safetensors(check_path)
    logits = model(check["tokens"].to(device)).cpu()
    return {"max_abs_diff": (logits - check["logits"]).abs().max().item()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="JSON written by `trainui bench`")
    args = parser.parse_args()
    with open(args.spec) as f:
        spec = json.load(f)
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(spec["seed"])
    m = spec["model"]
    sizes = (spec["vocab_size"], m["n_layer"], m["n_head"], m["n_embd"])
    device = torch.device(spec["device"])
    model = GPT(*sizes, m["block_size"]).to(device)
    parameters = sum(p.numel() for p in model.parameters())
    result = {"parameters": parameters, "torch": torch.__version__, "check": None}
    if spec.get("check"):
        check = spec["check"]
        result["check"] = check_logits(model, check["weights"], check["logits"], device)
    step_secs, tokens_per_step = measure_training(model, spec, device)
    result.update(step_secs=step_secs, tokens_per_step=tokens_per_step)
    # Generation runs past the training block: a model with room for the
    # prompt and every new token.
    gen_model = GPT(*sizes, spec["gen_block_size"]).to(device)
    result["decode_secs"] = measure_generation(gen_model, spec, device)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
