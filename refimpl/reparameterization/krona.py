"""KronA — Edalati et al., "KronA: Parameter Efficient Tuning with Kronecker Adapter", NeurIPS 2023 workshop
ENLSP-III (catalogue: krona).

    h = W0 x + s · (A ⊗ B) x,   A ∈ R^{a1×a2}, B ∈ R^{b1×b2}, a1·b1 = out, a2·b2 = in

Trainable: A and B of every targeted linear layer (by default the attention query and value projections, as for
LoRA): a1·a2 + b1·b2 parameters per layer, while the Kronecker product can have rank up to rank(A)·rank(B).

Forward without forming A ⊗ B (the "vec trick") where the factors are large enough for it to pay: with x read
row-major as X ∈ R^{a2×b2}, (A ⊗ B) x is A X Bᵀ read row-major, two small matmuls. A starts Kaiming-uniform and B
at zero, so the update starts at zero; A ⊗ B folds into W0 after training. Factor shapes: `a1` and `a2` if given, otherwise the divisor of out (in) nearest below its square
root, so that both factors are about equally small. The scale s defaults to 1 (our choice).
"""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import nn

from ..core.api import replace_module
from ..core.errors import RefimplError
from ..core.layers import DeltaLinear, new_parameter
from ..core.registry import Method, MethodOptions, register
from ..core.targeting import Targets, linear_dims
from .lora import lora_targets


class KronAOptions(MethodOptions):
    a1: int | None = Field(
        None, gt=0, description="rows of A (must divide out); default: a divisor near √out"
    )
    a2: int | None = Field(
        None, gt=0, description="columns of A (must divide in); default: a divisor near √in"
    )
    scale: float = Field(1.0, gt=0, description="s: the update is s · (A ⊗ B)")
    target_modules: Targets | None = Field(
        None,
        description='suffixes, a regex, or "all-linear"; default: the attention query and value projections',
    )


def balanced_divisor(n: int) -> int:
    """The largest divisor of n that is at most √n."""
    return next(d for d in range(math.isqrt(n), 0, -1) if n % d == 0)


def factor_shapes(in_features: int, out_features: int, options: KronAOptions) -> tuple[int, int, int, int]:
    """(a1, a2, b1, b2) for one layer."""
    a1 = options.a1 or balanced_divisor(out_features)
    a2 = options.a2 or balanced_divisor(in_features)
    for option, value, size, side in (("a1", a1, out_features, "out"), ("a2", a2, in_features, "in")):
        if size % value:
            raise RefimplError(
                f"option {option!r}: {value} does not divide the layer's {side}_features {size}"
            )
    return a1, a2, out_features // a1, in_features // a2


def vec_trick_pays(a1: int, b2: int) -> bool:
    """Whether to compute (A ⊗ B) x as A X Bᵀ rather than through W0 + ΔW. The vec trick does 1/a1 + 1/b2 of the
    multiply-adds of the formed ΔW's weight gradient, but in matmuls only a few columns wide, which run far below a
    CPU's peak; where it saves less than 8x (the tiny UNet's layers with DiffuseKronA's 32×8 ⊗ 1×4 factors: 0.28)
    ΔW is formed and added to W0."""
    return 1 / a1 + 1 / b2 < 1 / 8


class KronALinear(DeltaLinear):
    def __init__(self, base: nn.Module, options: KronAOptions) -> None:
        super().__init__(base)
        a1, a2, b1, b2 = factor_shapes(self.in_features, self.out_features, options)
        self.scale = options.scale
        self.kron_A = new_parameter(a1, a2, like=base.weight, init="kaiming")
        self.kron_B = new_parameter(b1, b2, like=base.weight, init="zeros")
        self.factored = vec_trick_pays(a1, b2)

    def delta_weight(self) -> torch.Tensor:
        return torch.kron(self.kron_A, self.kron_B) * self.scale

    def adapter_output(self, x: torch.Tensor) -> torch.Tensor | None:
        if not self.factored:
            return None
        a, b = self.kron_A.to(x.dtype), self.kron_B.to(x.dtype)
        grid = x.reshape(*x.shape[:-1], a.shape[1], b.shape[1])  # X with x = vec_row(X)
        return (a @ grid @ b.T).reshape(*x.shape[:-1], self.out_features) * self.scale


@register
class KronA(Method):
    name = "krona"
    category = "reparameterization"
    foundation_models = ("LLM",)
    papers = ("krona",)
    summary = (
        "Learn each weight update as the Kronecker product of two small matrices beside the frozen layer."
    )
    update_rule = "h = W0 x + s (A ⊗ B) x,  B = 0 at init"
    trainable = "kron_A (a1 × a2) and kron_B (b1 × b2) of each targeted linear layer"
    mergeable = True
    identity_at_init = True
    Options = KronAOptions

    def inject(self, model: nn.Module, options: KronAOptions) -> None:
        for name, module in lora_targets(model, options):
            replace_module(model, name, KronALinear(module, options))

    def expected_trainable(self, model: nn.Module, options: KronAOptions) -> int:
        total = 0
        for _, module in lora_targets(model, options):
            a1, a2, b1, b2 = factor_shapes(*linear_dims(module), options)
            total += a1 * a2 + b1 * b2
        return total
