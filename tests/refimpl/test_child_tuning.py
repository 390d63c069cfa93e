"""Child-Tuning (Xu et al.): F masks gradients at random with probability p_F; D fixes a Fisher child."""

from __future__ import annotations

import torch

import refimpl
from refimpl.core.sparse import empirical_fisher
from refimpl.models import tiny_bert
from refimpl.selective.child_tuning import child_layers, compute_child_mask

from .conftest import task_data, tiny_batch, train_steps


def test_mode_f_keeps_a_fraction_p_of_the_gradient_scaled_by_one_over_p():
    model = refimpl.apply(tiny_bert(hidden=64), "child_tuning", mode="F", reserve_p=0.25)
    layers = child_layers(model)
    dense = empirical_fisher(model, [tiny_batch("bert")], layers)  # (∂L/∂W)² with no mask
    torch.manual_seed(0)
    model(**tiny_batch("bert")).loss.backward()
    masked = torch.cat([layer.delta.grad.flatten() for layer in layers])
    full = torch.cat([d.flatten() for d in dense]).sqrt()
    kept = masked != 0
    assert abs(kept.float().mean().item() - 0.25) < 0.01
    torch.testing.assert_close(masked[kept].abs(), full[kept] / 0.25)


def test_mode_d_trains_exactly_the_top_fisher_fraction():
    model = refimpl.apply(tiny_bert(), "child_tuning", mode="D", reserve_p=0.1, train_head=False)
    layers = child_layers(model)
    batches = [tiny_batch("bert", seed=s) for s in range(2)]
    fisher = torch.cat([f.flatten() for f in empirical_fisher(model, batches, layers)])
    size = compute_child_mask(model, batches)
    assert size == round(0.1 * fisher.numel()) == refimpl.trainable_parameters(model)[0]
    child = torch.cat([layer.child.flatten() for layer in layers]).bool()
    assert fisher[child].min() >= fisher[~child].max()
    train_steps(model, tiny_batch("bert"), steps=3)
    effective = torch.cat([layer.delta_weight().detach().flatten() for layer in layers])
    assert (effective[~child] == 0).all() and (effective[child] != 0).any()


def test_prepare_fixes_mode_ds_child_from_the_tasks_training_examples():
    batch = tiny_batch("bert", batch=4)
    model = refimpl.apply(tiny_bert(), "child_tuning", mode="D", reserve_p=0.1, train_head=False)
    refimpl.prepare(model, task_data([batch]))
    assert refimpl.trainable_parameters(model)[0] == round(
        0.1 * sum(m.delta.numel() for m in child_layers(model))
    )
