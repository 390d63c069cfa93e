"""LoRA — Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022 (catalogue: lora).

    h = W0 x + (alpha / r) · B A x,   A ∈ R^{r×in} (Kaiming-uniform), B ∈ R^{out×r} (zeros, so ΔW = 0 at start)

Trainable: A and B of every targeted linear layer (by default the attention query and value projections).
The product BA folds into W0 after training (`refimpl.merge`), so inference costs nothing extra.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from transformers.pytorch_utils import Conv1D

from ..core.api import replace_module
from ..core.architectures import projection_names
from ..core.layers import DeltaLinear, new_parameter, weight_out_in
from ..core.registry import Method, MethodOptions, register
from ..core.targeting import Targets, find_targets, linear_dims


class LoRAProduct(torch.autograd.Function):
    """W0 x + b + s · B(A x) with its backward written out. Autograd would write the update and its input gradient
    each into a new activation-sized tensor and then add them; here both are accumulated into the base product's
    tensors in place (`addmm_`), which on CPU brings LoRA's step close to the frozen model's own backward.
    The r-wide intermediate is kept as (r, tokens): with the token axis innermost, the two thin products that
    contract over tokens (A x and grad_B) run at about twice the speed of the (tokens, r) layout on CPU BLAS."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        lora_A: torch.Tensor,
        lora_B: torch.Tensor,
        scaling: float,
    ) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        down_t = lora_A @ rows.T  # (r, tokens)
        out = rows @ weight.T if bias is None else torch.addmm(bias, rows, weight.T)
        out.addmm_(down_t.T, lora_B.T, alpha=scaling)
        ctx.save_for_backward(rows, weight, lora_A, lora_B, down_t)
        ctx.scaling = scaling
        return out.view(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        rows, weight, lora_A, lora_B, down_t = ctx.saved_tensors
        needs_x, needs_weight, needs_bias, needs_A, needs_B, _ = ctx.needs_input_grad
        grad = grad_out.reshape(-1, grad_out.shape[-1])
        grad_down = grad @ lora_B  # (tokens, r), before the scale
        grad_x = (grad @ weight).addmm_(grad_down, lora_A, alpha=ctx.scaling) if needs_x else None
        return (
            grad_x.view(*grad_out.shape[:-1], weight.shape[1]) if needs_x else None,
            grad.T @ rows if needs_weight else None,
            grad.sum(0) if needs_bias else None,
            ctx.scaling * (grad_down.T @ rows) if needs_A else None,
            ctx.scaling * (down_t @ grad).T if needs_B else None,
            None,
        )


class LoRALinear(DeltaLinear):
    def __init__(self, base: nn.Module, r: int, alpha: float, dropout: float = 0.0) -> None:
        super().__init__(base)
        self.r = r
        self.scaling = alpha / r
        self.lora_A = new_parameter(r, self.in_features, like=base.weight, init="kaiming")
        self.lora_B = new_parameter(self.out_features, r, like=base.weight, init="zeros")
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        # LoRAProduct computes exactly this layer's function, so it serves wherever the branch is plain LoRA's:
        # not in variants that redefine `adapter_output`, nor with dropout on the branch.
        self.plain_branch = (
            type(self).adapter_output is LoRALinear.adapter_output
            and dropout == 0
            and isinstance(base, (nn.Linear, Conv1D))
        )

    def delta_weight(self) -> torch.Tensor:
        return (self.lora_B @ self.lora_A) * self.scaling

    def adapter_output(self, x: torch.Tensor) -> torch.Tensor:
        # Two thin matmuls (x A^T, then B^T) instead of materialising the full out×in update, with the scale
        # applied to the r-wide intermediate rather than to the full-width output.
        return F.linear(F.linear(self.dropout(x), self.lora_A) * self.scaling, self.lora_B)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        usable = self.plain_branch and not self.merged and not torch.is_autocast_enabled(x.device.type)
        if not usable or not x.dtype == self.base.weight.dtype == self.lora_A.dtype:
            return super().forward(x)
        return LoRAProduct.apply(
            x, weight_out_in(self.base), self.base.bias, self.lora_A, self.lora_B, self.scaling
        )


class LoRAOptions(MethodOptions):
    r: int = Field(8, gt=0, description="rank of the update")
    alpha: float = Field(16.0, gt=0, description="scaling numerator: the update is multiplied by alpha / r")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the LoRA branch input")
    target_modules: Targets | None = Field(
        None,
        description='suffixes, a regex, or "all-linear"; default: the attention query and value projections',
    )


def lora_targets(model: nn.Module, options: LoRAOptions) -> list[tuple[str, nn.Module]]:
    targets = options.target_modules or projection_names(model, ("query", "value"))
    return find_targets(model, targets)


def inject_lora_layers(
    model: nn.Module, options: LoRAOptions, layer: type[LoRALinear] = LoRALinear, **extra: object
) -> list[LoRALinear]:
    """Wrap every targeted linear layer in `layer`; shared by the LoRA variants."""
    layers = []
    for name, module in lora_targets(model, options):
        wrapped = layer(module, r=options.r, alpha=options.alpha, dropout=options.dropout, **extra)
        replace_module(model, name, wrapped)
        layers.append(wrapped)
    return layers


def lora_parameter_count(model: nn.Module, options: LoRAOptions) -> int:
    """r · (in + out) per adapted layer."""
    return sum(options.r * sum(linear_dims(module)) for _, module in lora_targets(model, options))


@register
class LoRA(Method):
    name = "lora"
    category = "reparameterization"
    foundation_models = ("LLM", "VFM", "VLM", "MFM", "VGM")
    papers = ("lora",)
    summary = (
        "Learn each weight update as a rank-r product BA beside the frozen layer; merge it after training."
    )
    update_rule = "h = W0 x + (alpha/r) B A x,  B = 0 at init"
    trainable = "lora_A (r × in) and lora_B (out × r) of each targeted linear layer"
    mergeable = True
    identity_at_init = True
    model_types = ("bert", "gpt2", "llama", "vit", "clip", "unet")
    Options = LoRAOptions

    def inject(self, model: nn.Module, options: LoRAOptions) -> None:
        inject_lora_layers(model, options)

    def expected_trainable(self, model: nn.Module, options: LoRAOptions) -> int:
        """r · (in + out) for every adapted linear layer."""
        return lora_parameter_count(model, options)
