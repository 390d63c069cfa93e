"""Short optimisation runs a method makes on its own parameters before the task's training (PPT pre-trains its
prompt, AutoPrompt fits its label classifier before searching triggers)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from .errors import RefimplError


def optimise(
    model: nn.Module,
    parameters: Iterable[nn.Parameter],
    batches: Iterable[Mapping[str, torch.Tensor]],
    steps: int,
    lr: float,
    dropout: bool = True,
) -> list[float]:
    """`steps` AdamW steps (no weight decay) on `parameters` alone, cycling through `batches`, on the loss the model
    computes from each; with dropout on (training mode) or off. Returns the losses; leaves the model in eval mode."""
    cycle = list(batches)
    if not cycle or steps <= 0:
        raise RefimplError("optimise needs at least one batch and steps > 0")
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=0.0, fused=True)
    model.train(dropout)
    losses = []
    for step in range(steps):
        optimizer.zero_grad()
        loss = model(**cycle[step % len(cycle)]).loss
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return losses
