"""FISH (Sung et al.): train only the k weights with the largest empirical Fisher information."""

from __future__ import annotations

import torch

import refimpl
from refimpl.models import tiny_bert
from refimpl.selective.fish_mask import compute_fisher_mask

from .conftest import task_data, tiny_batch, train_steps

TARGETS = ["query", "value"]


def one_example_batches(count=4):
    batch = tiny_batch("bert", batch=count)
    return [{key: value[i : i + 1] for key, value in batch.items()} for i in range(count)]


def test_the_mask_is_the_top_k_of_the_per_example_squared_gradients_computed_by_plain_autograd():
    reference = tiny_bert()
    names = [n for n, m in reference.named_modules() if n.endswith(tuple(TARGETS))]
    fisher = torch.zeros(sum(reference.get_submodule(n).weight.numel() for n in names))
    for example in one_example_batches():
        reference.zero_grad()
        reference(**example).loss.backward()
        fisher += torch.cat([reference.get_submodule(n).weight.grad.flatten() for n in names]) ** 2
    model = refimpl.apply(tiny_bert(), "fish_mask", keep_ratio=0.01, target_modules=TARGETS)
    kept = compute_fisher_mask(model, one_example_batches())
    k = round(0.01 * fisher.numel())
    assert set(kept.tolist()) == set(fisher.topk(k).indices.tolist())
    assert sum(p.numel() for p in model.sparse_delta.parameters() if p.requires_grad) == k


def test_training_changes_only_the_k_masked_weights_and_merge_writes_exactly_them():
    model = refimpl.apply(tiny_bert(), "fish_mask", keep_ratio=0.01, target_modules=TARGETS, train_head=False)
    kept = compute_fisher_mask(model, one_example_batches())
    weights = [
        model.get_submodule(n).base.weight for n, _ in model.named_modules() if n.endswith(tuple(TARGETS))
    ]
    before = torch.cat([w.detach().flatten() for w in weights])
    train_steps(model, tiny_batch("bert"), steps=3)
    refimpl.merge(model)
    changed = torch.cat([w.detach().flatten() for w in weights]) != before
    assert changed.any() and set(changed.nonzero().flatten().tolist()) <= set(kept.tolist())


def test_prepare_installs_the_fisher_mask_of_the_tasks_training_examples_one_at_a_time():
    batch = tiny_batch("bert", batch=4)
    data = task_data([batch])
    prepared = refimpl.apply(tiny_bert(), "fish_mask", keep_ratio=0.01, target_modules=TARGETS)
    refimpl.prepare(prepared, data)
    expected = refimpl.apply(tiny_bert(), "fish_mask", keep_ratio=0.01, target_modules=TARGETS)
    compute_fisher_mask(expected, one_example_batches())
    assert torch.equal(prepared.sparse_delta.indices, expected.sparse_delta.indices)
