"""S4 — Chen et al., "Parameter-Efficient Fine-Tuning Design Spaces", ICLR 2023 (catalogue: s4).

    layers → groups G1..G4 in a spindle pattern (sizes ∝ 1 : 2 : 2 : 1),  every group tuned,
    group g adapted with its own set of strategies from {Adapter (A), Prefix (P), BitFit (B), LoRA (L)}

The paper searches a design space (layer grouping, parameter allocation, tunable groups, strategy assignment)
and finds: spindle grouping, trainable parameters spread uniformly over layers, all groups tuned, and different
strategies per group. This module implements the resulting S4 model, with the grouping and the assignment as
options (data), built from the existing methods' pieces: Houlsby's bottleneck adapter after the FFN, LoRA on the
query and value projections, BitFit's bias terms.

Choices: uniform allocation is read as the same adapter size / LoRA rank / prefix length in every layer that
uses the strategy. Layer l of L belongs to the group whose share of the spindle weights covers (l + ½)/L, so a
2-layer model has only the middle groups G2 and G3. The default assignment — G1 (A, L), G2 (A, P), G3 (A, P, L),
G4 (A, P, B, L) — follows our project brief's reading of the paper's S4-model; we could not check it against the
paper text in our sources. Prefix is not yet among the strategies: the shared prefix mechanism
(`refimpl.prompt.prefix_tuning.add_attention_prefix`) adds a prefix to every layer, and S4 needs it in some groups
only, so "prefix" is refused and left out of the default groups for now. The task head is trained too.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from itertools import accumulate
from typing import Literal

from pydantic import Field, field_validator, model_validator
from torch import nn

from ..additive.bottleneck_adapter import Bottleneck, Init
from ..core.api import replace_module
from ..core.architectures import architecture_of, hidden_size, named_blocks, projection_names
from ..core.layers import SerialAdapter
from ..core.registry import Method, MethodOptions, register
from ..core.targeting import linear_dims, task_head_parameters
from ..reparameterization.lora import LoRALinear

Strategy = Literal["adapter", "bitfit", "lora"]
DEFAULT_GROUPS: tuple[tuple[Strategy, ...], ...] = (
    ("adapter", "lora"),
    ("adapter",),
    ("adapter", "lora"),
    ("adapter", "bitfit", "lora"),
)


class S4Options(MethodOptions):
    group_weights: tuple[float, ...] = Field(
        (1, 2, 2, 1), description="relative group sizes over the depth: spindle = small ends, large middle"
    )
    group_strategies: tuple[tuple[Strategy, ...], ...] = Field(
        DEFAULT_GROUPS, description="the strategies of each group, first group nearest the input"
    )
    adapter_size: int = Field(16, gt=0, description="bottleneck dimension of every adapter")
    adapter_init: Init = Field("near_identity", description="adapter initialisation (see bottleneck_adapter)")
    r: int = Field(8, gt=0, description="LoRA rank in every LoRA layer")
    alpha: float = Field(16.0, gt=0, description="LoRA scaling numerator (update × alpha / r)")
    train_head: bool = Field(True, description="also train the task head")

    @field_validator("group_weights")
    @classmethod
    def _positive(cls, weights: tuple[float, ...]) -> tuple[float, ...]:
        if not weights or min(weights) <= 0:
            raise ValueError("group weights must be positive, one per group")
        return weights

    @model_validator(mode="after")
    def _one_strategy_set_per_group(self) -> S4Options:
        if len(self.group_strategies) != len(self.group_weights):
            raise ValueError(
                f"group_strategies has {len(self.group_strategies)} groups, group_weights {len(self.group_weights)}"
            )
        return self


def layer_groups(layers: int, weights: Sequence[float]) -> list[list[int]]:
    """The layer indices of each group: layer l goes to the group whose share of the depth covers (l + ½)/L."""
    total = sum(weights)
    bounds = [edge / total for edge in accumulate(weights)][:-1]
    groups: list[list[int]] = [[] for _ in weights]
    for layer in range(layers):
        groups[bisect.bisect_right(bounds, (layer + 0.5) / layers)].append(layer)
    return groups


def _sublayer(model: nn.Module, layer: int, suffix: str) -> tuple[str, nn.Module]:
    blocks_name, blocks = named_blocks(model)
    return f"{blocks_name}.{layer}.{suffix}", blocks[layer].get_submodule(suffix)


def _add_adapter(model: nn.Module, layer: int, options: S4Options) -> None:
    name, ffn_output = _sublayer(model, layer, architecture_of(model).ffn_output)
    like = ffn_output.weight
    adapter = Bottleneck(hidden_size(model), options.adapter_size, init=options.adapter_init, like=like)
    replace_module(model, name, SerialAdapter(ffn_output, adapter))


def _add_lora(model: nn.Module, layer: int, options: S4Options) -> None:
    for suffix in projection_names(model, ("query", "value")):
        name, projection = _sublayer(model, layer, suffix)
        replace_module(model, name, LoRALinear(projection, r=options.r, alpha=options.alpha))


def _train_biases(model: nn.Module, layer: int, options: S4Options) -> None:
    for name, parameter in named_blocks(model)[1][layer].named_parameters():
        if name.endswith("bias"):
            parameter.requires_grad_(True)


STRATEGIES: dict[str, Callable[[nn.Module, int, S4Options], None]] = {
    # LoRA first: it replaces the projections that later strategies may wrap or hook.
    "lora": _add_lora,
    "adapter": _add_adapter,
    "bitfit": _train_biases,
}


def _per_layer_count(model: nn.Module, strategy: str, options: S4Options) -> int:
    """Trainable parameters one layer gains from a strategy, from the shapes of the unadapted model."""
    config, d = model.config, hidden_size(model)
    if strategy == "adapter":
        return Bottleneck.parameter_count(d, options.adapter_size)
    if strategy == "lora":
        block = named_blocks(model)[1][0]
        suffixes = projection_names(model, ("query", "value"))
        return sum(options.r * sum(linear_dims(block.get_submodule(suffix))) for suffix in suffixes)
    # BitFit: BERT and GPT-2 have biases on q, k, v, attention output (4d), FFN in and out (i + d) and on
    # both layer norms (2d); LLaMA has none.
    if config.model_type == "llama":
        return 0
    intermediate = getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None) or 4 * d
    return 7 * d + intermediate


@register
class S4(Method):
    name = "s4"
    category = "hybrid"
    foundation_models = ("LLM",)
    papers = ("s4",)
    summary = "Spindle-grouped layers, all tuned, each group with its own mix of adapter, LoRA and BitFit."
    update_rule = (
        "G1..G4 = spindle split of the layers; group g adapted by its strategies (A, P, B, L subsets)"
    )
    trainable = "per group: adapters after the FFN, LoRA on query/value, biases; and the task head"
    Options = S4Options

    def inject(self, model: nn.Module, options: S4Options) -> None:
        groups = layer_groups(len(named_blocks(model)[1]), options.group_weights)
        for layers, strategies in zip(groups, options.group_strategies, strict=True):
            for strategy in sorted(set(strategies), key=list(STRATEGIES).index):
                for layer in layers:
                    STRATEGIES[strategy](model, layer, options)
        if options.train_head:
            for parameter in task_head_parameters(model):
                parameter.requires_grad_(True)

    def expected_trainable(self, model: nn.Module, options: S4Options) -> int:
        """Σ over groups of |G| · per-layer counts: adapter 2dm + m + d, LoRA r(in + out) per q/v, BitFit 7d + d_ff; + head"""
        groups = layer_groups(model.config.num_hidden_layers, options.group_weights)
        adapted = sum(
            len(layers) * sum(_per_layer_count(model, strategy, options) for strategy in set(strategies))
            for layers, strategies in zip(groups, options.group_strategies, strict=True)
        )
        head = sum(p.numel() for p in task_head_parameters(model)) if options.train_head else 0
        return adapted + head
