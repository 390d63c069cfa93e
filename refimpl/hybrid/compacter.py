"""Compacter — Karimi Mahabadi, Henderson and Ruder, "Compacter: Efficient Low-Rank Hypercomplex Adapter Layers",
NeurIPS 2021 (catalogue: compacter).

    adapter(h) = W_up σ(W_down h),   W = Σ_{i=1..n} A_i ⊗ B_i,   B_i = s_i t_iᵀ  (a PHM layer with low-rank B_i)

A_i ∈ R^{n×n} are the "slow" weights, shared by every PHM layer of the model; s_i, t_i are each layer's "fast"
rank-r factors. Trainable: the shared A (n³), per PHM layer r·(in + out) factors and a bias, the blocks' layer
norms and the task head (as the paper trains them). `variant="compacter"` places adapters after attention and
after the FFN (Houlsby's placement); `"compacter++"` keeps only the one after the FFN.

Choices: rank r = 1 and n = 4 as in the paper; the bottleneck size (default 16) must be divisible by n, as must
the hidden size; σ defaults to GELU (our choice; any transformers activation name works). `init="near_identity"` draws A from N(0, 1) and the factors so that W starts with entries of
about 10⁻² (the adapter's usual near-identity start); `init="zeros"` zeroes the up-projection's s factors so the
model starts exactly at the base model.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from transformers.activations import ACT2FN

from ..additive.bottleneck_adapter import Init, insert_adapters, unfreeze_norms_and_head
from ..core.architectures import architecture_of, hidden_size, transformer_blocks
from ..core.errors import RefimplError
from ..core.layers import new_parameter
from ..core.registry import Method, MethodOptions, register
from ..core.targeting import task_head_parameters

Variant = Literal["compacter", "compacter++"]
POSITIONS: dict[str, tuple[str, ...]] = {
    "compacter": ("attention_output", "ffn_output"),
    "compacter++": ("ffn_output",),
}
WEIGHT_STD = 1e-2  # target scale of the entries of W at a near-identity start


class PHMLinear(nn.Module):
    """y = W x + b with W = Σ_i A_i ⊗ (s_i t_iᵀ): the shared rules A of shape (n, n, n), own factors s, t."""

    def __init__(
        self, rules: nn.Parameter, in_features: int, out_features: int, rank: int, zero: bool
    ) -> None:
        super().__init__()
        n = rules.shape[0]
        self.rules = rules  # the same Parameter object in every PHM layer: stored and trained once
        factor_std = (WEIGHT_STD / n**0.5) ** 0.5  # W entries sum n products A·s·t with std(A) = 1
        self.s = new_parameter(n, out_features // n, rank, like=rules, init="zeros")
        self.t = new_parameter(n, rank, in_features // n, like=rules, init="zeros")
        self.bias = new_parameter(out_features, like=rules, init="zeros")
        with torch.no_grad():
            self.t.normal_(std=factor_std)
            if not zero:
                self.s.normal_(std=factor_std)

    def weight(self) -> torch.Tensor:
        n, rows, _ = self.s.shape
        blocks = self.s @ self.t  # B_i, (n, out/n, in/n)
        # kron(A_i, B_i)[p·rows + r, q·cols + c] = A_i[p, q] · B_i[r, c], summed over i
        return torch.einsum("ipq,irc->prqc", self.rules, blocks).reshape(n * rows, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight().to(x.dtype), self.bias.to(x.dtype))

    @staticmethod
    def parameter_count(in_features: int, out_features: int, rank: int) -> int:
        """Own parameters: rank · (in + out) factors and the bias (the shared rules are counted once, apart)."""
        return rank * (in_features + out_features) + out_features


class CompacterAdapter(nn.Module):
    def __init__(self, rules: nn.Parameter, hidden: int, size: int, rank: int, activation: str, init: Init):
        super().__init__()
        self.down = PHMLinear(rules, hidden, size, rank, zero=False)
        self.up = PHMLinear(rules, size, hidden, rank, zero=init == "zeros")
        self.activation = ACT2FN[activation]

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.up(self.activation(self.down(h)))


class CompacterOptions(MethodOptions):
    variant: Variant = Field(
        "compacter", description="adapters after attention and FFN, or (compacter++) after the FFN only"
    )
    n: int = Field(4, gt=0, description="number of Kronecker summands; A_i are n×n")
    rank: int = Field(1, gt=0, description="rank r of each fast weight B_i = s_i t_iᵀ")
    adapter_size: int = Field(16, gt=0, description="bottleneck dimension k (divisible by n)")
    activation: str = Field("gelu", description="non-linearity σ (a transformers ACT2FN name)")
    init: Init = Field(
        "near_identity", description="small random W, or zero up-projection factors for an exact identity"
    )
    train_layer_norms: bool = Field(True, description="also train the blocks' layer norms (as the paper)")
    train_head: bool = Field(True, description="also train the task head")


def _check_divisible(model: nn.Module, options: CompacterOptions) -> None:
    for name, size in (("adapter_size", options.adapter_size), ("hidden size", hidden_size(model))):
        if size % options.n:
            raise RefimplError(f"option 'n': {name} {size} is not divisible by n={options.n}")


@register
class Compacter(Method):
    name = "compacter"
    category = "hybrid"
    foundation_models = ("LLM",)
    papers = ("compacter",)
    summary = (
        "Adapters whose projections are sums of Kronecker products of shared n×n rules and rank-1 factors."
    )
    update_rule = "h ← h + W_up σ(W_down h),  W = Σ_i A_i ⊗ s_i t_iᵀ,  A_i shared by all layers"
    trainable = "the shared rules A, each PHM layer's factors and bias, the layer norms and the task head"
    Options = CompacterOptions

    def inject(self, model: nn.Module, options: CompacterOptions) -> None:
        _check_divisible(model, options)
        like = next(model.parameters())
        rules = new_parameter(options.n, options.n, options.n, like=like, init="zeros")
        with torch.no_grad():
            rules.normal_()
        insert_adapters(
            model,
            POSITIONS[options.variant],
            lambda: CompacterAdapter(
                rules,
                hidden_size(model),
                options.adapter_size,
                options.rank,
                options.activation,
                options.init,
            ),
        )
        unfreeze_norms_and_head(model, options.train_layer_norms, options.train_head)

    def expected_trainable(self, model: nn.Module, options: CompacterOptions) -> int:
        """n³ (shared rules) + adapters · [2r(d + k) + k + d] + layer norms + head; adapters = 2L or L (compacter++)"""
        d, k, r = hidden_size(model), options.adapter_size, options.rank
        adapters = len(transformer_blocks(model)) * len(POSITIONS[options.variant])
        per_adapter = PHMLinear.parameter_count(d, k, r) + PHMLinear.parameter_count(k, d, r)
        return options.n**3 + adapters * per_adapter + norm_and_head_count(model, options)


def norm_and_head_count(model: nn.Module, options: CompacterOptions) -> int:
    """Layer-norm scales and shifts (RMSNorm: scale only) of every block, and the task head, from shapes."""
    norms = 0
    if options.train_layer_norms:
        per_norm = hidden_size(model) * (1 if model.config.model_type == "llama" else 2)
        norms = len(transformer_blocks(model)) * len(architecture_of(model).layer_norms) * per_norm
    head = sum(p.numel() for p in task_head_parameters(model)) if options.train_head else 0
    return norms + head
