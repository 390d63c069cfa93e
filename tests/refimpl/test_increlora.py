"""IncreLoRA's promises: ranks grow on schedule up to the budget, the most important layer grows first, a new
component starts at zero (the output does not move when it is added), and a saved adapter keeps its grown ranks."""

from __future__ import annotations

import pytest
import torch

import refimpl
from refimpl.reparameterization.increlora import IncreLoRALinear, IncreLoRAScheduler

from .conftest import tiny_batch, train_steps


def ranks(model):
    return [m.rank for m in model.modules() if isinstance(m, IncreLoRALinear)]


def logits(model, batch):
    with torch.no_grad():
        return model(input_ids=batch["input_ids"]).logits


def train(model, batch, steps, scheduler=None):
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    history = []
    for _ in range(steps):
        optimizer.zero_grad()
        model(**batch).loss.backward()
        if scheduler is not None:
            scheduler.step()
        optimizer.step()
        history.append(sum(ranks(model)))
    return history


def test_ranks_grow_every_interval_until_the_budget_is_spent(fresh):
    model = refimpl.apply(fresh("llama"), "increlora", r=1, max_rank=4)
    assert ranks(model) == [1, 1, 1, 1]
    scheduler = IncreLoRAScheduler(model, interval=2, budget=3)
    history = train(model, tiny_batch("llama"), steps=8, scheduler=scheduler)
    assert history == [4, 5, 5, 6, 6, 7, 7, 7]
    assert (scheduler.scores > 0).all()  # every layer's |θ·∇θ| was seen
    assert refimpl.trainable_parameters(model)[0] == sum(
        m.rank * (m.in_features + m.out_features + 1)
        for m in model.modules()
        if isinstance(m, IncreLoRALinear)
    )


def test_the_most_important_layer_with_room_gets_the_new_component(fresh):
    model = refimpl.apply(fresh("gpt2"), "increlora", r=1, max_rank=2)
    scheduler = IncreLoRAScheduler(model, interval=1, budget=10)
    scheduler.scores = torch.tensor([0.1, 0.5])
    assert scheduler.grow() == [1]
    assert ranks(model) == [1, 2]
    assert scheduler.grow() == [0]  # layer 1 is at max_rank now
    assert scheduler.grow() == []


def test_a_new_component_leaves_the_output_unchanged_at_the_moment_it_is_added(fresh):
    model = refimpl.apply(fresh("bert"), "increlora", r=2)
    batch = tiny_batch("bert")
    train(model, batch, steps=3)
    model.eval()
    before = logits(model, batch)
    assert not torch.allclose(before, logits(fresh("bert"), batch))  # the adapter has learned something
    layer = next(m for m in model.modules() if isinstance(m, IncreLoRALinear))
    layer.grow()
    assert layer.rank == 3
    assert torch.equal(logits(model, batch), before)


def test_a_saved_adapter_keeps_its_grown_ranks(fresh, tmp_path):
    model = refimpl.apply(fresh("gpt2"), "increlora")
    scheduler = IncreLoRAScheduler(model, interval=1, budget=3)
    batch = tiny_batch("gpt2")
    train(model, batch, steps=3, scheduler=scheduler)
    model.eval()
    refimpl.save_adapter(model, tmp_path)
    loaded = refimpl.load_adapter(fresh("gpt2"), tmp_path)
    assert ranks(loaded) == ranks(model) and sum(ranks(model)) == 2 + 3
    assert torch.equal(logits(loaded, batch), logits(model, batch))


def test_an_initial_rank_above_max_rank_is_refused(fresh):
    with pytest.raises(refimpl.RefimplError, match="max_rank"):
        refimpl.apply(fresh("gpt2"), "increlora", r=9, max_rank=8)


def test_the_training_loop_grows_ranks_through_the_methods_callback(fresh):
    model = refimpl.apply(fresh("gpt2"), "increlora", r=1, max_rank=4, growth_interval=2, growth_budget=3)
    train_steps(model, tiny_batch("gpt2"), steps=8)  # four growth points, a budget of three
    assert sum(ranks(model)) == len(ranks(model)) + 3
