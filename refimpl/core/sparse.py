"""Sparse weight deltas shared by the selective methods that train a chosen set of individual weights (FISH,
LT-SFT), and the empirical Fisher information used to choose them (FISH, Child-Tuning_D).

    W_j = W0_j + Δ_j,   Δ = scatter(values, indices):  k trainable values at k chosen flat positions

One `SparseDeltaStore` holds the k values and their positions over the concatenation of all targeted weight
matrices (each flattened as out × in), so k is fixed by the options (the adapter file has a fixed shape), while
which entries are chosen is data: `select_top_k` installs a new choice (e.g. the top-k Fisher scores) after `apply`,
in a persistent buffer that `save_adapter` writes and `load_adapter` restores.

Also here, because every selective method with a masked delta needs them: wrapping the targeted linear layers,
counting their weights, training the task head beside the chosen weights, and the weight-sized random draws of the
methods that sample a mask or gate every step (Child-Tuning_F, diff pruning).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import accumulate
from typing import Any

import torch
from pydantic import Field
from torch import nn
from transformers.pytorch_utils import Conv1D

from .api import attach_module, replace_module
from .errors import RefimplError
from .layers import DeltaLinear, weight_out_in
from .registry import Method, MethodOptions
from .targeting import Targets, find_targets, linear_dims, task_head_parameters

STORE_NAME = "sparse_delta"
FISHER_EXAMPLES = 256  # task examples the empirical Fisher of FISH and Child-Tuning_D is taken on (ours)


class SparseDeltaStore(nn.Module):
    """k values at k sorted flat positions over several weight matrices of the given sizes."""

    def __init__(self, sizes: Sequence[int], k: int, like: torch.Tensor) -> None:
        super().__init__()
        self.offsets = [0, *accumulate(sizes)]
        if not 0 < k <= self.offsets[-1]:
            raise RefimplError(f"a sparse delta needs 1 ≤ k ≤ {self.offsets[-1]} entries, got {k}")
        self.values = nn.Parameter(torch.zeros(k, device=like.device, dtype=like.dtype))
        # The default choice, until a criterion installs one: k positions drawn uniformly at random with a fixed
        # seed (FISH's "random mask" baseline), so that the same options always give the same adapter.
        generator = torch.Generator().manual_seed(0)
        chosen = torch.randperm(self.offsets[-1], generator=generator)[:k]
        self.register_buffer("indices", chosen.sort().values.to(like.device))

    @torch.no_grad()
    def install(self, indices: torch.Tensor) -> None:
        """Choose new positions (flat, over all matrices); the values restart at zero (Δ = 0)."""
        if indices.numel() != self.values.numel() or indices.unique().numel() != indices.numel():
            raise RefimplError(f"expected {self.values.numel()} distinct positions, got {indices.numel()}")
        self.indices.copy_(indices.sort().values)
        self.values.zero_()

    def delta(self, matrix: int, shape: torch.Size) -> torch.Tensor:
        """The dense delta of one matrix: zeros except at the chosen positions that fall inside it."""
        low, high = self.offsets[matrix], self.offsets[matrix + 1]
        start, end = torch.searchsorted(self.indices, torch.tensor([low, high], device=self.indices.device))
        flat = self.values.new_zeros(high - low)
        flat = flat.index_put((self.indices[start:end] - low,), self.values[start:end])
        return flat.view(shape)


class SparseDeltaLinear(DeltaLinear):
    """A frozen linear layer plus its slice of a shared sparse delta."""

    def __init__(self, base: nn.Module, store: SparseDeltaStore, matrix: int) -> None:
        super().__init__(base)
        self.__dict__["store"] = store  # a plain reference: the store is registered once, on the model
        self.matrix = matrix

    def delta_weight(self) -> torch.Tensor:
        return self.store.delta(self.matrix, torch.Size((self.out_features, self.in_features)))


def wrap_targets(model: nn.Module, targets: Targets, wrap: Callable[[nn.Module], nn.Module]) -> None:
    """Replace every targeted linear layer by `wrap(layer)` (a DeltaLinear holding the method's delta)."""
    for name, module in find_targets(model, targets):
        replace_module(model, name, wrap(module))


def targeted_weight_count(model: nn.Module, targets: Targets) -> int:
    """Σ in · out over the targeted linear layers: one entry per weight a dense masked delta covers."""
    return sum(i * o for i, o in (linear_dims(module) for _, module in find_targets(model, targets)))


def train_task_head(model: nn.Module, train: bool) -> None:
    """Selective methods train the (new) task head densely beside their chosen weights, as their papers do."""
    for parameter in task_head_parameters(model) if train else []:
        parameter.requires_grad_(True)


def task_head_size(model: nn.Module, train: bool) -> int:
    return sum(p.numel() for p in task_head_parameters(model)) if train else 0


def sparse_capacity(model: nn.Module, targets: Targets, keep_ratio: float) -> tuple[list[int], int]:
    """(sizes of the targeted weight matrices, k = keep_ratio of their total, at least 1)."""
    sizes = [i * o for i, o in (linear_dims(module) for _, module in find_targets(model, targets))]
    return sizes, max(1, round(keep_ratio * sum(sizes)))


def inject_sparse_delta(model: nn.Module, targets: Targets, keep_ratio: float) -> SparseDeltaStore:
    sizes, k = sparse_capacity(model, targets, keep_ratio)
    store = attach_module(model, STORE_NAME, SparseDeltaStore(sizes, k, like=next(model.parameters())))
    for matrix, (name, module) in enumerate(find_targets(model, targets)):
        replace_module(model, name, SparseDeltaLinear(module, store, matrix))
    return store


def sparse_layers(model: nn.Module) -> list[SparseDeltaLinear]:
    return sorted((m for m in model.modules() if isinstance(m, SparseDeltaLinear)), key=lambda m: m.matrix)


def select_top_k(model: nn.Module, scores: Sequence[torch.Tensor]) -> torch.Tensor:
    """Install the k highest-scoring positions (one out × in score matrix per sparse layer); returns them."""
    store: SparseDeltaStore = getattr(model, STORE_NAME)
    layers = sparse_layers(model)
    if len(scores) != len(layers):
        raise RefimplError(f"expected {len(layers)} score matrices (one per sparse layer), got {len(scores)}")
    for layer, score in zip(layers, scores, strict=True):
        if score.shape != (layer.out_features, layer.in_features):
            raise RefimplError(
                f"a score matrix of shape {tuple(score.shape)} for a {layer.out_features} × "
                f"{layer.in_features} layer"
            )
    flat = torch.cat([score.detach().flatten().float().to(store.indices.device) for score in scores])
    chosen = flat.topk(store.values.numel()).indices
    store.install(chosen)
    return chosen


def single_examples(batches: Iterator[dict[str, Any]], count: int) -> Iterator[dict[str, Any]]:
    """The first `count` examples of `batches`, one per batch: what the per-example empirical Fisher needs."""
    produced = 0
    for batch in batches:
        size = next(value for value in batch.values() if torch.is_tensor(value)).shape[0]
        for index in range(size):
            if produced == count:
                return
            yield {
                key: value[index : index + 1]
                if torch.is_tensor(value) and value.shape[:1] == (size,)
                else value
                for key, value in batch.items()
            }
            produced += 1


def random_int16(shape: torch.Size, device: torch.device) -> torch.Tensor:
    """Independent draws uniform over all 65,536 int16 values, from PyTorch's default generator.

    One 64-bit draw fills four entries, where `torch.rand` spends a 32-bit draw and a float conversion on each: at
    the size of every weight, every step, `torch.rand` was most of the cost of Child-Tuning_F's step beyond full
    fine-tuning's on CPU. Sixteen bits resolve a probability to 1/65,536.
    """
    count = math.prod(shape)
    words = torch.empty((count + 3) // 4, dtype=torch.int64, device=device).random_(-(2**63), None)
    return words.view(torch.int16)[:count].view(shape)


def int16_threshold(probability: float) -> tuple[int, float]:
    """(t, p'): `random_int16(...) < t` holds with probability p' = the 16-bit value nearest `probability`."""
    steps = round(probability * 2**16)
    return steps - 2**15, steps / 2**16


def top_k_masks(scores: Sequence[torch.Tensor], k: int) -> list[torch.Tensor]:
    """Boolean masks, shaped like `scores`, of the k highest scores over all of them together."""
    flat = torch.cat([score.detach().flatten().float() for score in scores])
    chosen = torch.zeros_like(flat, dtype=torch.bool)
    chosen[flat.topk(k).indices] = True
    return [
        mask.view_as(score)
        for mask, score in zip(chosen.split([s.numel() for s in scores]), scores, strict=True)
    ]


def empirical_fisher(
    model: nn.Module, batches: Iterable[dict[str, torch.Tensor]], layers: Sequence[DeltaLinear]
) -> list[torch.Tensor]:
    """Σ over batches of (∂L/∂W)², for the effective weight W of each layer (out × in, float32).

    Pass batches of one example each for the per-example empirical Fisher. The frozen base weights are made to
    require gradients only for the duration, and `.grad` of the model's parameters is left untouched.
    """
    weights = [layer.base.weight for layer in layers]
    fisher = [torch.zeros_like(weight_out_in(layer.base), dtype=torch.float32) for layer in layers]
    for weight in weights:
        weight.requires_grad_(True)
    try:
        for batch in batches:
            gradients = torch.autograd.grad(model(**batch).loss, weights)
            for total, gradient, layer in zip(fisher, gradients, layers, strict=True):
                total += (gradient.T if isinstance(layer.base, Conv1D) else gradient).float() ** 2
    finally:
        for weight in weights:
            weight.requires_grad_(False)
    return fisher


class SparseDeltaOptions(MethodOptions):
    keep_ratio: float = Field(
        0.005, gt=0, le=1, description="fraction of the targeted weights that is trained"
    )
    target_modules: Targets = Field(
        "all-linear", description='candidate linear layers: suffixes, a regex, or "all-linear" (no heads)'
    )
    train_head: bool = Field(True, description="also train the (new) task head densely")


class SparseDeltaMethod(Method):
    """A method that trains k chosen weights as a sparse delta, plus optionally the task head; subclasses say how
    the k positions are chosen (a function that calls `select_top_k`)."""

    mergeable = True
    identity_at_init = True
    Options = SparseDeltaOptions

    def inject(self, model: nn.Module, options: SparseDeltaOptions) -> None:
        inject_sparse_delta(model, options.target_modules, options.keep_ratio)
        train_task_head(model, options.train_head)

    def expected_trainable(self, model: nn.Module, options: SparseDeltaOptions) -> int:
        k = sparse_capacity(model, options.target_modules, options.keep_ratio)[1]
        return k + task_head_size(model, options.train_head)
