"""Delta-LoRA — Zi, Qi, Wang, Wang, Wong, Zhang, "Delta-LoRA: Fine-Tuning High-Rank Parameters with the Delta of
Low-Rank Matrices", arXiv 2023 (catalogue: delta-lora).

    h = W x + (alpha / r) · B A x,   and after each optimiser step t > K:
    W ← W + λ · (alpha / r) · (B_{t+1} A_{t+1} − B_t A_t)

Trainable: A and B as in LoRA. W also moves, by the change of the low-rank product, which needs neither gradients
nor optimiser state for W. The paper drops LoRA's dropout so that the gradient of BA is the gradient of W; the
option is fixed at 0 here.

Where the change goes: the paper adds it to W in place. We keep the pretrained W0 bit-identical and accumulate the
same sum in a persistent buffer `accumulated_delta` (ΔW_acc, not trained) with W = W0 + ΔW_acc. The forward pass,
and therefore training, is the same, since W0 x + ΔW_acc x = (W0 + ΔW_acc) x; what changes is bookkeeping:
the adapter file carries ΔW_acc (a full out × in matrix per layer, which Delta-LoRA needs by design), merging folds
W0 + ΔW_acc + (alpha/r) BA, and `remove` gives back the untouched W0.

The update runs in the method's training callback (`refimpl.training_callback(model)`, which the task loop calls: a
`DeltaLoRAUpdater(model, lambda_, start_step)` whose `step()` runs right after `optimizer.step()`). λ
(`update_ratio`) and K (`start_step`) default to 2 and 500: our choice in the range the paper explores, not values
checked against its hyper-parameter tables.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..core.api import state_of
from ..core.errors import RefimplError
from ..core.registry import Method, TrainingCallback, register
from .lora import LoRALinear, LoRAOptions, inject_lora_layers, lora_parameter_count


class DeltaLoRALinear(LoRALinear):
    def __init__(self, base: nn.Module, r: int, alpha: float, dropout: float = 0.0) -> None:
        super().__init__(base, r, alpha, dropout)
        delta = torch.zeros(
            self.out_features, self.in_features, dtype=self.lora_A.dtype, device=self.lora_A.device
        )
        self.register_buffer("accumulated_delta", delta)

    def low_rank_update(self) -> torch.Tensor:
        return super().delta_weight()

    def delta_weight(self) -> torch.Tensor:
        return self.accumulated_delta + self.low_rank_update()

    def adapter_output(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.accumulated_delta.to(x.dtype)) + super().adapter_output(x)


class DeltaLoRAOptions(LoRAOptions):
    dropout: float = Field(
        0.0, ge=0, le=0, description="fixed at 0: the paper removes dropout from the LoRA path"
    )
    update_ratio: float = Field(
        2.0, ge=0, description="λ: how much of the change of (alpha/r)·BA goes into W"
    )
    start_step: int = Field(500, ge=0, description="K: W is updated only after optimiser step K")


class DeltaLoRAUpdater:
    """Call `step()` after every `optimizer.step()`: adds λ · Δ((alpha/r)·BA) to each layer's accumulated delta.

    `lambda_` and `start_step` default to the model's `update_ratio` and `start_step` options."""

    def __init__(self, model: nn.Module, lambda_: float | None = None, start_step: int | None = None) -> None:
        options = state_of(model).options
        self.layers = [m for m in model.modules() if isinstance(m, DeltaLoRALinear)]
        if not self.layers:
            raise RefimplError(
                "DeltaLoRAUpdater: the model has no delta_lora layers; apply 'delta_lora' first"
            )
        self.lambda_ = options.update_ratio if lambda_ is None else lambda_
        self.start_step = options.start_step if start_step is None else start_step
        self.steps_taken = 0
        self.previous = self._updates()

    @torch.no_grad()
    def _updates(self) -> list[torch.Tensor]:
        return [layer.low_rank_update().detach().clone() for layer in self.layers]

    @torch.no_grad()
    def step(self) -> None:
        current = self._updates()
        if self.steps_taken > self.start_step:  # the paper's "if t > K", t counted from 0
            for layer, before, after in zip(self.layers, self.previous, current, strict=True):
                layer.accumulated_delta.add_(after - before, alpha=self.lambda_)
        self.previous = current
        self.steps_taken += 1


@register
class DeltaLoRA(Method):
    name = "delta_lora"
    category = "reparameterization"
    foundation_models = ("LLM",)
    papers = ("delta-lora",)
    summary = "LoRA whose frozen weight also moves by the step-to-step change of the low-rank product."
    update_rule = (
        "h = (W0 + ΔW_acc) x + (alpha/r) B A x;  ΔW_acc += λ·(alpha/r)·(B'A' − BA) after each step > K"
    )
    trainable = "lora_A (r × in) and lora_B (out × r); ΔW_acc follows them through DeltaLoRAUpdater"
    mergeable = True
    identity_at_init = True
    Options = DeltaLoRAOptions

    def inject(self, model: nn.Module, options: DeltaLoRAOptions) -> None:
        inject_lora_layers(model, options, DeltaLoRALinear)

    def training_callback(self, model: nn.Module, options: DeltaLoRAOptions) -> TrainingCallback:
        return TrainingCallback(after_step=DeltaLoRAUpdater(model).step)

    def expected_trainable(self, model: nn.Module, options: DeltaLoRAOptions) -> int:
        return lora_parameter_count(model, options)
