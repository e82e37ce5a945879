"""Tiny local Hugging Face models and tokenizers for the tests (nothing from the Hub)."""

from __future__ import annotations

import time

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

EOS = "<|endoftext|>"
CHARS = " 0123456789+-=abcdefghijklmnopqrstuvwxyz"


def char_tokenizer() -> PreTrainedTokenizerFast:
    """One token per character, <|endoftext|> as id 0 (also padding)."""
    vocab = {EOS: 0, "<unk>": 1}
    for ch in CHARS:
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, pad_token=EOS, unk_token="<unk>"
    )


def tiny_gpt2(tokenizer, *, n_positions: int = 4096, seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=n_positions,
        n_layer=2,
        n_embd=32,
        n_head=2,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = GPT2LMHeadModel(config).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def never_eos(model: GPT2LMHeadModel, eos_id: int) -> GPT2LMHeadModel:
    """Makes end-of-text impossible: its logit is pushed far below the others."""
    model.register_forward_hook(_forbid(eos_id))
    return model


def always_eos(model: GPT2LMHeadModel, eos_id: int) -> GPT2LMHeadModel:
    """Makes end-of-text the only choice (generation completes after one token)."""

    def hook(module, inputs, output):
        output.logits[..., :] = -1e9
        output.logits[..., eos_id] = 0.0
        return output

    model.register_forward_hook(hook)
    return model


def _forbid(token_id: int):
    def hook(module, inputs, output):
        output.logits[..., token_id] = -1e9
        return output

    return hook


def slow(model: GPT2LMHeadModel, delay: float) -> GPT2LMHeadModel:
    """Every forward pass takes `delay` seconds longer."""
    model.register_forward_pre_hook(lambda module, args: time.sleep(delay))
    return model


def failing(model: GPT2LMHeadModel, after: int) -> GPT2LMHeadModel:
    """Its forward raises on call number `after` + 1."""
    calls = [0]

    def hook(module, args, kwargs):
        calls[0] += 1
        if calls[0] > after:
            raise RuntimeError("CUDA error: device-side assert triggered (simulated)")

    model.register_forward_pre_hook(hook, with_kwargs=True)
    return model
