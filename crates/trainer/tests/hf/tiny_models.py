#!/usr/bin/env python3
"""Tiny random Hugging Face checkpoints, built with transformers itself, and
what transformers computes with them: the reference the Rust tests compare
trainui against.

    tiny_models.py make OUT_DIR TOKENIZER_JSON
        writes OUT_DIR/gpt2, OUT_DIR/llama (grouped-query attention,
        untied head, a vocabulary padded past the tokenizer's; also in
        shards as OUT_DIR/llama-sharded) and OUT_DIR/qwen2 (q, k, v biases,
        one key/value head, tied head), and
        OUT_DIR/reference.json: per model and prompt, the last-position
        logits and 32 greedy tokens with and without the KV cache.
    tiny_models.py greedy MODEL_DIR IDS_JSON N [MIN]
        prints the greedy continuation (token ids) of a prompt, with
        end-of-text held back for the first MIN tokens.
    tiny_models.py logits MODEL_DIR IDS_JSON
        prints the last-position logits of a prompt.
"""

import json
import shutil
import sys
import warnings

warnings.filterwarnings("ignore")

import torch  # noqa: E402
import transformers  # noqa: E402

PROMPTS = [[5, 17, 42, 99, 3], [200, 1, 7], [33] * 12, [250, 12, 80, 81, 82, 83, 9, 60]]


def randomise(model):
    """Every parameter random, norms and biases included, so that a loader
    that skips any of them gives different logits."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=generator)
            if "norm" in name or name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
                p.copy_(1.0 + 0.2 * noise)
            else:
                p.copy_(0.2 * noise)


def greedy(model, ids, n, use_cache, min_new_tokens=0):
    out = model.generate(
        torch.tensor([ids]),
        attention_mask=torch.ones(1, len(ids), dtype=torch.long),
        max_new_tokens=n,
        min_new_tokens=min_new_tokens,
        do_sample=False,
        use_cache=use_cache,
        pad_token_id=model.config.eos_token_id,
    )
    tokens = out[0, len(ids):].tolist()
    if model.config.eos_token_id in tokens:
        tokens = tokens[: tokens.index(model.config.eos_token_id)]
    return tokens


def last_logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0, -1].tolist()


def make(out_dir, tokenizer_json):
    with open(tokenizer_json) as f:
        vocab = len(json.load(f)["model"]["vocab"])
    tok = json.load(open(tokenizer_json))
    eos = next(t["id"] for t in tok["added_tokens"] if t["content"] == "<|endoftext|>")
    vocab = max(vocab, eos + 1)
    torch.manual_seed(0)
    models = {
        "gpt2": transformers.GPT2LMHeadModel(
            transformers.GPT2Config(
                vocab_size=vocab, n_positions=64, n_embd=32, n_layer=2, n_head=4,
                bos_token_id=eos, eos_token_id=eos, layer_norm_epsilon=1e-5,
            )
        ),
        "llama": transformers.LlamaForCausalLM(
            transformers.LlamaConfig(
                vocab_size=vocab + 10, hidden_size=32, intermediate_size=48,
                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                max_position_embeddings=64, rope_theta=5000.0, rms_norm_eps=1e-5,
                tie_word_embeddings=False, bos_token_id=eos, eos_token_id=eos,
            )
        ),
        "qwen2": transformers.Qwen2ForCausalLM(
            transformers.Qwen2Config(
                vocab_size=vocab, hidden_size=32, intermediate_size=48,
                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1,
                max_position_embeddings=64, rms_norm_eps=1e-6,
                tie_word_embeddings=True, bos_token_id=eos, eos_token_id=eos,
            )
        ),
    }
    reference = {}
    for name, model in models.items():
        randomise(model)
        model.eval()
        folder = f"{out_dir}/{name}"
        model.save_pretrained(folder, safe_serialization=True)
        shutil.copy(tokenizer_json, f"{folder}/tokenizer.json")
        if name == "llama":
            # The same weights in shards, listed in model.safetensors.index.json.
            sharded = f"{out_dir}/llama-sharded"
            model.save_pretrained(sharded, safe_serialization=True, max_shard_size="40KB")
            shutil.copy(tokenizer_json, f"{sharded}/tokenizer.json")
        reference[name] = [
            {
                "prompt": ids,
                "logits": last_logits(model, ids),
                "greedy_cached": greedy(model, ids, 32, True),
                "greedy_uncached": greedy(model, ids, 32, False),
            }
            for ids in PROMPTS
        ]
    with open(f"{out_dir}/reference.json", "w") as f:
        json.dump(reference, f)


def main():
    command = sys.argv[1]
    if command == "make":
        make(sys.argv[2], sys.argv[3])
        return
    model = transformers.AutoModelForCausalLM.from_pretrained(sys.argv[2])
    model.eval()
    ids = json.loads(sys.argv[3])
    if command == "greedy":
        least = int(sys.argv[5]) if len(sys.argv) > 5 else 0
        print(json.dumps(greedy(model, ids, int(sys.argv[4]), True, least)))
    elif command == "logits":
        print(json.dumps(last_logits(model, ids)))
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main()
