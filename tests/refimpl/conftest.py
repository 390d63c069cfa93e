"""Fixtures for the refimpl suites: tiny models, a tiny task, and one training loop."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers.utils import logging

from refimpl.models import tiny_model

logging.set_verbosity_error()
torch.set_num_threads(1)  # pytest-xdist runs one worker per core


def tiny_batch(model_type: str, seed: int = 0, batch: int = 4, length: int = 12) -> dict[str, torch.Tensor]:
    """A fixed random batch with labels the model can fit in a few steps."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, 128, (batch, length), generator=generator)
    labels = torch.randint(0, 2, (batch,), generator=generator) if model_type == "bert" else input_ids.clone()
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}


def train_steps(
    model: nn.Module, batch: dict[str, torch.Tensor], steps: int, lr: float = 1e-2
) -> list[float]:
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.0)
    model.train()
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return losses


@pytest.fixture
def batch_for():
    return tiny_batch


@pytest.fixture
def fresh():
    """A factory for a freshly seeded tiny model: two calls give bit-identical base weights."""
    return lambda model_type, **kwargs: tiny_model(model_type, **kwargs)
