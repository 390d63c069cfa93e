"""AdapterFusion — Pfeiffer, Kamath, Rücklé, Cho and Gurevych, "AdapterFusion: Non-Destructive Task
Composition for Transfer Learning", EACL 2021 (catalogue: adapterfusion).

    z_n = h + A_n(h)  (N frozen task adapters after the FFN),  s = softmax_n((Q h)·(K z_n)),  o = Σ s_n V z_n

Both stages live in one adapted model. Stage 1 (`train="adapters"`) trains each task's adapter alone, one
`active_task` at a time (h ← h + A_n(h)); stage 2 (`train="fusion"`, the default) freezes the model and all N
adapters and learns, in every block, the fusion attention Q, K, V. Switch with `adapter_common.activate`, e.g.
`activate(model, active_task="task_b")`, then `activate(model, train="fusion")`; adapters trained elsewhere can be
copied into `task_adapters(model, task)`. The task head trains in both stages (one head: per-task heads are left
to the user). V starts as the identity, so the fused output starts as a convex combination of the adapters'
outputs. The key projection has no bias: a bias on K adds the same score to every adapter and cancels in the
softmax.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from ..core.api import replace_module
from ..core.architectures import block_sublayers, hidden_size, transformer_blocks
from ..core.layers import AdapterLayer
from ..core.registry import Method, MethodOptions, register
from ..core.targeting import task_head_parameters
from .bottleneck_adapter import Bottleneck, Init
from .mad_x import AdapterName


class FusionAttention(nn.Module):
    def __init__(self, hidden: int, like: torch.Tensor) -> None:
        super().__init__()
        factory = {"dtype": like.dtype, "device": like.device}
        self.query = nn.Linear(hidden, hidden, **factory)
        self.key = nn.Linear(hidden, hidden, bias=False, **factory)
        self.value = nn.Linear(hidden, hidden, **factory)
        for projection in (self.query, self.key):
            nn.init.normal_(projection.weight, std=0.02)
        nn.init.zeros_(self.query.bias)
        with torch.no_grad():
            self.value.weight.copy_(torch.eye(hidden))
            self.value.bias.zero_()

    def weights(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Attention of each position over the N adapter outputs z (..., N, d): (..., N), summing to 1."""
        scores = (self.query(h).unsqueeze(-2) * self.key(z)).sum(-1)
        return scores.softmax(dim=-1)

    def forward(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return (self.weights(h, z).unsqueeze(-1) * self.value(z)).sum(-2)

    @staticmethod
    def parameter_count(hidden: int) -> int:
        return 3 * hidden * hidden + 2 * hidden


class FusedAdapters(AdapterLayer):
    """Runs a sub-layer, every task adapter on its output (with the skip), and fuses the results."""

    def __init__(self, base: nn.Module, adapters: nn.ModuleDict, fusion: FusionAttention) -> None:
        super().__init__()
        self.base = base
        self.adapters = adapters
        self.fusion = fusion
        self.single: str | None = None  # stage 1: the one task adapter that runs, without fusion

    def adapter_outputs(self, h: torch.Tensor) -> torch.Tensor:
        return torch.stack([h + adapter(h) for adapter in self.adapters.values()], dim=-2)

    def forward(self, *args: object, **kwargs: object) -> torch.Tensor:
        h = self.base(*args, **kwargs)
        if self.single is not None:
            return h + self.adapters[self.single](h)
        return self.fusion(h, self.adapter_outputs(h))


class AdapterFusionOptions(MethodOptions):
    tasks: tuple[AdapterName, ...] = Field(
        ("task_a", "task_b", "task_c"), min_length=1, description="names of the N stage-1 task adapters"
    )
    reduction_factor: int = Field(16, gt=0, description="hidden / bottleneck of each task adapter")
    activation: str = Field(
        "relu", description="non-linearity of the task adapters (a transformers ACT2FN name)"
    )
    init: Init = Field("near_identity", description="initialisation of the task adapters")
    train: Literal["adapters", "fusion"] = Field(
        "fusion", description="stage 1: train the active task's adapter alone; stage 2: train the fusion"
    )
    active_task: AdapterName | None = Field(
        None, description="stage 1: the task adapter that trains and runs"
    )
    train_head: bool = Field(True, description="also train the task head")

    @model_validator(mode="after")
    def _consistent_tasks(self) -> AdapterFusionOptions:
        if len(set(self.tasks)) < len(self.tasks):
            raise ValueError(f"tasks {list(self.tasks)} repeat a name")
        if self.train == "adapters" and self.active_task not in self.tasks:
            raise ValueError(f"train='adapters' needs an active_task among tasks {list(self.tasks)}")
        return self


def task_adapters(model: nn.Module, task: str) -> list[Bottleneck]:
    """The adapter of `task` in every block, to load stage-1 weights into."""
    return [module.adapters[task] for module in model.modules() if isinstance(module, FusedAdapters)]


@register
class AdapterFusion(Method):
    name = "adapter_fusion"
    category = "additive"
    foundation_models = ("LLM",)
    papers = ("adapterfusion",)
    summary = "Combine N frozen task adapters in every block with a learned attention over their outputs."
    update_rule = "o = Σ_n softmax_n((Q h)·(K z_n)) V z_n,  z_n = h + A_n(h)  (after the FFN)"
    trainable = "stage 2: the fusion Q, K, V of every block (stage 1: one task adapter); and the task head"
    Options = AdapterFusionOptions
    switchable = ("train", "active_task", "train_head")

    def inject(self, model: nn.Module, options: AdapterFusionOptions) -> None:
        like, d = next(model.parameters()), hidden_size(model)
        size = max(1, d // options.reduction_factor)
        for name, module in block_sublayers(model, "ffn_output"):
            adapters = nn.ModuleDict(
                {task: Bottleneck(d, size, options.activation, options.init, like) for task in options.tasks}
            )
            replace_module(model, name, FusedAdapters(module, adapters, FusionAttention(d, like)))
        self.set_active(model, options)

    def set_active(self, model: nn.Module, options: AdapterFusionOptions) -> None:
        """Run and train either the active task's adapter alone (stage 1) or the fusion (stage 2)."""
        for layer in model.modules():
            if isinstance(layer, FusedAdapters):
                layer.requires_grad_(False)
                layer.single = options.active_task if options.train == "adapters" else None
                trained = layer.adapters[layer.single] if layer.single else layer.fusion
                trained.requires_grad_(True)
        for parameter in task_head_parameters(model):
            parameter.requires_grad_(options.train_head)

    def expected_trainable(self, model: nn.Module, options: AdapterFusionOptions) -> int:
        d = hidden_size(model)
        if options.train == "adapters":
            per_block = Bottleneck.parameter_count(d, max(1, d // options.reduction_factor))
        else:
            per_block = FusionAttention.parameter_count(d)
        head = sum(p.numel() for p in task_head_parameters(model)) if options.train_head else 0
        return len(transformer_blocks(model)) * per_block + head
