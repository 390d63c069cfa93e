"""Diff pruning — Guo et al., "Parameter-Efficient Transfer Learning with Diff Pruning", ACL-IJCNLP 2021
(catalogue: diff-pruning).

    W = W0 + z ⊙ w,   z ~ HardConcrete(log α):  s = σ((log u − log(1−u) + log α) / β),  z = clip(s·(r−l) + l, 0, 1)
    penalty  E‖z‖₀ = Σ σ(log α − β·log(−l / r))

Trainable: the dense diff w and the gate logits log α of every targeted linear layer (all linear layers of the
blocks by default), plus the task head. In training mode a forward hook adds λ · `l0_penalty(model)` to the loss
the model returns (`l0_lambda`, the paper's 1.25e-7, §4.3); gates are sampled in training mode and deterministic in
eval mode (z = clip(σ(log α)(r−l) + l, 0, 1)). After training, `finalize_diff(model, keep_ratio)` keeps the
`keep_ratio` fraction of diff entries with the largest |z ⊙ w| (the paper's magnitude pruning to a target
sparsity, 0.5%), fixes that mask, and from then on only the kept entries of w change and count as trainable (the
paper re-trains them with the mask fixed, which it found crucial, §5.4). `run` and `bench` train the first phase
only: within the sentiment task's 80 steps the penalty barely moves the gates (Adam moves each log α by about the
rate per step, from 5), so the diff stays dense, and finalizing is left to the caller.

Simplifications: only the weights of linear layers get a diff (the paper also diffs biases, norms and
embeddings), and the paper's structured, group-wise penalty is left out. The hard-concrete shape parameters
(β, l, r) and the initial log α are options; the defaults are ours.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import Field
from torch import nn

from ..core.api import add_hook, state_of
from ..core.layers import DeltaLinear, new_parameter
from ..core.registry import Method, MethodOptions, register
from ..core.sparse import (
    random_int16,
    targeted_weight_count,
    task_head_size,
    top_k_masks,
    train_task_head,
    wrap_targets,
)
from ..core.targeting import Targets


class HardConcreteDiffLinear(DeltaLinear):
    """A frozen linear layer plus a gated diff z ⊙ w with a hard-concrete relaxation of the binary gate z."""

    def __init__(self, base: nn.Module, options: DiffPruningOptions) -> None:
        super().__init__(base)
        self.beta, self.left, self.right = options.beta, options.stretch_left, options.stretch_right
        self.diff = new_parameter(self.out_features, self.in_features, like=base.weight, init="zeros")
        self.log_alpha = new_parameter(self.out_features, self.in_features, like=base.weight, init="zeros")
        with torch.no_grad():
            self.log_alpha.fill_(options.log_alpha_init)
        # After `finalize_diff`: a fixed 0/1 mask replaces the gates. Saved, so a loaded adapter stays pruned.
        self.register_buffer("kept", torch.ones_like(self.diff, requires_grad=False))
        self.register_buffer("finalized", torch.zeros((), dtype=torch.bool, device=base.weight.device))
        self.train(base.training)  # gates are sampled only in training mode: follow the model's current mode

    def gate(self, sample: bool) -> torch.Tensor:
        if sample:
            with torch.no_grad():  # logistic noise log u − log(1−u), u ~ U(0, 1): no gradient, no graph
                bits = random_int16(self.log_alpha.shape, self.log_alpha.device)
                u = bits.to(torch.float32).add_(2**15 + 0.5).div_(2**16)  # the 65,536 midpoints of (0, 1)
                noise = u.logit_().to(self.log_alpha.dtype)
            s = torch.sigmoid((noise + self.log_alpha) / self.beta)
        else:
            s = torch.sigmoid(self.log_alpha)
        return (s * (self.right - self.left) + self.left).clamp(0, 1)

    def expected_l0(self) -> torch.Tensor:
        return torch.sigmoid(self.log_alpha - self.beta * math.log(-self.left / self.right)).sum()

    def _delta(self, sample: bool) -> torch.Tensor:
        if self.finalized:
            return self.diff * self.kept
        return self.diff * self.gate(sample)

    def delta_weight(self) -> torch.Tensor:
        return self._delta(sample=False)

    def training_delta_weight(self) -> torch.Tensor:
        return self._delta(sample=True)


class DiffPruningOptions(MethodOptions):
    target_modules: Targets = Field(
        "all-linear", description='linear layers that get a diff: suffixes, a regex, or "all-linear"'
    )
    beta: float = Field(1.0, gt=0, description="hard-concrete temperature β")
    stretch_left: float = Field(-1.5, lt=0, description="l: lower end of the stretched gate interval")
    stretch_right: float = Field(1.5, gt=1, description="r: upper end of the stretched gate interval")
    log_alpha_init: float = Field(5.0, description="initial gate logit log α (high: gates start open)")
    l0_lambda: float = Field(1.25e-7, ge=0, description="λ: weight of the expected-L0 penalty in the loss")
    train_head: bool = Field(True, description="also train the task head")


def diff_layers(model: nn.Module) -> list[HardConcreteDiffLinear]:
    return [m for m in model.modules() if isinstance(m, HardConcreteDiffLinear)]


def l0_penalty(model: nn.Module) -> torch.Tensor:
    """The expected number of non-zero gates, Σ P(z ≠ 0); add λ times it to the task loss."""
    return torch.stack([layer.expected_l0() for layer in diff_layers(model)]).sum()


@torch.no_grad()
def finalize_diff(model: nn.Module, keep_ratio: float = 0.005) -> int:
    """Magnitude-prune the diff to its `keep_ratio` fraction of largest |z ⊙ w| entries over all layers, fix
    that mask, and stop training the gates. Returns how many entries are kept."""
    state_of(model)  # an adapted model is required
    layers = diff_layers(model)
    deltas = [layer.delta_weight() for layer in layers]
    keep = max(1, round(keep_ratio * sum(d.numel() for d in deltas)))
    for layer, delta, mask in zip(layers, deltas, top_k_masks([d.abs() for d in deltas], keep), strict=True):
        layer.kept.copy_(mask)
        layer.diff.copy_(delta * layer.kept)
        layer.finalized.fill_(True)
        layer.log_alpha.requires_grad_(False)
    return keep


@register
class DiffPruning(Method):
    name = "diff_pruning"
    category = "selective"
    foundation_models = ("LLM",)
    papers = ("diff-pruning",)
    summary = "Learn a sparse task diff to the frozen weights, made sparse by an L0 (hard-concrete) penalty."
    update_rule = "W = W0 + z ⊙ w,  z ~ HardConcrete(log α);  loss + λ·E‖z‖₀;  then keep the top-k |z ⊙ w|"
    trainable = "diff w and gate logits log α of the targeted linear layers (after pruning: the kept entries)"
    mergeable = True
    identity_at_init = True
    Options = DiffPruningOptions
    trains_pretrained_weights = True
    slower_than_full_fine_tuning = (
        "every step samples a gate for each targeted weight and optimises both the diff and the gate logits, two "
        "weight-sized tensors; the paper (§6.1) reports that diff pruning takes about 1.5x to 2x more time per "
        "batch than fine-tuning"
    )

    def inject(self, model: nn.Module, options: DiffPruningOptions) -> None:
        wrap_targets(model, options.target_modules, lambda module: HardConcreteDiffLinear(module, options))
        train_task_head(model, options.train_head)
        first = diff_layers(model)[0]

        def add_l0_penalty(module: nn.Module, args: tuple, output: Any) -> Any:
            if module.training and getattr(output, "loss", None) is not None and not first.finalized:
                output["loss"] = output.loss + options.l0_lambda * l0_penalty(model)
            return output

        add_hook(model, model.register_forward_hook(add_l0_penalty))

    def expected_trainable(self, model: nn.Module, options: DiffPruningOptions) -> int:
        weights = targeted_weight_count(model, options.target_modules)
        head = task_head_size(model, options.train_head)
        return 2 * weights + head

    def trainable_count(self, model: nn.Module) -> int:
        # Before pruning every diff entry and gate logit trains; after, only the kept diff entries.
        layers = diff_layers(model)
        in_layers = sum(
            int(layer.kept.sum()) if layer.finalized else 2 * layer.diff.numel() for layer in layers
        )
        layer_parameters = {id(p) for layer in layers for p in (layer.diff, layer.log_alpha)}
        others = sum(
            p.numel() for p in model.parameters() if p.requires_grad and id(p) not in layer_parameters
        )
        return in_layers + others
