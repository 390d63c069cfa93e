"""LoRand — Yin, Yang, Wang, Yu, Wei and Sun, "1% VS 100%: Parameter-Efficient Low Rank Adapter for Dense
Predictions", CVPR 2023 (catalogue: lorand).

    h ← h + W_U GELU(W_D h + b_D) + b_U,   W_D = Σ_{i=1..α} P^D_i K_i Q^D_i,   W_U = Σ_{i=1..α} P^U_i K_i Q^U_i

An adapter after the attention and after the FFN of every block whose two projections are each a sum of α
low-rank branches P K Q (P, Q of rank β); branch i's kernel K_i ∈ R^{β×β} is shared by the down- and the
up-projection. Trainable: the factors, kernels and biases of every adapter, and the task head.

Unverified (no arXiv id, the paper itself was not among the sources): the catalogue entry states the
multi-branch low-rank structure with shared kernels beside attention and FFN; the kernel sharing between the
two projections, the GELU and the all-Kaiming init (`init="kaiming"`, the default) follow a third-party
implementation found through the search tool, not the paper. `init="zeros"` zeroes the up-projection's P
factors instead, so the adapted model starts at the base model. The defaults α = 2, β = 8 and the bottleneck 16
are ours, as are the zero biases; the survey's table lists LoRand as inference-efficient, but the GELU
between the projections keeps the adapter from folding into the weights here.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..additive.bottleneck_adapter import insert_adapters
from ..core.architectures import hidden_size, named_blocks
from ..core.registry import Method, MethodOptions, register
from ..core.vision import classifier_parameters


class LoRandOptions(MethodOptions):
    branches: int = Field(2, gt=0, description="α: low-rank branches summed in each projection")
    kernel_dim: int = Field(8, gt=0, description="β: the size of each branch's kernel K (the branch rank)")
    bottleneck: int = Field(16, gt=0, description="m: the adapter's middle dimension")
    init: Literal["kaiming", "zeros"] = Field(
        "kaiming", description='"kaiming": every factor random; "zeros": zero up-projection P, exact identity'
    )
    train_head: bool = Field(True, description="also train the task head")


def _factor(*shape: int, like: torch.Tensor, zero: bool = False) -> nn.Parameter:
    tensor = torch.zeros(*shape, dtype=like.dtype, device=like.device)
    if not zero:
        nn.init.kaiming_uniform_(tensor, a=math.sqrt(5))
    return nn.Parameter(tensor)


class LoRandAdapter(nn.Module):
    def __init__(self, hidden: int, options: LoRandOptions, like: torch.Tensor) -> None:
        super().__init__()
        a, b, m = options.branches, options.kernel_dim, options.bottleneck
        self.kernels = _factor(a, b, b, like=like)
        self.down_P, self.down_Q = _factor(a, m, b, like=like), _factor(a, b, hidden, like=like)
        self.up_P, self.up_Q = (
            _factor(a, hidden, b, like=like, zero=options.init == "zeros"),
            _factor(a, b, m, like=like),
        )
        self.down_bias = nn.Parameter(torch.zeros(m, dtype=like.dtype, device=like.device))
        self.up_bias = nn.Parameter(torch.zeros(hidden, dtype=like.dtype, device=like.device))

    def projection(self, P: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
        """Σ_i P_i K_i Q_i over the branches."""
        return torch.einsum("aob,abc,aci->oi", P, self.kernels, Q)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        middle = F.gelu(F.linear(h, self.projection(self.down_P, self.down_Q), self.down_bias))
        return F.linear(middle, self.projection(self.up_P, self.up_Q), self.up_bias)

    @staticmethod
    def parameter_count(hidden: int, options: LoRandOptions) -> int:
        a, b, m = options.branches, options.kernel_dim, options.bottleneck
        return a * (b * b + 2 * b * (m + hidden)) + m + hidden


@register
class LoRand(Method):
    name = "lorand"
    category = "reparameterization"
    foundation_models = ("VFM",)
    papers = ("lorand",)
    summary = "Adapters after attention and FFN whose projections are sums of low-rank P·K·Q branches."
    update_rule = "h ← h + W_U GELU(W_D h + b_D) + b_U,  W = Σ_i P_i K_i Q_i  (K_i shared by W_D and W_U)"
    trainable = "the branch factors P, Q, the kernels K, the adapter biases, and the task head"
    model_types = ("vit",)
    Options = LoRandOptions

    def inject(self, model: nn.Module, options: LoRandOptions) -> None:
        like = next(model.parameters())
        insert_adapters(
            model,
            ("attention_output", "ffn_output"),
            lambda: LoRandAdapter(hidden_size(model), options, like),
        )
        for parameter in classifier_parameters(model) if options.train_head else []:
            parameter.requires_grad_(True)

    def expected_trainable(self, model: nn.Module, options: LoRandOptions) -> int:
        adapters = (
            2 * len(named_blocks(model)[1]) * LoRandAdapter.parameter_count(hidden_size(model), options)
        )
        head = sum(p.numel() for p in classifier_parameters(model)) if options.train_head else 0
        return adapters + head
