"""AutoFreeze — Liu et al., "AutoFreeze: Automatically Freezing Model Blocks to Accelerate Fine-tuning",
arXiv 2021 (catalogue: autofreeze).

    every N steps, for each block l:  r_l = | ‖g_l‖ − ‖g_l‖_prev | / ‖g_l‖_prev   (g_l: block l's gradient, summed
    over the last N steps);  freeze the leading blocks whose r_l ≤ the p-th percentile of r over the unfrozen blocks

AutoFreeze is full fine-tuning with a freezing schedule: `apply` makes every parameter trainable (so the trainable
count is the whole model and the pretrained weights themselves change), and the schedule is the method's training
callback: `refimpl.training_callback(model)` (an `AutoFreezeCallback`), called after each `loss.backward()` and
before `optimizer.step()`, freezes blocks front to back once their gradients have stopped changing, so backward
passes stop earlier. The task loop (`run`, `bench`) calls it; a loop of your own must too. A frozen block gets no
gradient and stays bit-identical from then on. Defaults: the median (p = 50), which the paper found to agree with
its slower SVCCA-based test; the check interval N = 10 is ours, short enough that the shipped tasks' runs of
60-150 steps reach several checks. Simplifications: the last block is never frozen, and the embeddings and head
keep training (the paper also caches frozen blocks' activations, which we do not).
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from ..core.architectures import named_blocks
from ..core.errors import RefimplError
from ..core.registry import Method, MethodOptions, TrainingCallback, register


class AutoFreezeOptions(MethodOptions):
    interval: int = Field(10, ge=1, description="N: steps between freezing checks (ours)")
    percentile: float = Field(50.0, ge=0, le=100, description="p: freeze blocks at or under this percentile")


def blocks_to_freeze(changes: list[float], frozen: int, percentile: float) -> int:
    """How many leading blocks are frozen after a check: from block `frozen` on, freeze while the block's gradient
    change is at most the `percentile`-th percentile of the unfrozen blocks' changes; never the last block."""
    active = torch.tensor(changes[frozen:])
    threshold = torch.quantile(active, percentile / 100).item()
    while frozen < len(changes) - 1 and changes[frozen] <= threshold:
        frozen += 1
    return frozen


class AutoFreezeCallback:
    """Tracks per-block gradient norms and freezes blocks front to back (see the module docstring)."""

    def __init__(self, model: nn.Module, interval: int, percentile: float) -> None:
        if interval < 1 or not 0 <= percentile <= 100:
            raise RefimplError("AutoFreezeCallback: interval must be ≥ 1 and percentile in [0, 100]")
        self.blocks = list(named_blocks(model)[1])
        self.interval, self.percentile = interval, percentile
        self.frozen = 0
        self.steps = 0
        self.accumulated = [0.0] * len(self.blocks)
        self.previous: list[float] | None = None

    def step(self) -> int:
        """Record this step's gradients; every `interval` steps, maybe freeze. Returns the frozen-block count."""
        for index in range(self.frozen, len(self.blocks)):
            grads = [p.grad for p in self.blocks[index].parameters() if p.grad is not None]
            norms = [torch.linalg.vector_norm(grad, dtype=torch.float32) for grad in grads]  # one pass each
            self.accumulated[index] += torch.linalg.vector_norm(torch.stack(norms)).item() if norms else 0.0
        self.steps += 1
        if self.steps % self.interval == 0:
            if self.previous is not None:
                changes = [
                    abs(now - before) / max(before, 1e-12)
                    for now, before in zip(self.accumulated, self.previous)
                ]
                self._freeze_up_to(blocks_to_freeze(changes, self.frozen, self.percentile))
            self.previous, self.accumulated = self.accumulated, [0.0] * len(self.blocks)
        return self.frozen

    def _freeze_up_to(self, count: int) -> None:
        for block in self.blocks[self.frozen : count]:
            for parameter in block.parameters():
                parameter.requires_grad_(False)
                parameter.grad = None  # so the coming optimizer step skips it
        self.frozen = count


@register
class AutoFreeze(Method):
    name = "autofreeze"
    category = "selective"
    foundation_models = ("LLM",)
    papers = ("autofreeze",)
    summary = "Full fine-tuning that freezes blocks front to back once their gradient norms stop changing."
    update_rule = (
        "θ ← θ − η∇θ for unfrozen blocks; freeze block l when its gradient-norm change ≤ p-th percentile"
    )
    trainable = "every parameter at the start; blocks drop out front to back (its training callback)"
    identity_at_init = True
    Options = AutoFreezeOptions
    trains_pretrained_weights = True

    def inject(self, model: nn.Module, options: AutoFreezeOptions) -> None:
        for parameter in model.parameters():
            parameter.requires_grad_(True)

    def training_callback(self, model: nn.Module, options: AutoFreezeOptions) -> TrainingCallback:
        return TrainingCallback(
            after_backward=AutoFreezeCallback(model, options.interval, options.percentile).step
        )

    def expected_trainable(self, model: nn.Module, options: AutoFreezeOptions) -> int:
        return sum(p.numel() for p in model.parameters())
