"""Fixtures for the refimpl suites: tiny models, their batches, and one training loop."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from torch import nn
from transformers.utils import logging

from refimpl.core.registry import TaskData
from refimpl.models import TINY_MODELS, Batch, tiny_model
from refimpl.tasks.base import model_loss, training_step

logging.set_verbosity_error()
torch.set_num_threads(1)  # pytest-xdist runs one worker per core


def tiny_batch(model_type: str, seed: int = 0, batch: int = 4, **shape: int) -> Batch:
    """A fixed random batch (inputs and training target) that the tiny model can fit in a few steps;
    `shape` passes sizes such as `length` to the model's batch maker."""
    return TINY_MODELS[model_type].batch(seed, batch, **shape)


def train_steps(
    model: nn.Module,
    batch: Batch,
    steps: int,
    lr: float = 1e-2,
    loss: Callable[[nn.Module, Batch], torch.Tensor] = model_loss,
) -> list[float]:
    """`steps` steps of the project's training loop on one batch: AdamW, with the method's training callback."""
    step = training_step(model, lr, loss)
    losses = [step(batch)[0] for _ in range(steps)]
    model.eval()
    return losses


def task_data(
    batches: list[Batch] = (),
    fine_tuned: Callable[[], nn.Module] | None = None,
    source_batches: list[Batch] | None = None,
) -> TaskData:
    """Task data over fixed batches for a method's `prepare`; a part the test does not give fails if used."""

    def missing(*_: object) -> Any:
        raise AssertionError("prepare used task data the test did not give")

    return TaskData(
        batches=lambda: iter(batches),
        loss=model_loss,
        fine_tuned=fine_tuned or missing,
        source_batches=lambda: None if source_batches is None else iter(source_batches),
    )


@pytest.fixture
def batch_for():
    return tiny_batch


@pytest.fixture
def fresh():
    """A factory for a freshly seeded tiny model: two calls give bit-identical base weights."""
    return lambda model_type, **kwargs: tiny_model(model_type, **kwargs)


@contextmanager
def private_cache(
    tmp_path_factory: pytest.TempPathFactory, pretrain: dict[str, Any] | None = None
) -> Iterator[None]:
    """A fresh REFIMPL_CACHE, so tests also cover building what it holds, and (given a task's PRETRAIN) a
    two-step pre-training, so building it takes seconds."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REFIMPL_CACHE", str(tmp_path_factory.mktemp("cache")))
        if pretrain is not None:
            patch.setitem(pretrain, "steps", 2)
        yield
