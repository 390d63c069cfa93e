"""Masking — Zhao et al., "Masking as an Efficient Alternative to Finetuning for Pretrained Language Models",
EMNLP 2020 (catalogue: masking).

    W = W0 ⊙ M,   M = 1[S > τ]   (S real-valued scores; ∂L/∂S taken as ∂L/∂M: the straight-through estimator)

Trainable: one score per weight of every targeted linear layer (all linear layers of the blocks by default), and
the task head, which the paper trains with the masks. Only the binary mask needs storing per task, but we count
what is learned: one score per mask entry. The scores start at `initial_score` > τ, so the mask starts all ones
and the model starts unchanged (the paper also studies starting from a partly sparse mask; not done here).

The distance from `initial_score` to τ counts in optimizer steps, not in gradient units: Adam normalises each
score's gradient, so every score moves by about the learning rate per step however small its straight-through
gradient (MiniLM's first step: RMS 2e-5). A start of 1e-2 against τ = 5e-3 is 2.5 steps at an
adapter rate of 2e-3; on the sentiment task that switched off 16 % of MiniLM's weights within
three steps and the loss never left ln 2. The default start, 5e-2, is 22 steps from τ. It is ours, not the paper's
(whose text we could not consult); the authors' released code (github.com/ptlmasking/maskbert) likewise starts
most scores tenths above its τ = 1e-2, drawing them from U(-0.02, 0.58).

Merging writes W0 ⊙ M into the weight in place. Masked-out weights would then be lost, so `merge` keeps them in
a non-persistent buffer (`masked_out`, released by `unmerge`, which adds them back: W0 ⊙ M + W0 ⊙ (1 − M) = W0
exactly, since one of the two terms is zero for every entry).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field, ValidationInfo, field_validator
from torch import nn

from ..core.errors import RefimplError
from ..core.layers import DeltaLinear, new_parameter, weight_out_in
from ..core.registry import Method, MethodOptions, register
from ..core.sparse import targeted_weight_count, task_head_size, train_task_head, wrap_targets
from ..core.targeting import Targets


class StraightThroughMask(torch.autograd.Function):
    """W0 ⊙ 1[S > τ] forward; backward ∂L/∂S = ∂L/∂W ⊙ W0, the straight-through estimator (the mask's gradient
    passed on as the scores'). One weight-sized pass each way, where composing it from autograd ops took five."""

    @staticmethod
    def forward(ctx: Any, weight: torch.Tensor, scores: torch.Tensor, threshold: float) -> torch.Tensor:
        ctx.save_for_backward(weight)
        kept = torch.empty_like(weight)
        torch.gt(scores, threshold, out=kept)  # 1 where kept, written in the weight's dtype
        return kept.mul_(weight)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor, None]:
        (weight,) = ctx.saved_tensors
        return None, grad * weight, None


class MaskedLinear(DeltaLinear):
    """A frozen linear layer whose weight is multiplied by a binary mask thresholded from learned scores."""

    def __init__(self, base: nn.Module, threshold: float, initial_score: float) -> None:
        super().__init__(base)
        self.threshold = threshold
        self.scores = new_parameter(self.out_features, self.in_features, like=base.weight, init="zeros")
        with torch.no_grad():
            self.scores.fill_(initial_score)

    def masked_weight(self) -> torch.Tensor:
        """W0 ⊙ M, with the mask's gradient passed straight through to the scores."""
        return StraightThroughMask.apply(weight_out_in(self.base), self.scores, self.threshold)

    def delta_weight(self) -> torch.Tensor:
        return self.masked_weight() - weight_out_in(self.base)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base(x)
        return F.linear(x, self.masked_weight().to(x.dtype), self.base.bias)

    @torch.no_grad()
    def merge(self) -> None:
        if self.merged:
            raise RefimplError("the adapter is already merged")
        weight = weight_out_in(self.base)
        keep = (self.scores > self.threshold).to(weight.dtype)
        self.register_buffer("masked_out", weight * (1 - keep), persistent=False)
        weight.mul_(keep)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if not self.merged:
            raise RefimplError("the adapter is not merged")
        weight_out_in(self.base).add_(self.masked_out)
        del self.masked_out
        self.merged = False


class MaskingOptions(MethodOptions):
    threshold: float = Field(5e-3, description="τ: a weight is kept where its score exceeds it")
    initial_score: float = Field(
        5e-2,
        description="every score's starting value; above τ, so the mask starts all ones (ours: see the docstring)",
    )
    target_modules: Targets = Field(
        "all-linear", description='linear layers to mask: suffixes, a regex, or "all-linear" (no heads)'
    )
    train_head: bool = Field(True, description="also train the task head, as the paper does")

    @field_validator("initial_score")
    @classmethod
    def _starts_unmasked(cls, initial_score: float, info: ValidationInfo) -> float:
        if initial_score <= info.data.get("threshold", float("-inf")):
            raise ValueError("must exceed threshold, so that the mask starts all ones")
        return initial_score


@register
class Masking(Method):
    name = "masking"
    category = "selective"
    foundation_models = ("LLM",)
    papers = ("masking",)
    summary = "Learn a binary mask over the frozen pretrained weights, thresholded from real-valued scores."
    update_rule = "W = W0 ⊙ 1[S > τ]  (straight-through gradient to the scores S)"
    trainable = "one score per weight of the masked linear layers, and the task head"
    mergeable = True
    identity_at_init = True
    Options = MaskingOptions

    def inject(self, model: nn.Module, options: MaskingOptions) -> None:
        wrap_targets(
            model,
            options.target_modules,
            lambda module: MaskedLinear(module, options.threshold, options.initial_score),
        )
        train_task_head(model, options.train_head)

    def expected_trainable(self, model: nn.Module, options: MaskingOptions) -> int:
        masks = targeted_weight_count(model, options.target_modules)
        head = task_head_size(model, options.train_head)
        return masks + head
