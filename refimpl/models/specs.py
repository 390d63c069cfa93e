"""What a tiny model needs besides its weights to be trained and compared in tests, tasks and benchmarks:
a batch maker, how its loss is computed, and which output field to compare.

One record per model type, so the generic property suite, `refimpl run` and the benchmarks treat text encoders,
decoders, vision transformers, CLIP and diffusion UNets the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

Batch = dict[str, Any]


@dataclass(frozen=True)
class TinyModelSpec:
    build: Callable[..., nn.Module]
    make_batch: Callable[..., Batch]  # (generator, batch size, **sizes) -> inputs and training target
    output_field: str = "logits"
    regression_target: str | None = None  # a batch key compared with the output by MSE (diffusion: the noise)

    def batch(self, seed: int = 0, size: int = 4, **sizes: int) -> Batch:
        return self.make_batch(torch.Generator().manual_seed(seed), size, **sizes)

    def inputs(self, batch: Batch) -> Batch:
        """The batch without its training target, for a plain forward pass."""
        return {k: v for k, v in batch.items() if k not in ("labels", "return_loss", self.regression_target)}

    def output(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return getattr(model(**self.inputs(batch)), self.output_field)

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        if self.regression_target is not None:
            return F.mse_loss(self.output(model, batch), batch[self.regression_target])
        return model(**batch).loss
