"""FacT — Jie and Deng, "FacT: Factor-Tuning for Lightweight Adaptation on Vision Transformer", AAAI 2023
(catalogue: fact).

The weight updates of all of a ViT's linear layers, cut into d × d slices (q, k, v, o: one each; the FFN's
d × 4d matrices: four each), are stacked into one tensor ΔW ∈ R^{n × d × d} and factorised with factors shared
by every layer:

    FacT-TT:  ΔW_k = s · V Σ_k U                         (Σ_k ∈ R^{r×r}, one core per slice)
    FacT-TK:  ΔW_k = s · V (Σ_j P_{jk} C_j) U            (C ∈ R^{r×r×r}, P ∈ R^{r×n})

with U ∈ R^{r×d} and V ∈ R^{d×r} shared. Trainable: U, V, the cores (TT: Σ; TK: C and P) and the task head.
V starts at zero, so ΔW = 0 at start; the other inits follow the authors' code (U and the TT cores
Kaiming-uniform like a default nn.Linear, the Tucker C and P Xavier). The update is a weight delta, so it merges
into the frozen weights. Defaults: rank 8 and s = 1, the defaults of the authors' set-up function (the paper
tunes both per task); the authors' dropout on the rank-r activations is left out.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from ..core.api import attach_module, replace_module
from ..core.architectures import architecture_of, hidden_size, named_blocks
from ..core.errors import RefimplError
from ..core.layers import DeltaLinear
from ..core.registry import Method, MethodOptions, register
from ..core.targeting import linear_dims
from ..core.vision import classifier_parameters

Form = Literal["tt", "tk"]


class FactOptions(MethodOptions):
    form: Form = Field("tt", description='"tt": tensor-train (a core per slice); "tk": Tucker (C and P)')
    rank: int = Field(8, gt=0, description="r: rank of the shared factors (and of the Tucker core)")
    scale: float = Field(1.0, description="s: the scale of the update")
    train_head: bool = Field(True, description="also train the task head")


class SharedFactors(nn.Module):
    """U and V, shared by every slice of every layer; for FacT-TK also the core C and the slice loadings P."""

    def __init__(self, hidden: int, options: FactOptions, slices: int, like: torch.Tensor) -> None:
        super().__init__()
        factory = {"dtype": like.dtype, "device": like.device}
        r = options.rank
        self.U = nn.Parameter(torch.empty(r, hidden, **factory))
        self.V = nn.Parameter(torch.zeros(hidden, r, **factory))
        nn.init.kaiming_uniform_(self.U, a=math.sqrt(5))
        if options.form == "tk":
            self.C = nn.Parameter(nn.init.xavier_uniform_(torch.empty(r, r, r, **factory)))
            self.P = nn.Parameter(nn.init.xavier_uniform_(torch.empty(r, slices, **factory)))


class FactLinear(DeltaLinear):
    """A frozen linear layer whose update is the block matrix of its slices' factorised updates."""

    def __init__(
        self, base: nn.Module, factors: SharedFactors, first_slice: int, options: FactOptions
    ) -> None:
        super().__init__(base)
        d = factors.U.shape[1]
        if self.in_features % d or self.out_features % d:
            raise RefimplError(
                f"fact: a {self.out_features}×{self.in_features} weight does not cut into {d}×{d}"
            )
        self.blocks = (self.out_features // d, self.in_features // d)
        self.slice_range = (first_slice, first_slice + self.blocks[0] * self.blocks[1])
        self.scale = options.scale
        object.__setattr__(self, "factors", factors)  # shared, registered once on the model, not per layer
        if options.form == "tt":
            cores = torch.empty(*self.blocks, options.rank, options.rank, dtype=base.weight.dtype)
            for core in cores.view(-1, options.rank, options.rank):
                nn.init.kaiming_uniform_(core, a=math.sqrt(5))
            self.cores = nn.Parameter(cores.to(base.weight.device))

    def slice_cores(self) -> torch.Tensor:
        """Σ_k for this layer's slices, as (out blocks, in blocks, r, r)."""
        if hasattr(self, "cores"):
            return self.cores
        loadings = self.factors.P[:, slice(*self.slice_range)]
        return torch.einsum("oij,jk->koi", self.factors.C, loadings).reshape(
            *self.blocks, *self.factors.C.shape[:2]
        )

    def delta_weight(self) -> torch.Tensor:
        V, U = self.factors.V, self.factors.U
        blocks = V @ (self.slice_cores() @ U)  # (out blocks, in blocks, d, d): V Σ_k U for every slice k
        return self.scale * blocks.transpose(1, 2).reshape(self.out_features, self.in_features)


def fact_targets(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every linear layer of every block: q, k, v, o and the FFN's two projections."""
    architecture = architecture_of(model)
    ffn = architecture.ffn_output.rpartition(".")[0]
    roles = (architecture.query, architecture.key, architecture.value, architecture.attention_output)
    suffixes = (*roles, f"{ffn}.fc1", architecture.ffn_output)
    blocks_name, blocks = named_blocks(model)
    return [
        (f"{blocks_name}.{i}.{s}", block.get_submodule(s)) for i, block in enumerate(blocks) for s in suffixes
    ]


def slice_count(model: nn.Module) -> int:
    d = hidden_size(model)
    return sum(math.prod(dim // d for dim in linear_dims(module)) for _, module in fact_targets(model))


@register
class FacT(Method):
    name = "fact"
    category = "additive"
    foundation_models = ("VFM",)
    papers = ("fact",)
    summary = (
        "Factorise all layers' weight updates, stacked as one tensor, with factors shared across layers."
    )
    update_rule = "ΔW_k = s · V Σ_k U (TT)  or  s · V (Σ_j P_jk C_j) U (Tucker);  V = 0 at init"
    trainable = "shared U, V; per-slice cores Σ_k (TT) or the Tucker core C and loadings P; the task head"
    mergeable = True
    identity_at_init = True
    model_types = ("vit",)
    Options = FactOptions

    def inject(self, model: nn.Module, options: FactOptions) -> None:
        factors = SharedFactors(hidden_size(model), options, slice_count(model), next(model.parameters()))
        attach_module(model, "fact_factors", factors)
        first_slice = 0
        for name, module in fact_targets(model):
            layer = FactLinear(module, factors, first_slice, options)
            replace_module(model, name, layer)
            first_slice = layer.slice_range[1]
        for parameter in classifier_parameters(model) if options.train_head else []:
            parameter.requires_grad_(True)

    def expected_trainable(self, model: nn.Module, options: FactOptions) -> int:
        r, n = options.rank, slice_count(model)
        cores = n * r * r if options.form == "tt" else r**3 + r * n
        head = sum(p.numel() for p in classifier_parameters(model)) if options.train_head else 0
        return 2 * hidden_size(model) * r + cores + head
