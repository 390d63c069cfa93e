"""MPO — Liu, Gao, Zhao, Xie, Lu, Wen, "Enabling Lightweight Fine-tuning for Pre-trained Language Model Compression
based on Matrix Product Operators", ACL-IJCNLP 2021 (catalogue: mpo).

    W0 ∈ R^{I×J},  I = i1⋯in,  J = j1⋯jn:   W[(i1..in), (j1..jn)] = T1[i1,j1] T2[i2,j2] ⋯ Tn[in,jn]
    (each Tk[ik,jk] a d_{k-1} × d_k matrix, d_0 = d_n = 1);  h = W(T1..Tn) x + b

The weight is decomposed by sequential SVDs into a chain of n local tensors (a tensor train over the paired row and
column indices); with no truncation of the bond dimensions d_k the product reproduces W0 exactly (up to float
rounding). The middle tensor, the largest, is the central tensor; the others are auxiliary. Lightweight fine-tuning
trains the auxiliary tensors only, the central tensor stays frozen, and the weight rebuilt from the chain replaces
W0 in the forward pass. Capping the bond dimension (`bond_dim`) compresses the model, the paper's other use.

Trainable: the auxiliary tensors of every targeted linear layer (all linear layers but the heads by default).
Choices: n = 5 tensors; index sizes from splitting the prime factors of I and J as evenly as possible, the largest
at the central site and the rest alternating outwards (our choices; the paper picks factorisations per model), so
that, as the paper's abstract says, the auxiliary tensors hold only a small share of the parameters (about 9% of
a 384×1536 weight here; the paper reports 91% fewer fine-tuned parameters on average); decomposition in float64.
Rebuilding W every forward pass costs about |W|·(d_left + d_right) multiply-adds, the two bonds of the central
tensor, and its backward twice that: on short batches more than the weight gradient that full fine-tuning
computes (MPO needs that gradient too), so MPO's step there is slower than full fine-tuning's. The central
tensor is a non-persistent buffer re-derived from the base at load (the SVD is deterministic), so the adapter file
holds the auxiliary tensors.
Merging copies the rebuilt weight into the base layer; unmerge puts W0 back from a saved copy.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..core.api import replace_module
from ..core.errors import RefimplError
from ..core.layers import AdapterLayer, weight_out_in
from ..core.registry import Method, MethodOptions, register
from ..core.targeting import Targets, find_targets, linear_dims


class MPOOptions(MethodOptions):
    num_tensors: int = Field(5, ge=2, description="n: the number of local tensors in the chain")
    bond_dim: int | None = Field(None, gt=0, description="cap on the bond dimensions; None keeps W0 exactly")
    target_modules: Targets = Field("all-linear", description='suffixes, a regex, or "all-linear" (default)')


def site_sizes(size: int, parts: int) -> list[int]:
    """`split_evenly(size, parts)` laid out with the largest factor at the central site and the others alternating
    outwards, so the central tensor holds most of the parameters and the auxiliary tensors few."""
    c = central_index(parts)
    positions = sorted(range(parts), key=lambda k: (abs(k - c), k))  # centre, its left, its right, ...
    sites = [1] * parts
    for position, factor in zip(positions, split_evenly(size, parts), strict=True):
        sites[position] = factor
    return sites


def split_evenly(size: int, parts: int) -> list[int]:
    """`parts` factors of `size`, as equal as its prime factors allow (1s where there are too few)."""
    primes, rest, p = [], size, 2
    while rest > 1:
        while rest % p == 0:
            primes.append(p)
            rest //= p
        p += 1
    factors = [1] * parts
    for prime in sorted(primes, reverse=True):
        factors[factors.index(min(factors))] *= prime
    return sorted(factors, reverse=True)


def bond_dims(rows: list[int], cols: list[int], cap: int | None) -> list[int]:
    """d_0..d_n: at each cut, the rank the matrix can have there (capped by `cap`)."""
    sites = [i * j for i, j in zip(rows, cols, strict=True)]
    dims = [min(math.prod(sites[:k]), math.prod(sites[k:])) for k in range(len(sites) + 1)]
    return [d if cap is None or k in (0, len(sites)) else min(d, cap) for k, d in enumerate(dims)]


def mpo_decompose(
    weight: torch.Tensor, rows: list[int], cols: list[int], cap: int | None
) -> list[torch.Tensor]:
    """Local tensors (d_{k-1}, i_k, j_k, d_k) by left-to-right SVDs; exact when `cap` is None."""
    n = len(rows)
    grid = weight.double().reshape(*rows, *cols)
    grid = grid.permute(*[axis for k in range(n) for axis in (k, n + k)])  # i1 j1 i2 j2 ...
    dims = bond_dims(rows, cols, cap)
    tensors, remainder = [], grid.reshape(1, -1)
    for k in range(n - 1):
        matrix = remainder.reshape(dims[k] * rows[k] * cols[k], -1)
        u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
        keep = dims[k + 1]
        tensors.append(u[:, :keep].reshape(dims[k], rows[k], cols[k], keep))
        remainder = s[:keep, None] * vh[:keep]
    tensors.append(remainder.reshape(dims[n - 1], rows[n - 1], cols[n - 1], 1))
    return tensors


def chain_product(tensors: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """A run of consecutive local tensors contracted to (d_first, rows, cols, d_last); an empty run is a 1."""
    if not tensors:
        return like.new_ones(1, 1, 1, 1)
    result = tensors[0]
    for tensor in tensors[1:]:
        bond, rows, cols = (
            result.shape[0],
            result.shape[1] * tensor.shape[1],
            result.shape[2] * tensor.shape[2],
        )
        result = torch.einsum("xabd,dije->xaibje", result, tensor).reshape(bond, rows, cols, tensor.shape[3])
    return result


def mpo_contract(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The (I, J) matrix that the chain represents.

    Contracted from both ends towards the central tensor, which then meets the two small side products in two
    matrix products: |W|·(d_left + d_right) multiply-adds, where a left-to-right sweep also carries the growing
    product through the central tensor's wide bond.
    """
    c = central_index(len(tensors))
    left, center = chain_product(tensors[:c], tensors[c]), tensors[c]
    right = chain_product(tensors[c + 1 :], tensors[c])
    (_, a, b, d_left), (_, i, j, d_right), (_, ri, rj, _) = left.shape, center.shape, right.shape
    center_right = center.reshape(-1, d_right) @ right.reshape(d_right, -1)  # (d_left, i, j, ri, rj)
    full = left.reshape(a * b, d_left) @ center_right.reshape(d_left, -1)  # (a, b, i, j, ri, rj)
    full = full.reshape(a, b, i, j, ri, rj).permute(0, 2, 4, 1, 3, 5)
    return full.reshape(a * i * ri, b * j * rj)


class MPOLinear(AdapterLayer):
    def __init__(self, base: nn.Module, options: MPOOptions) -> None:
        super().__init__()
        self.base = base
        in_features, out_features = linear_dims(base)
        weight = weight_out_in(base)
        rows, cols = (
            site_sizes(out_features, options.num_tensors),
            site_sizes(in_features, options.num_tensors),
        )
        tensors = [t.to(weight.dtype) for t in mpo_decompose(weight.detach(), rows, cols, options.bond_dim)]
        self.central_index = central_index(options.num_tensors)
        self.register_buffer("central", tensors[self.central_index], persistent=False)
        self.auxiliary = nn.ParameterList(
            nn.Parameter(t) for k, t in enumerate(tensors) if k != self.central_index
        )

    def chain(self) -> list[torch.Tensor]:
        tensors = list(self.auxiliary)
        tensors.insert(self.central_index, self.central)
        return tensors

    def weight(self) -> torch.Tensor:
        return mpo_contract(self.chain())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base(x)
        return F.linear(x, self.weight().to(x.dtype), self.base.bias)

    @torch.no_grad()
    def merge(self) -> None:
        if self.merged:
            raise RefimplError("the adapter is already merged")
        self.register_buffer("original_weight", weight_out_in(self.base).clone(), persistent=False)
        weight_out_in(self.base).copy_(self.weight())
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if not self.merged:
            raise RefimplError("the adapter is not merged")
        weight_out_in(self.base).copy_(self.original_weight)
        del self.original_weight
        self.merged = False


def central_index(num_tensors: int) -> int:
    return num_tensors // 2


def auxiliary_count(in_features: int, out_features: int, options: MPOOptions) -> int:
    rows, cols = site_sizes(out_features, options.num_tensors), site_sizes(in_features, options.num_tensors)
    dims = bond_dims(rows, cols, options.bond_dim)
    sizes = [dims[k] * rows[k] * cols[k] * dims[k + 1] for k in range(options.num_tensors)]
    return sum(sizes) - sizes[central_index(options.num_tensors)]


@register
class MPO(Method):
    name = "mpo"
    category = "reparameterization"
    foundation_models = ("LLM",)
    papers = ("mpo",)
    summary = "Decompose each weight into a matrix product operator; fine-tune the auxiliary tensors, freeze the central one."
    update_rule = "W = T1 T2 ⋯ Tn (MPO of W0);  train T_k for k ≠ central,  h = W x + b"
    trainable = "the auxiliary (non-central) MPO tensors of each targeted linear layer"
    mergeable = True
    identity_at_init = (
        True  # exact decomposition at full bond dimension (float64 SVD, rounding far below 1e-6)
    )
    Options = MPOOptions
    trains_pretrained_weights = True

    def inject(self, model: nn.Module, options: MPOOptions) -> None:
        for name, module in find_targets(model, options.target_modules):
            replace_module(model, name, MPOLinear(module, options))

    def expected_trainable(self, model: nn.Module, options: MPOOptions) -> int:
        return sum(
            auxiliary_count(*linear_dims(m), options) for _, m in find_targets(model, options.target_modules)
        )
