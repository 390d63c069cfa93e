"""Diff pruning (Guo et al.): a hard-concrete gated diff, an L0 penalty, then magnitude pruning to top-k."""

from __future__ import annotations

import torch

import refimpl
from refimpl.models import tiny_bert
from refimpl.selective.diff_pruning import diff_layers, finalize_diff, l0_penalty

from .conftest import tiny_batch, train_steps


def adapted(**options):
    return refimpl.apply(tiny_bert(), "diff_pruning", **options)


def test_with_zero_logits_the_sampled_gates_are_closed_half_the_time_and_fully_open_a_sixth():
    # log α = 0, β = 1, (l, r) = (-1.5, 1.5): z = 0 iff logistic noise ≤ 0; z = 1 iff noise ≥ log 5.
    layer = diff_layers(adapted(log_alpha_init=0.0))[0]
    torch.manual_seed(0)
    z = layer.gate(sample=True)
    assert abs((z == 0).float().mean().item() - 0.5) < 0.03
    assert abs((z == 1).float().mean().item() - 1 / 6) < 0.03


def test_the_l0_penalty_is_the_expected_count_of_open_gates_and_its_gradient_closes_them():
    model = adapted(log_alpha_init=0.0)
    entries = sum(layer.diff.numel() for layer in diff_layers(model))
    penalty = l0_penalty(model)
    torch.testing.assert_close(penalty, torch.tensor(entries / 2))  # σ(0 − log 1) = 1/2 per entry
    penalty.backward()
    assert all((layer.log_alpha.grad > 0).all() for layer in diff_layers(model))


def test_finalize_keeps_exactly_the_largest_diff_entries_and_only_they_train_afterwards():
    model = adapted()
    torch.manual_seed(1)
    with torch.no_grad():
        for layer in diff_layers(model):
            layer.diff.normal_()
    everything = torch.cat([layer.diff.detach().abs().flatten() for layer in diff_layers(model)])
    keep = finalize_diff(model, keep_ratio=0.01)
    assert keep == round(0.01 * everything.numel())
    kept = torch.cat([layer.kept.flatten() for layer in diff_layers(model)]).bool()
    assert everything[kept].min() >= everything[~kept].max()
    head = sum(p.numel() for p in model.classifier.parameters())
    assert refimpl.trainable_parameters(model)[0] == keep + head
    before = torch.cat([layer.diff.detach().flatten() for layer in diff_layers(model)])
    train_steps(model, tiny_batch("bert"), steps=2)
    after = torch.cat([layer.diff.detach().flatten() for layer in diff_layers(model)])
    assert torch.equal(after[~kept], torch.zeros_like(after[~kept])) and not torch.equal(
        after[kept], before[kept]
    )


def test_a_pruned_adapter_loads_back_pruned(tmp_path):
    model = adapted()
    train_steps(model, tiny_batch("bert"), steps=2)
    finalize_diff(model, keep_ratio=0.01)
    refimpl.save_adapter(model, tmp_path)
    loaded = refimpl.load_adapter(tiny_bert(), tmp_path)
    assert refimpl.trainable_parameters(loaded)[0] == refimpl.trainable_parameters(model)[0]
    batch = tiny_batch("bert")
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, model(**batch).logits)


def test_in_training_the_loss_carries_lambda_times_the_expected_l0_until_the_diff_is_finalized():
    batch = tiny_batch("bert")
    losses = {}
    for weight in (0.0, 1e-3):
        model = refimpl.apply(tiny_bert(), "diff_pruning", l0_lambda=weight, log_alpha_init=0.5)
        model.train()
        torch.manual_seed(0)
        losses[weight] = model(**batch).loss
    torch.testing.assert_close(losses[1e-3] - losses[0.0], 1e-3 * l0_penalty(model))
    model.eval()
    with torch.no_grad():
        plain = model(**batch).loss
        finalize_diff(model, 0.01)
        model.train()
        torch.manual_seed(0)
        assert torch.equal(model(**batch).loss, plain)  # finalized: fixed mask, no gates, no penalty
