"""IncreLoRA — Zhang et al., "IncreLoRA: Incremental Parameter Allocation Method for Parameter-Efficient
Fine-tuning", arXiv 2023 (catalogue: increlora).

    h = W0 x + s · B diag(λ ⊙ m) A x,   m ∈ {0,1}^{r_max} marks the active rank-1 components (p_i, λ_i, q_i)

Each layer starts with `r` active components and gains more during training: every `interval` steps the layers whose
update matters most, by the importance score of AdaLoRA (|θ · ∂L/∂θ| averaged over the layer's active entries and
smoothed with an exponential moving average), each get one new component, until a total budget is spent. A new
component starts with λ_i = 0, so the model's output is unchanged at the moment of growth.

Trainable: A (r_max × in), λ (r_max) and B (out × r_max); inactive components are masked out of the forward pass, get
zero gradients and stay untouched, and the count is that of the active ones, r · (in + out + 1) per layer, as the paper
counts. Storage is allocated up to `max_rank` so the optimiser and the adapter file keep fixed shapes; the mask m is
a persistent buffer, so a saved adapter keeps its grown ranks.

Growth runs in the method's training callback (`refimpl.training_callback(model)`, which the task loop calls; an
`IncreLoRAScheduler(model, interval, budget)` whose `step()` runs after `loss.backward()` and before the gradients
are cleared): by default one component every 10 steps (ours) until every layer is at `max_rank`. Simplified: no
orthogonality regulariser on A and B (AdaLoRA's) and no warm-up of new components; the scale s = alpha / max_rank
stays fixed as ranks grow.
"""

from __future__ import annotations

import torch
from pydantic import Field, model_validator
from torch import nn

from ..core.api import replace_module
from ..core.errors import RefimplError
from ..core.layers import new_parameter
from ..core.registry import Method, TrainingCallback, register
from ..core.targeting import linear_dims
from .lora import LoRALinear, LoRAOptions, lora_targets


class IncreLoRALinear(LoRALinear):
    """A LoRA layer of rank max_rank whose components are gated by λ ⊙ m; B is random since λ = 0 starts ΔW at 0."""

    def __init__(self, base: nn.Module, r: int, max_rank: int, alpha: float, dropout: float = 0.0) -> None:
        super().__init__(base, max_rank, alpha, dropout)  # scaling alpha / max_rank
        nn.init.normal_(self.lora_B, std=0.02)
        self.lora_E = new_parameter(max_rank, like=base.weight, init="zeros")
        active = torch.zeros(max_rank, dtype=torch.bool, device=base.weight.device)
        active[:r] = True
        self.register_buffer("active", active)

    @property
    def rank(self) -> int:
        return int(self.active.sum())

    def gated_values(self) -> torch.Tensor:
        return self.lora_E * self.active.to(self.lora_E.dtype)

    def delta_weight(self) -> torch.Tensor:
        return (self.lora_B * self.gated_values()) @ self.lora_A * self.scaling

    def adapter_output(self, x: torch.Tensor) -> torch.Tensor:
        down = self.dropout(x) @ self.lora_A.T.to(x.dtype) * self.gated_values().to(x.dtype)
        return down @ self.lora_B.T.to(x.dtype) * self.scaling

    @torch.no_grad()
    def grow(self) -> None:
        """Activate the next rank-1 component, with λ = 0 so the output does not change."""
        if self.rank == self.active.numel():
            raise RefimplError(f"layer is already at max_rank {self.active.numel()}")
        index = self.rank
        self.lora_E[index] = 0
        self.active[index] = True

    def importance(self) -> torch.Tensor:
        """Mean |θ · ∂L/∂θ| over the active entries of A, λ and B (zero before the first backward pass)."""
        if self.lora_A.grad is None:
            return torch.zeros(())
        rows_a = (self.lora_A * self.lora_A.grad).abs()[self.active]
        values = (self.lora_E * self.lora_E.grad).abs()[self.active]
        columns_b = (self.lora_B * self.lora_B.grad).abs()[:, self.active]
        return torch.cat([rows_a.flatten(), values, columns_b.flatten()]).mean().float().cpu()


class IncreLoRAOptions(LoRAOptions):
    r: int = Field(1, gt=0, description="initial rank of every layer")
    max_rank: int = Field(8, gt=0, description="the most rank-1 components a layer can grow to")
    alpha: float = Field(8.0, gt=0, description="the update is scaled by alpha / max_rank")
    growth_interval: int = Field(10, gt=0, description="training steps between growths (ours)")
    growth_budget: int | None = Field(
        None, ge=0, description="rank-1 components added in all; None: until every layer is at max_rank"
    )

    @model_validator(mode="after")
    def _initial_rank_fits(self) -> IncreLoRAOptions:
        if self.r > self.max_rank:
            raise ValueError(f"r ({self.r}) must not exceed max_rank ({self.max_rank})")
        return self


class IncreLoRAScheduler:
    """Call `step()` once per training step, after `loss.backward()`: it updates the smoothed importance of every
    layer and, every `interval` steps, gives one new component to each of the `layers_per_growth` most important
    layers that still have room, until `budget` components have been added in total."""

    def __init__(
        self, model: nn.Module, interval: int, budget: int, beta: float = 0.85, layers_per_growth: int = 1
    ) -> None:
        self.layers = [m for m in model.modules() if isinstance(m, IncreLoRALinear)]
        if not self.layers:
            raise RefimplError(
                "IncreLoRAScheduler: the model has no increlora layers; apply 'increlora' first"
            )
        if interval <= 0 or budget < 0 or not 0 <= beta < 1 or layers_per_growth <= 0:
            raise RefimplError(
                "IncreLoRAScheduler: need interval > 0, budget >= 0, 0 <= beta < 1, layers_per_growth > 0"
            )
        self.interval, self.budget, self.beta, self.layers_per_growth = (
            interval,
            budget,
            beta,
            layers_per_growth,
        )
        self.scores = torch.zeros(len(self.layers))
        self.steps_taken = 0
        self.added = 0

    @torch.no_grad()
    def step(self) -> list[int]:
        """Returns the indices (into `self.layers`) of the layers that grew at this step."""
        current = torch.stack([layer.importance() for layer in self.layers])
        self.scores = self.beta * self.scores + (1 - self.beta) * current
        self.steps_taken += 1
        if self.steps_taken % self.interval:
            return []
        return self.grow()

    def grow(self) -> list[int]:
        room = [i for i, layer in enumerate(self.layers) if layer.rank < layer.active.numel()]
        count = min(self.layers_per_growth, self.budget - self.added, len(room))
        chosen = sorted(room, key=lambda i: -self.scores[i].item())[: max(count, 0)]
        for index in chosen:
            self.layers[index].grow()
        self.added += len(chosen)
        return chosen


@register
class IncreLoRA(Method):
    name = "increlora"
    category = "reparameterization"
    foundation_models = ("LLM",)
    papers = ("increlora",)
    summary = "LoRA whose per-layer rank grows during training where an importance score says it helps most."
    update_rule = "h = W0 x + (alpha/r_max) B diag(λ ⊙ m) A x,  m grows by importance; λ_new = 0"
    trainable = "the active rank-1 components (rows of A, entries of λ, columns of B) of each targeted layer"
    mergeable = True
    identity_at_init = True
    Options = IncreLoRAOptions

    def inject(self, model: nn.Module, options: IncreLoRAOptions) -> None:
        for name, module in lora_targets(model, options):
            layer = IncreLoRALinear(module, options.r, options.max_rank, options.alpha, options.dropout)
            replace_module(model, name, layer)

    def training_callback(self, model: nn.Module, options: IncreLoRAOptions) -> TrainingCallback:
        layers = sum(isinstance(m, IncreLoRALinear) for m in model.modules())
        budget = (
            (options.max_rank - options.r) * layers
            if options.growth_budget is None
            else options.growth_budget
        )
        return TrainingCallback(
            after_backward=IncreLoRAScheduler(model, options.growth_interval, budget).step
        )

    def expected_trainable(self, model: nn.Module, options: IncreLoRAOptions) -> int:
        return sum(options.r * (sum(linear_dims(module)) + 1) for _, module in lora_targets(model, options))

    def trainable_count(self, model: nn.Module) -> int:
        return sum(
            layer.rank * (layer.in_features + layer.out_features + 1)
            for layer in model.modules()
            if isinstance(layer, IncreLoRALinear)
        )
