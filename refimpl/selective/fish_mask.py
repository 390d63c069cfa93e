"""FISH mask — Sung et al., "Training Neural Networks with Fixed Sparse Masks", NeurIPS 2021 (catalogue: fish).

    F̂_j = Σ_n (∂ log p(y_n | x_n) / ∂θ_j)²   over a few task examples;   mask = top-k of F̂;   θ = θ0 + Δ, Δ = 0 off mask

Trainable: exactly k = `keep_ratio` × (weights of the targeted linear layers) entries (0.5% by default, as in
Table 1 of the survey), stored as a sparse delta (`refimpl.core.sparse`): only the k values and their positions,
plus the task head, trained densely because it is new. Merging adds the k values into the weights in place.

`apply` builds the sparse delta with a fixed-seed random choice of positions (the paper's random-mask
baseline); `compute_fisher_mask(model, batches)` then computes the empirical Fisher on task data and installs the
top-k mask, which is saved with the adapter. The method's `prepare` (run by `run` and `bench` before training)
does so on the task's first `FISHER_EXAMPLES` (256, ours) training examples, one at a time. Simplification: the
paper scores every parameter; we score the weights of the targeted linear layers (all linear layers of the blocks
by default).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ..core.api import state_of
from ..core.errors import RefimplError
from ..core.registry import TaskData, register
from ..core.sparse import (
    FISHER_EXAMPLES,
    SparseDeltaMethod,
    SparseDeltaOptions,
    empirical_fisher,
    select_top_k,
    single_examples,
    sparse_layers,
)


def compute_fisher_mask(
    model: nn.Module, batches: Iterable[dict[str, torch.Tensor]], keep_ratio: float | None = None
) -> torch.Tensor:
    """Score the targeted weights by their empirical Fisher over `batches` (give one example per batch for the
    per-example Fisher of the paper) and keep the top k. Returns the kept flat positions. `keep_ratio`, if given,
    must be the adapter's: k is fixed when the method is applied."""
    state = state_of(model)
    options = state.options
    if state.method.name != "fish_mask":
        raise RefimplError("compute_fisher_mask needs a model adapted with 'fish_mask'")
    if keep_ratio is not None and keep_ratio != options.keep_ratio:
        raise RefimplError(
            f"keep_ratio {keep_ratio} differs from the adapter's {options.keep_ratio}; apply fish_mask with it"
        )
    return select_top_k(model, empirical_fisher(model, batches, sparse_layers(model)))


@register
class FishMask(SparseDeltaMethod):
    name = "fish_mask"
    category = "selective"
    foundation_models = ("LLM",)
    papers = ("fish",)
    summary = (
        "Train only the k weights with the largest empirical Fisher information, as a fixed sparse mask."
    )
    update_rule = (
        "θ = θ0 + Δ,  Δ non-zero only on the top-k entries of the empirical Fisher Σ_n (∂ log p / ∂θ)²"
    )
    trainable = "k = keep_ratio × (targeted weights) sparse delta values, and the task head"
    # Options: SparseDeltaOptions, whose keep_ratio defaults to 0.5%, Table 1's figure for FISH.

    def prepare(self, model: nn.Module, options: SparseDeltaOptions, data: TaskData) -> None:
        compute_fisher_mask(model, single_examples(data.batches(), FISHER_EXAMPLES))
