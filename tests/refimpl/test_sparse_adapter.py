"""SparseAdapter: masks fixed at initialisation, pruned entries never train, only kept entries count."""

from __future__ import annotations

import torch

import refimpl
from refimpl.additive.sparse_adapter import SparseBottleneck, prune_with_snip

from .conftest import train_steps


def _adapters(model) -> list[SparseBottleneck]:
    return [module for module in model.modules() if isinstance(module, SparseBottleneck)]


def test_masks_keep_the_largest_entries_and_pruned_entries_do_not_learn(fresh, batch_for):
    model = refimpl.apply(fresh("gpt2"), "sparse_adapter", sparsity=0.75)
    adapter = _adapters(model)[0]
    kept, pruned = adapter.down.weight[adapter.down_mask == 1], adapter.down.weight[adapter.down_mask == 0]
    assert adapter.down_mask.mean() == 0.25 and kept.abs().min() >= pruned.abs().max()
    effective = (adapter.down.weight * adapter.down_mask).detach().clone()
    masks = adapter.down_mask.clone()
    train_steps(model, batch_for("gpt2"), steps=3)
    assert torch.equal(adapter.down_mask, masks)
    changed = (adapter.down.weight * adapter.down_mask).detach() != effective
    assert changed.any() and not changed[masks == 0].any()


def test_large_sparse_trains_as_many_weights_as_a_small_dense_adapter(fresh):
    dense = refimpl.apply(fresh("bert"), "sparse_adapter", adapter_size=8, sparsity=0.0)
    large_sparse = refimpl.apply(fresh("bert"), "sparse_adapter", adapter_size=16, sparsity=0.5)
    extra_down_biases = 2 * 2 * 8  # 4 adapters, 8 more bottleneck units each
    assert (
        refimpl.trainable_parameters(large_sparse)[0]
        == refimpl.trainable_parameters(dense)[0] + extra_down_biases
    )


def test_snip_keeps_the_entries_with_the_largest_weight_times_gradient(fresh, batch_for):
    batch = batch_for("bert")
    model = refimpl.apply(fresh("bert"), "sparse_adapter", sparsity=0.5)
    adapter = _adapters(model)[-1]
    adapter.down_mask.fill_(1)
    adapter.up_mask.fill_(1)
    model.zero_grad()
    model(**batch).loss.backward()
    saliency = (adapter.up.weight * adapter.up.weight.grad).abs()
    prune_with_snip(model, batch)
    kept, pruned = saliency[adapter.up_mask == 1], saliency[adapter.up_mask == 0]
    assert adapter.up_mask.mean() == 0.5 and kept.min() >= pruned.max()
