"""Child-Tuning — Xu et al., "Raise a Child in Large Language Model: Towards Effective and Generalizable
Fine-tuning", EMNLP 2021 (catalogue: child-tuning).

    W = W0 + Δ;   each step  ∂L/∂Δ ← ∂L/∂Δ ⊙ B / p_F,  B ~ Bernoulli(p_F)      (CHILD-TUNING_F, task-free)
                              Δ = C ⊙ Δ,  C = 1 on the top p_D fraction of the Fisher   (CHILD-TUNING_D, task-driven)

Only a "child network" of the pretrained weights is updated. We write the update as a delta Δ beside the frozen
weights of the targeted linear layers (all linear layers of the blocks by default), so it merges into W0.
Mode "F": a fresh Bernoulli(`reserve_p`) mask multiplies Δ's gradient at every backward pass and the kept
gradients are scaled by 1/`reserve_p` (p_F rounded to a multiple of 1/65,536: the mask comes from 16-bit draws);
every entry of Δ can change over training, so all count as trainable.
Mode "D": `compute_child_mask(model, batches, reserve_p)` scores the weights by their empirical Fisher on task
data and fixes the mask C to the top `reserve_p` fraction over all targeted weights (saved with the adapter); only
those entries of Δ then act and count. Until it is called, C is all ones (plain delta fine-tuning), as stated. The
method's `prepare` (run by `run` and `bench` before training) calls it on the task's first 256 training examples,
one at a time, as FISH does.
The task head is trained densely, as in the paper. Default `reserve_p` = 0.3 is ours, within the range the paper
explores; the paper also masks biases and norms, which we leave frozen.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from ..core.api import state_of
from ..core.errors import RefimplError
from ..core.layers import DeltaLinear, new_parameter
from ..core.registry import Method, MethodOptions, TaskData, register
from ..core.sparse import (
    FISHER_EXAMPLES,
    empirical_fisher,
    int16_threshold,
    random_int16,
    single_examples,
    targeted_weight_count,
    task_head_size,
    top_k_masks,
    train_task_head,
    wrap_targets,
)
from ..core.targeting import Targets


class ChildDeltaLinear(DeltaLinear):
    def __init__(self, base: nn.Module, mode: str, reserve_p: float) -> None:
        super().__init__(base)
        self.mode, self.reserve_p = mode, reserve_p
        self.delta = new_parameter(self.out_features, self.in_features, like=base.weight, init="zeros")
        self.register_buffer("child", torch.ones_like(self.delta, requires_grad=False))
        if mode == "F":
            self.keep_below, self.keep_p = int16_threshold(reserve_p)
            self.delta.register_hook(self._bernoulli_gradient_mask)

    def _bernoulli_gradient_mask(self, gradient: torch.Tensor) -> torch.Tensor:
        keep = torch.empty_like(gradient)  # 1 where kept, written straight in the gradient's dtype
        torch.lt(random_int16(gradient.shape, gradient.device), self.keep_below, out=keep)
        return keep.mul_(gradient).mul_(1 / self.keep_p)

    def delta_weight(self) -> torch.Tensor:
        return self.delta * self.child if self.mode == "D" else self.delta


class ChildTuningOptions(MethodOptions):
    mode: Literal["F", "D"] = Field(
        "F", description='"F": random gradient mask every step; "D": fixed mask from the Fisher'
    )
    reserve_p: float = Field(0.3, gt=0, le=1, description="p_F or p_D: the fraction of weights in the child")
    target_modules: Targets = Field(
        "all-linear", description='linear layers tuned: suffixes, a regex, or "all-linear" (no heads)'
    )
    train_head: bool = Field(True, description="also train the task head (not masked)")


def child_layers(model: nn.Module) -> list[ChildDeltaLinear]:
    return [m for m in model.modules() if isinstance(m, ChildDeltaLinear)]


def compute_child_mask(
    model: nn.Module, batches: Iterable[dict[str, torch.Tensor]], reserve_p: float | None = None
) -> int:
    """CHILD-TUNING_D's child network: the top `reserve_p` fraction (default: the adapter's) of the targeted
    weights by empirical Fisher Σ_batches (∂L/∂W)², chosen over all layers at once. Returns its size."""
    options = state_of(model).options
    if not isinstance(options, ChildTuningOptions) or options.mode != "D":
        raise RefimplError("compute_child_mask needs a model adapted with child_tuning, mode='D'")
    layers = child_layers(model)
    fisher = empirical_fisher(model, batches, layers)
    keep = max(
        1, round((options.reserve_p if reserve_p is None else reserve_p) * sum(f.numel() for f in fisher))
    )
    with torch.no_grad():
        for layer, mask in zip(layers, top_k_masks(fisher, keep), strict=True):
            layer.child.copy_(mask)
    return keep


@register
class ChildTuning(Method):
    name = "child_tuning"
    category = "selective"
    foundation_models = ("LLM",)
    papers = ("child-tuning",)
    summary = "Update only a child network: gradients masked at random each step (F) or by a Fisher mask (D)."
    update_rule = "W = W0 + Δ;  F: ∇Δ ⊙ Bernoulli(p_F)/p_F each step;  D: Δ kept only on the top-p_D Fisher"
    trainable = (
        "a delta over the targeted linear weights (D: only the child entries count), and the task head"
    )
    mergeable = True
    identity_at_init = True
    Options = ChildTuningOptions
    trains_pretrained_weights = True

    def inject(self, model: nn.Module, options: ChildTuningOptions) -> None:
        wrap_targets(
            model,
            options.target_modules,
            lambda module: ChildDeltaLinear(module, options.mode, options.reserve_p),
        )
        train_task_head(model, options.train_head)

    def prepare(self, model: nn.Module, options: ChildTuningOptions, data: TaskData) -> None:
        if options.mode == "D":
            compute_child_mask(model, single_examples(data.batches(), FISHER_EXAMPLES))

    def expected_trainable(self, model: nn.Module, options: ChildTuningOptions) -> int:
        # Mode D before `compute_child_mask`: the child is every weight (stated in the module docstring).
        weights = targeted_weight_count(model, options.target_modules)
        return weights + task_head_size(model, options.train_head)

    def trainable_count(self, model: nn.Module) -> int:
        layers = child_layers(model)
        deltas = {id(layer.delta) for layer in layers}
        in_child = sum(
            int(layer.child.sum()) if layer.mode == "D" else layer.delta.numel() for layer in layers
        )
        return in_child + sum(
            p.numel() for p in model.parameters() if p.requires_grad and id(p) not in deltas
        )
