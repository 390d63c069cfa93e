"""Masking (Zhao et al.): W = W0 ⊙ 1[S > τ], scores learned through a straight-through estimator."""

from __future__ import annotations

import pytest
import torch

import refimpl
from refimpl.models import tiny_bert
from refimpl.selective.masking import MaskedLinear

from .conftest import tiny_batch

QUERY = "bert.encoder.layer.0.attention.self.query"


def logits(model, batch):
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def masked_model():
    """Masking on the first query projection, with the scores of every other weight pushed below τ."""
    model = refimpl.apply(tiny_bert(), "masking", target_modules=[QUERY], train_head=False)
    scores = model.get_submodule(QUERY).scores
    with torch.no_grad():
        scores[:, ::2] = -1.0
    return model, scores


def test_the_mask_zeroes_exactly_the_weights_whose_score_is_at_most_the_threshold():
    model, _ = masked_model()
    reference = tiny_bert()
    with torch.no_grad():
        reference.get_submodule(QUERY).weight[:, ::2] = 0
    batch = tiny_batch("bert")
    torch.testing.assert_close(logits(model, batch), logits(reference, batch), rtol=0, atol=1e-6)


def test_the_score_gradient_is_the_weight_gradient_times_the_pretrained_weight():
    model, scores = masked_model()
    batch = tiny_batch("bert")
    model(**batch).loss.backward()
    reference = tiny_bert()
    weight = reference.get_submodule(QUERY).weight
    w0 = weight.detach().clone()
    with torch.no_grad():
        weight[:, ::2] = 0  # the masked forward, with W as the leaf
    reference(**batch).loss.backward()
    torch.testing.assert_close(scores.grad, weight.grad * w0, rtol=1e-5, atol=1e-8)


def test_merge_zeroes_the_masked_weights_and_unmerge_brings_them_back_bit_for_bit():
    model, _ = masked_model()
    weight = model.get_submodule(QUERY).base.weight
    original = weight.detach().clone()
    refimpl.merge(model)
    assert (weight[:, ::2] == 0).all() and torch.equal(weight[:, 1::2], original[:, 1::2])
    refimpl.unmerge(model)
    assert torch.equal(weight, original)


def test_scores_that_would_start_below_the_threshold_are_refused_by_name():
    with pytest.raises(refimpl.RefimplError, match="initial_score"):
        refimpl.apply(tiny_bert(), "masking", threshold=0.1, initial_score=0.05)


def test_ten_adam_steps_at_an_adapter_rate_leave_the_default_mask_all_ones():
    """AdamW moves every score by about its learning rate per step whatever the size of its gradient (the
    straight-through gradient g_W ⊙ W0 is tiny, Adam normalises it away), so the default gap between the initial
    score and τ must span many steps: with 1e-2 / 5e-3 it was 2.5 steps at 2e-3, and three same-signed
    steps, which noise gives often, switched weights off (16 % of MiniLM's at once on the sentiment task)."""
    model = refimpl.apply(tiny_bert(), "masking", train_head=False)
    layers = [module for module in model.modules() if isinstance(module, MaskedLinear)]
    optimizer = torch.optim.AdamW([layer.scores for layer in layers], lr=2e-3, weight_decay=0.0)
    generator = torch.Generator().manual_seed(0)
    # A fixed random sign per score and a tiny scale: ten full-size Adam steps, each score always the same way.
    gradients = [torch.randn(layer.scores.shape, generator=generator).sign() * 1e-6 for layer in layers]
    for _ in range(10):
        optimizer.zero_grad()
        for layer, gradient in zip(layers, gradients, strict=True):
            layer.scores.grad = gradient.clone()
        optimizer.step()
    assert all((layer.scores > layer.threshold).all() for layer in layers)
    batch = tiny_batch("bert")
    torch.testing.assert_close(logits(model, batch), logits(tiny_bert(), batch), rtol=0, atol=1e-6)
