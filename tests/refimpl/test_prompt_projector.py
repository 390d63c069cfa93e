"""Prompt projector: a prompt trained on one model (another width) is projected into a second model; only the
projector trains, and it can be fitted to a target-model prompt by the distance objective."""

from __future__ import annotations

import pytest
import torch

import refimpl
from refimpl.models import tiny_model
from refimpl.prompt.prompt_projector import distance_loss, set_source_prompt

from .conftest import tiny_batch, train_steps

LENGTH = 5


def test_a_wider_models_prompt_drives_the_target_through_the_projector(tmp_path):
    source = refimpl.apply(tiny_model("gpt2", hidden=48), "prompt_tuning", prompt_length=LENGTH)
    train_steps(source, tiny_batch("gpt2"), steps=2)
    refimpl.save_adapter(source, tmp_path)
    target = refimpl.apply(
        tiny_model("llama"), "prompt_projector", prompt_length=LENGTH, source_dim=48, init_from=str(tmp_path)
    )
    assert torch.equal(target.prompt_projector.source_prompt, source.soft_prompt.embedding)
    assert {n for n, p in target.named_parameters() if p.requires_grad} == {
        f"prompt_projector.project.{i}.{kind}" for i in (0, 2) for kind in ("weight", "bias")
    }
    losses = train_steps(target, tiny_batch("llama"), steps=8)
    assert losses[-1] < losses[0]
    assert torch.equal(target.prompt_projector.source_prompt, source.soft_prompt.embedding)  # stays fixed


def test_distance_objective_pulls_the_projection_onto_a_target_prompt():
    model = refimpl.apply(tiny_model("gpt2"), "prompt_projector", prompt_length=LENGTH, source_dim=16)
    set_source_prompt(model, torch.randn(LENGTH, 16, generator=torch.Generator().manual_seed(0)))
    goal = torch.randn(LENGTH, 32, generator=torch.Generator().manual_seed(1))
    optimizer = torch.optim.Adam(model.prompt_projector.project.parameters(), lr=1e-2)
    first = distance_loss(model, goal).item()
    for _ in range(200):
        optimizer.zero_grad()
        distance_loss(model, goal).backward()
        optimizer.step()
    assert distance_loss(model, goal).item() < 0.1 * first
    with pytest.raises(refimpl.RefimplError, match="shape"):
        set_source_prompt(model, torch.zeros(LENGTH, 32))
