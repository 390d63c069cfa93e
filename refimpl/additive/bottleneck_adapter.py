"""Bottleneck adapter — Houlsby et al., "Parameter-Efficient Transfer Learning for NLP", ICML 2019
(catalogue: houlsby-adapter).

    h ← h + W_up σ(W_down h),   W_down ∈ R^{m×d}, W_up ∈ R^{d×m}, inserted after attention and after the FFN

Trainable: two adapters per block (2·(2dm + m + d) each block), the blocks' layer norms and the task head, as in
the paper. `init="near_identity"` draws both projections from N(0, 10⁻²) like the paper; `init="zeros"` zeroes
W_up so the adapted model starts exactly at the base model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from pydantic import Field
from torch import nn
from transformers.activations import ACT2FN

from ..core.api import replace_module
from ..core.architectures import architecture_of, block_sublayers, hidden_size, transformer_blocks
from ..core.layers import SerialAdapter
from ..core.registry import Method, MethodOptions, register
from ..core.targeting import task_head_parameters

Init = Literal["near_identity", "zeros"]


class Bottleneck(nn.Module):
    """down-project, non-linearity, up-project: the adapter body shared by the adapter family."""

    def __init__(
        self,
        hidden: int,
        size: int,
        activation: str = "relu",
        init: Init = "near_identity",
        like: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        factory = {"dtype": like.dtype, "device": like.device} if like is not None else {}
        self.down = nn.Linear(hidden, size, **factory)
        self.up = nn.Linear(size, hidden, **factory)
        self.activation = ACT2FN[activation]
        nn.init.normal_(self.down.weight, std=1e-2)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.bias)
        if init == "zeros":
            nn.init.zeros_(self.up.weight)
        else:
            nn.init.normal_(self.up.weight, std=1e-2)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.up(self.activation(self.down(h)))

    @staticmethod
    def parameter_count(hidden: int, size: int) -> int:
        return 2 * hidden * size + size + hidden


class BottleneckOptions(MethodOptions):
    adapter_size: int = Field(16, gt=0, description="bottleneck dimension m")
    activation: str = Field("relu", description="non-linearity σ (a transformers ACT2FN name)")
    init: Init = Field(
        "near_identity", description="paper's N(0, 1e-2) init, or zero W_up for an exact identity"
    )
    train_layer_norms: bool = Field(
        True, description="also train the blocks' layer norms (as the paper does)"
    )
    train_head: bool = Field(True, description="also train the task head")


def insert_adapters(
    model: nn.Module, positions: tuple[str, ...], make: Callable[[], nn.Module]
) -> list[SerialAdapter]:
    """Wrap the sub-layer at each position ("attention_output", "ffn_output") of every block in a SerialAdapter."""
    wrapped = []
    for name, module in block_sublayers(model, *positions):
        wrapped.append(SerialAdapter(module, make()))
        replace_module(model, name, wrapped[-1])
    return wrapped


def unfreeze_norms_and_head(model: nn.Module, norms: bool, head: bool) -> int:
    """Unfreeze block layer norms and/or the task head; returns how many parameters that adds."""
    modules = [module for _, module in block_sublayers(model, "layer_norms")] if norms else []
    parameters = [p for module in modules for p in module.parameters()]
    if head:
        parameters += task_head_parameters(model)
    for parameter in parameters:
        parameter.requires_grad_(True)
    return sum(p.numel() for p in parameters)


@register
class BottleneckAdapter(Method):
    name = "bottleneck_adapter"
    category = "additive"
    foundation_models = ("LLM",)
    papers = ("houlsby-adapter",)
    summary = (
        "Insert a small down-up bottleneck MLP with a skip connection after attention and after the FFN."
    )
    update_rule = "h ← h + W_up σ(W_down h)  (after attention and after the FFN of every block)"
    trainable = "the adapters, the blocks' layer norms and the task head"
    Options = BottleneckOptions

    def inject(self, model: nn.Module, options: BottleneckOptions) -> None:
        like = next(model.parameters())
        insert_adapters(
            model,
            ("attention_output", "ffn_output"),
            lambda: Bottleneck(
                hidden_size(model), options.adapter_size, options.activation, options.init, like
            ),
        )
        unfreeze_norms_and_head(model, options.train_layer_norms, options.train_head)

    def expected_trainable(self, model: nn.Module, options: BottleneckOptions) -> int:
        d, blocks = hidden_size(model), len(transformer_blocks(model))
        adapters = blocks * 2 * Bottleneck.parameter_count(d, options.adapter_size)
        norms = blocks * len(architecture_of(model).layer_norms) * 2 * d if options.train_layer_norms else 0
        if options.train_layer_norms and model.config.model_type == "llama":
            norms //= 2  # RMSNorm has a scale but no bias
        head = sum(p.numel() for p in task_head_parameters(model)) if options.train_head else 0
        return adapters + norms + head
