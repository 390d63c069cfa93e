"""AdapterFusion — Pfeiffer, Kamath, Rücklé, Cho and Gurevych, "AdapterFusion: Non-Destructive Task
Composition for Transfer Learning", EACL 2021 (catalogue: adapterfusion).

    z_n = h + A_n(h)  (N frozen task adapters after the FFN),  s = softmax_n((Q h)·(K z_n)),  o = Σ s_n V z_n

Stage 1 trains one adapter per task (e.g. with `mad_x`'s task stage); stage 2, implemented here, freezes the
model and all N adapters and learns, in every block, the fusion attention Q, K, V (and the task head). V
starts as the identity, so the fused output starts as a convex combination of the adapters' outputs. The
adapters start random: copy the stage-1 weights into `task_adapters(model, task)` before training the fusion.
The key projection has no bias: a bias on K adds the same score to every adapter and cancels in the softmax.
"""

from __future__ import annotations

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

    def adapter_outputs(self, h: torch.Tensor) -> torch.Tensor:
        return torch.stack([h + adapter(h) for adapter in self.adapters.values()], dim=-2)

    def forward(self, *args: object, **kwargs: object) -> torch.Tensor:
        h = self.base(*args, **kwargs)
        return self.fusion(h, self.adapter_outputs(h))


class AdapterFusionOptions(MethodOptions):
    tasks: tuple[AdapterName, ...] = Field(
        ("task_a", "task_b", "task_c"), min_length=1, description="names of the N stage-1 task adapters"
    )
    reduction_factor: int = Field(16, gt=0, description="hidden / bottleneck of each task adapter")
    activation: str = Field(
        "relu", description="non-linearity of the task adapters (a transformers ACT2FN name)"
    )
    init: Init = Field("near_identity", description="initialisation of the (frozen) task adapters")
    train_head: bool = Field(True, description="also train the task head")

    @model_validator(mode="after")
    def _distinct_tasks(self) -> AdapterFusionOptions:
        if len(set(self.tasks)) < len(self.tasks):
            raise ValueError(f"tasks {list(self.tasks)} repeat a name")
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
    trainable = "the fusion query, key and value projections of every block, and the task head"
    Options = AdapterFusionOptions

    def inject(self, model: nn.Module, options: AdapterFusionOptions) -> None:
        like, d = next(model.parameters()), hidden_size(model)
        size = max(1, d // options.reduction_factor)
        for name, module in block_sublayers(model, "ffn_output"):
            adapters = nn.ModuleDict(
                {task: Bottleneck(d, size, options.activation, options.init, like) for task in options.tasks}
            )
            adapters.requires_grad_(False)  # trained in stage 1
            replace_module(model, name, FusedAdapters(module, adapters, FusionAttention(d, like)))
        if options.train_head:
            for parameter in task_head_parameters(model):
                parameter.requires_grad_(True)

    def expected_trainable(self, model: nn.Module, options: AdapterFusionOptions) -> int:
        fusion = len(transformer_blocks(model)) * FusionAttention.parameter_count(hidden_size(model))
        head = sum(p.numel() for p in task_head_parameters(model)) if options.train_head else 0
        return fusion + head
