"""UniPELT — Mao et al., "UniPELT: A Unified Framework for Parameter-Efficient Language Model Tuning",
ACL 2022 (catalogue: unipelt).

    G_m = σ(W_m x + b_m) for each submodule m of each layer, computed from that submodule's input
    LoRA:    h = W0 x + G_L · (alpha/r) B A x                     (query and value projections)
    prefix:  Attn(x W_q, [G_P P_k; x W_k], [G_P P_v; x W_v])      (G_P averaged over the tokens of the example)
    adapter: h ← h + G_A · W_up σ(W_down h)                       (after the FFN)

Every block carries all three submodules, each behind its own learned gate, so training decides per layer and per
input how much each one contributes. Trainable: LoRA factors, prefix (with its MLP reparameterisation), adapters,
three gates (a d→1 linear each) per layer, and the task head.

Choices: one LoRA gate per layer, shared by the query and value projections, reading the attention input. The
prefix gate is a scalar per example (the mean of the per-token gates), since one prefix serves every query; a
closed prefix gate zeroes the prefix keys and values, which still take a share of the attention (logit 0). The
adapter starts near identity (Houlsby's init), the LoRA update at zero; the prefix moves the output from the
start. Defaults (r = 8, alpha = 16, prefix length 10, bottleneck 48) are ours, of the usual sizes of each method.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from ..additive.bottleneck_adapter import Bottleneck, insert_adapters, unfreeze_norms_and_head
from ..core.api import attach_module
from ..core.architectures import hidden_size, named_blocks
from ..core.registry import Method, register
from ..core.targeting import task_head_parameters
from ..prompt.prefix_tuning import (
    PrefixTable,
    PrefixTuning,
    PrefixTuningOptions,
    add_attention_prefix,
    key_value_size,
)
from ..reparameterization.lora import LoRALinear, LoRAOptions, inject_lora_layers, lora_parameter_count


def make_gate(width: int, like: torch.Tensor) -> nn.Linear:
    return nn.Linear(width, 1, dtype=like.dtype, device=like.device)


class GatedLoRALinear(LoRALinear):
    """LoRA whose update is scaled per token by σ(gate(x)); input-dependent, so it cannot fold into W0."""

    def __init__(self, base: nn.Module, r: int, alpha: float, dropout: float = 0.0) -> None:
        super().__init__(base, r, alpha, dropout)
        self.gate = make_gate(self.in_features, base.weight)

    def adapter_output(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.gate(x)) * super().adapter_output(x)


class GatedBottleneck(Bottleneck):
    def __init__(self, hidden: int, size: int, like: torch.Tensor) -> None:
        super().__init__(hidden, size, like=like)
        self.gate = make_gate(hidden, like)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.gate(h)) * super().forward(h)


class GatedPrefix(PrefixTable):
    """Prefix tuning's per-layer keys and values, scaled by a per-example gate read from the attention input."""

    def __init__(
        self, layers: int, length: int, kv_size: int, hidden: int, mid_dim: int | None, like
    ) -> None:
        super().__init__(layers, length, kv_size, mid_dim, like=like)
        self.gates = nn.ModuleList(make_gate(hidden, like) for _ in range(layers))

    def forward(self, layer: int, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = super().forward(layer, hidden)
        gate = torch.sigmoid(self.gates[layer](hidden)).mean(dim=1, keepdim=True)  # (batch, 1, 1)
        return gate * keys, gate * values


class UniPELTOptions(PrefixTuningOptions):
    """Prefix tuning's options (prefix_length, reparameterization, mid_dim) and these."""

    r: int = Field(8, gt=0, description="LoRA rank")
    alpha: float = Field(16.0, gt=0, description="LoRA scaling numerator (update × alpha / r)")
    adapter_size: int = Field(48, gt=0, description="bottleneck dimension of the adapter after the FFN")
    train_head: bool = Field(True, description="also train the task head")


def _lora_options(options: UniPELTOptions) -> LoRAOptions:
    return LoRAOptions(r=options.r, alpha=options.alpha)  # the query and value projections


def _prefix_options(options: UniPELTOptions) -> PrefixTuningOptions:
    return PrefixTuningOptions(**options.model_dump(include=set(PrefixTuningOptions.model_fields)))


@register
class UniPELT(Method):
    name = "unipelt"
    category = "hybrid"
    foundation_models = ("LLM",)
    papers = ("unipelt",)
    summary = (
        "LoRA, prefix tuning and an adapter in every layer, each scaled by a learned input-dependent gate."
    )
    update_rule = "h = W0x + σ(W_L x)·BAx;  prefix σ(W_P x)·P;  h ← h + σ(W_A h)·adapter(h)"
    trainable = "LoRA factors, the prefix and its MLP, the FFN adapters, three gates per layer, the task head"
    Options = UniPELTOptions

    def inject(self, model: nn.Module, options: UniPELTOptions) -> None:
        like, d = next(model.parameters()), hidden_size(model)
        _, blocks = named_blocks(model)
        # LoRA before the prefix: the prefix hooks must see the wrapped projections' outputs.
        inject_lora_layers(model, _lora_options(options), layer=GatedLoRALinear)
        for block in blocks:
            first, *others = [m for m in block.modules() if isinstance(m, GatedLoRALinear)]
            for layer in others:
                layer.gate = first.gate  # one LoRA gate per layer
        insert_adapters(model, ("ffn_output",), lambda: GatedBottleneck(d, options.adapter_size, like))
        prefix = GatedPrefix(
            len(blocks),
            options.prefix_length,
            key_value_size(model),
            d,
            options.mid_dim if options.reparameterization else None,
            like,
        )
        attach_module(model, "unipelt_prefix", prefix)
        add_attention_prefix(model, prefix)
        unfreeze_norms_and_head(model, norms=False, head=options.train_head)

    def expected_trainable(self, model: nn.Module, options: UniPELTOptions) -> int:
        """LoRA r(in + out) per q/v + prefix tuning's count + L · (2dm + m + d) adapters + 3L(d + 1) gates + head"""
        d, layers = hidden_size(model), model.config.num_hidden_layers
        gates = layers * 3 * (d + 1)
        adapters = layers * Bottleneck.parameter_count(d, options.adapter_size)
        lora = lora_parameter_count(model, _lora_options(options))
        prefix = PrefixTuning().expected_trainable(model, _prefix_options(options))
        head = sum(p.numel() for p in task_head_parameters(model)) if options.train_head else 0
        return gates + adapters + lora + prefix + head
