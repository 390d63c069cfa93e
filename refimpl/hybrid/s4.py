"""S4 — Chen et al., "Parameter-Efficient Fine-Tuning Design Spaces", ICLR 2023 (catalogue: s4).

    layers → groups G1..G4 in a spindle pattern (sizes ∝ 1 : 2 : 2 : 1),  every group tuned,
    G1 (A, L)   G2 (A, P)   G3 (A, P, B)   G4 (P, B, L)
    A = adapter after the FFN, P = prefix in the attention, B = BitFit biases, L = LoRA on query and value

The paper searches a design space (layer grouping, parameter allocation, tunable groups, strategy assignment)
and finds: spindle grouping (few layers in the end groups, more in the middle ones), trainable parameters spread
uniformly over layers, all groups tuned, and different strategies per group. This module implements the
resulting S4 model, with the grouping and the assignment as options (data), built from the existing methods'
pieces: Houlsby's bottleneck adapter after the FFN, prefix tuning's prefix table (one prefix per layer of the
groups that use it, reparameterised by prefix tuning's MLP unless `reparameterization=False`), LoRA on the
query and value projections, BitFit's bias terms.

Sources: the four design patterns are in the paper's abstract; the per-group assignment above is the one that
secondary summaries of the paper give (notes on PEFT surveys in public repositories), which we could not check
against the paper's own section on the final design; "fewer layers at the ends, more in the middle" is a
third-party review's reading of "spindle". The 1 : 2 : 2 : 1 size ratio is ours, not the paper's.

Choices: uniform allocation is read as the same adapter size / LoRA rank / prefix length in every layer that
uses the strategy. Layer l of L belongs to the group whose share of the spindle weights covers (l + ½)/L: every
group gets a layer from L = 4 on, the middle groups never have fewer layers than the ends (4 layers: 1, 1, 1, 1;
6: 1, 2, 2, 1; 12: 2, 4, 4, 2), and a 2-layer model has only the middle groups G2 and G3. The task head is trained
too (`train_head`).

Learning rate: we could not check the rate in the paper. The prefix groups are Li & Liang's reparameterised
prefix, which its paper trains at 5·10⁻⁵ (see prefix_tuning): at a task's rate for small new modules (sentiment:
2e-3) the prefix table collapses the encoder's output to an input-independent vector within a few steps, and S4
does not learn, while with the prefix kept at its initial value the other strategies train normally at that rate.
So S4 declares Li & Liang's rate for the prefix's parameters (`learning_rates`); the other strategies and the task
head keep the task's rate.
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
from ..core.registry import Method, register
from ..core.targeting import linear_dims, task_head_parameters
from ..prompt.prefix_tuning import PrefixTuningOptions, add_prefix_tuning, prefix_parameter_count
from ..reparameterization.lora import LoRALinear

Strategy = Literal["adapter", "prefix", "bitfit", "lora"]
DEFAULT_GROUPS: tuple[tuple[Strategy, ...], ...] = (
    ("adapter", "lora"),
    ("adapter", "prefix"),
    ("adapter", "prefix", "bitfit"),
    ("prefix", "bitfit", "lora"),
)


class S4Options(PrefixTuningOptions):
    """Prefix tuning's options (prefix_length, reparameterization, mid_dim) for the prefix groups, and these."""

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


def _add_adapters(model: nn.Module, layers: list[int], options: S4Options) -> None:
    for layer in layers:
        name, ffn_output = _sublayer(model, layer, architecture_of(model).ffn_output)
        like = ffn_output.weight
        adapter = Bottleneck(hidden_size(model), options.adapter_size, init=options.adapter_init, like=like)
        replace_module(model, name, SerialAdapter(ffn_output, adapter))


def _add_prefix(model: nn.Module, layers: list[int], options: S4Options) -> None:
    add_prefix_tuning(model, _prefix_options(options), layers)


def _add_lora(model: nn.Module, layers: list[int], options: S4Options) -> None:
    for layer in layers:
        for suffix in projection_names(model, ("query", "value")):
            name, projection = _sublayer(model, layer, suffix)
            replace_module(model, name, LoRALinear(projection, r=options.r, alpha=options.alpha))


def _train_biases(model: nn.Module, layers: list[int], options: S4Options) -> None:
    blocks = named_blocks(model)[1]
    for layer in layers:
        for name, parameter in blocks[layer].named_parameters():
            if name.endswith("bias"):
                parameter.requires_grad_(True)


STRATEGIES: dict[str, Callable[[nn.Module, list[int], S4Options], None]] = {
    # LoRA first: it replaces the projections whose outputs the prefix hooks then splice.
    "lora": _add_lora,
    "prefix": _add_prefix,
    "adapter": _add_adapters,
    "bitfit": _train_biases,
}


def _prefix_options(options: S4Options) -> PrefixTuningOptions:
    return PrefixTuningOptions(**options.model_dump(include=set(PrefixTuningOptions.model_fields)))


def strategy_layers(layers: int, options: S4Options) -> dict[str, list[int]]:
    """For each strategy in use, the ascending layer indices of all groups that have it."""
    groups = layer_groups(layers, options.group_weights)
    chosen: dict[str, list[int]] = {}
    for strategy in STRATEGIES:
        members = [
            layer
            for group, strategies in zip(groups, options.group_strategies, strict=True)
            if strategy in strategies
            for layer in group
        ]
        if members:
            chosen[strategy] = members
    return chosen


def _per_layer_count(model: nn.Module, strategy: str, options: S4Options) -> int:
    """Trainable parameters one layer gains from a per-layer strategy, from the unadapted model's shapes."""
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
    summary = (
        "Spindle-grouped layers, all tuned, each group with its own mix of adapter, prefix, BitFit and LoRA."
    )
    update_rule = (
        "G1..G4 = spindle split of the layers; group g adapted by its strategies (A, P, B, L subsets)"
    )
    trainable = (
        "per group: adapters after the FFN, a prefix (and its MLP), biases, LoRA on query/value; the head"
    )
    Options = S4Options
    learning_rates = (("prefix_tuning.", 5e-5),)  # see the docstring

    def inject(self, model: nn.Module, options: S4Options) -> None:
        for strategy, layers in strategy_layers(len(named_blocks(model)[1]), options).items():
            STRATEGIES[strategy](model, layers, options)
        if options.train_head:
            for parameter in task_head_parameters(model):
                parameter.requires_grad_(True)

    def expected_trainable(self, model: nn.Module, options: S4Options) -> int:
        """Σ over strategies of its layer count × per-layer count (adapter 2dm + m + d, LoRA r(in + out) per q/v,
        BitFit 7d + d_ff), + one prefix table for the prefix layers (prefix tuning's count), + the head"""
        adapted = sum(
            prefix_parameter_count(model, _prefix_options(options), len(layers))
            if strategy == "prefix"
            else len(layers) * _per_layer_count(model, strategy, options)
            for strategy, layers in strategy_layers(model.config.num_hidden_layers, options).items()
        )
        head = sum(p.numel() for p in task_head_parameters(model)) if options.train_head else 0
        return adapted + head
