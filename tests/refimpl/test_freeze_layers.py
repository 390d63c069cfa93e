"""Freeze Layers (Elsa): only the final blocks, and what sits above them, are fine-tuned."""

from __future__ import annotations

import pytest
import torch

import refimpl
from refimpl.models import tiny_bert, tiny_llama

from .conftest import tiny_batch, train_steps


def trainable_blocks(model, prefix):
    return sorted(
        {
            int(n[len(prefix) :].split(".")[0])
            for n, p in model.named_parameters()
            if p.requires_grad and n.startswith(prefix)
        }
    )


def test_by_default_the_final_quarter_of_the_blocks_is_trainable():
    model = refimpl.apply(tiny_llama(layers=8), "freeze_layers")
    assert trainable_blocks(model, "model.layers.") == [6, 7]
    assert model.model.norm.weight.requires_grad and model.lm_head.weight.requires_grad


def test_lower_blocks_and_embeddings_stay_bit_identical_while_the_last_block_learns():
    model = refimpl.apply(tiny_bert(layers=3), "freeze_layers", trainable_layers=1)
    before = {n: p.clone() for n, p in model.named_parameters()}
    train_steps(model, tiny_batch("bert"), steps=3)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(
        n.startswith(("bert.encoder.layer.2.", "bert.pooler.", "classifier.")) for n in changed
    )
    assert any(n.startswith("bert.encoder.layer.2.") for n in changed)


def test_more_trainable_layers_than_blocks_is_refused():
    with pytest.raises(refimpl.RefimplError, match="trainable_layers"):
        refimpl.apply(tiny_bert(layers=2), "freeze_layers", trainable_layers=3)
