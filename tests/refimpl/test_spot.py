"""SPoT: a source task's trained prompt initialises the target prompt; prompts rank source tasks by similarity."""

from __future__ import annotations

import pytest
import torch

import refimpl
from refimpl.models import tiny_model
from refimpl.prompt.spot import rank_sources, task_similarity

from .conftest import tiny_batch, train_steps

LENGTH = 6


def test_target_prompt_starts_from_the_trained_source_prompt(tmp_path):
    source = refimpl.apply(tiny_model("gpt2"), "prompt_tuning", prompt_length=LENGTH)
    train_steps(source, tiny_batch("gpt2", seed=1), steps=3)
    refimpl.save_adapter(source, tmp_path)
    target = refimpl.apply(tiny_model("gpt2"), "spot", prompt_length=LENGTH, init_from=str(tmp_path))
    assert torch.equal(target.soft_prompt.embedding, source.soft_prompt.embedding)
    batch = tiny_batch("gpt2")
    with torch.no_grad():
        assert torch.equal(target(**batch).logits, source(**batch).logits)


def test_similarity_scores_follow_the_papers_definitions():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 1.0], [2.0, 2.0]])
    assert task_similarity(a, b, "average_tokens") == pytest.approx(1.0)  # the means point the same way
    assert task_similarity(a, b, "per_token") == pytest.approx(2**-0.5)  # every token pair at 45 degrees
    assert task_similarity(a, -a, "average_tokens") == pytest.approx(-1.0)


def test_sources_are_ranked_most_similar_first():
    generator = torch.Generator().manual_seed(0)
    target = torch.randn(LENGTH, 8, generator=generator)
    sources = {
        "unrelated": torch.randn(LENGTH, 8, generator=generator),
        "near": target + 0.1 * torch.randn(LENGTH, 8, generator=generator),
        "opposite": -target,
    }
    for metric in ("average_tokens", "per_token"):
        assert [name for name, _ in rank_sources(target, sources, metric)][::2] == ["near", "opposite"]
