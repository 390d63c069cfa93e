"""LoRA-Sparse (our interpretation): the full-rank factors reproduce each head's position-free scores, ρ = 1
is the base model, ρ = 0.5 attends to about half the pairs, and training lowers the order-mimic loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import refimpl

from .conftest import tiny_batch, train_steps


def test_full_rank_factors_reproduce_the_position_free_scores(fresh):
    model = refimpl.apply(fresh("llama"), "lora_sparse", r=32, init="svd")
    attention = model.model.layers[0].self_attn
    x = torch.randn(2, 5, 32)
    base = attention.base
    query = base.q_proj(x).view(2, 5, 4, 8).transpose(1, 2)
    key = base.k_proj(x).view(2, 5, 2, 8).transpose(1, 2).repeat_interleave(2, dim=1)
    with torch.no_grad():
        expected = query @ key.transpose(2, 3) / 8**0.5
        torch.testing.assert_close(attention.approximate_scores(x), expected, rtol=1e-4, atol=1e-4)


def test_keeping_every_key_is_the_base_model(fresh):
    batch = tiny_batch("llava")
    with torch.no_grad():
        dense = refimpl.apply(fresh("llava"), "lora_sparse", keep_ratio=1.0)(**batch).logits
        sparse = refimpl.apply(fresh("llava"), "lora_sparse")(**batch).logits
        torch.testing.assert_close(dense, fresh("llava")(**batch).logits, rtol=0, atol=1e-5)
    assert (sparse - dense).abs().max() > 1e-4


def order_mimic_loss(model, batch):
    """The training loss minus the language-modelling loss it adds the order-mimic term to."""
    model.train()
    with torch.no_grad():
        output = model(**batch)
    model.eval()
    logits, labels = output.logits[:, :-1].flatten(0, 1), batch["labels"][:, 1:].flatten()
    return output.loss - F.cross_entropy(logits, labels, ignore_index=-100)


def test_training_lowers_the_order_mimic_loss(fresh):
    batch = tiny_batch("llava")
    model = refimpl.apply(fresh("llava"), "lora_sparse", r=2)
    before = order_mimic_loss(model, batch)
    train_steps(model, batch, steps=10)
    assert 0 < order_mimic_loss(model, batch) < before


def test_padded_keys_are_never_attended(fresh):
    batch = tiny_batch("llama")
    batch["attention_mask"][:2, :3] = 0  # left padding on two sequences
    with torch.no_grad():
        dense = refimpl.apply(fresh("llama"), "lora_sparse", keep_ratio=1.0)(**batch).logits
        base = fresh("llama")(**batch).logits
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(dense[real], base[real], rtol=0, atol=1e-5)
    model = refimpl.apply(fresh("llama"), "lora_sparse")
    model.train()
    model(**batch).loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)


def test_only_the_order_mimic_loss_trains_the_factors(fresh):
    """The factors pick the kept keys (a discrete top-k): the language-modelling loss has no gradient path to
    them, so on a task the method cannot move the frozen model's answers; the order-mimic loss trains them."""
    batch = tiny_batch("llava")
    model = refimpl.apply(fresh("llava"), "lora_sparse")
    model.train()
    output = model(**batch)
    logits, labels = output.logits[:, :-1].flatten(0, 1), batch["labels"][:, 1:].flatten()
    assert not F.cross_entropy(logits, labels, ignore_index=-100).requires_grad
    output.loss.backward()
    factors = [p for p in model.parameters() if p.requires_grad]
    assert factors and all(p.grad is not None and p.grad.abs().sum() > 0 for p in factors)
