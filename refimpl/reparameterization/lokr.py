"""LoKr — Yeh et al., "Navigating Text-To-Image Customization: From LyCORIS Fine-Tuning to Model Evaluation",
ICLR 2024 (catalogue: lycoris): LyCORIS's low-rank Kronecker-product update.

    h = W0 x + (alpha / r) · (W1 ⊗ W2) x,   W1 ∈ R^{u1×v1} whole,  W2 = B2 A2 ∈ R^{u2×v2} of rank r,
    u1·u2 = out, v1·v2 = in

Trainable: W1 (lokr_w1), and W2's factors B2 (lokr_w2_a, u2 × r) and A2 (lokr_w2_b, r × v2), of every targeted
linear layer (peft's names). Factorisation of the dimensions (LyCORIS's rule): u1 and v1 are `factor` when given,
otherwise the divisor of out (in) nearest below its square root, so W1 is the smaller factor and W2 the larger one.
W2 is kept whole when r ≥ max(u2, v2) / 2, where a rank-r factorisation would not save parameters (LyCORIS does the
same). Initialisation as in LyCORIS: W1 and B2 Kaiming-uniform, A2 (or the whole W2) zero, so ΔW = 0 at the start.

The layer is KronA's (krona.py) with its two factors computed from these parameters, so the Kronecker forward
without forming W1 ⊗ W2 and the merge are KronA's. Options and defaults are LoRA's (rank 8, alpha 16, query and value
projections) plus `factor`; LyCORIS's optional low-rank W1 ("decompose both") is not implemented.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from ..core.api import replace_module
from ..core.errors import RefimplError
from ..core.layers import DeltaLinear, new_parameter
from ..core.registry import Method, register
from ..core.targeting import linear_dims
from .krona import KronALinear, balanced_divisor, vec_trick_pays
from .lora import LoRAOptions, lora_targets


class LoKrOptions(LoRAOptions):
    factor: int | None = Field(
        None,
        gt=0,
        description="rows and columns of W1 (must divide out and in); default: divisors near √out and √in",
    )


def lokr_shapes(in_features: int, out_features: int, factor: int | None) -> tuple[int, int, int, int]:
    """(u1, v1, u2, v2): W1 is u1 × v1 and W2 is u2 × v2."""
    u1, v1 = (factor or balanced_divisor(size) for size in (out_features, in_features))
    for size, side in ((out_features, "out"), (in_features, "in")):
        if size % (factor or 1):
            raise RefimplError(
                f"option 'factor': {factor} does not divide the layer's {side}_features {size}"
            )
    return u1, v1, out_features // u1, in_features // v1


def keeps_w2_whole(r: int, u2: int, v2: int) -> bool:
    return r >= max(u2, v2) / 2


class LoKrLinear(KronALinear):
    def __init__(self, base: nn.Module, options: LoKrOptions) -> None:
        DeltaLinear.__init__(self, base)  # not KronA's whole factors: kron_A and kron_B are computed below
        u1, v1, u2, v2 = lokr_shapes(self.in_features, self.out_features, options.factor)
        self.scale = options.alpha / options.r
        self.dropout = nn.Dropout(options.dropout) if options.dropout > 0 else nn.Identity()
        self.lokr_w1 = new_parameter(u1, v1, like=base.weight, init="kaiming")
        # Dropout acts on the branch's input, so with dropout the update must run as a branch.
        self.factored = options.dropout > 0 or vec_trick_pays(u1, v2)
        self.low_rank = not keeps_w2_whole(options.r, u2, v2)
        if self.low_rank:
            self.lokr_w2_a = new_parameter(u2, options.r, like=base.weight, init="kaiming")
            self.lokr_w2_b = new_parameter(options.r, v2, like=base.weight, init="zeros")
        else:
            self.lokr_w2 = new_parameter(u2, v2, like=base.weight, init="zeros")

    @property
    def kron_A(self) -> torch.Tensor:
        return self.lokr_w1

    @property
    def kron_B(self) -> torch.Tensor:
        return self.lokr_w2_a @ self.lokr_w2_b if self.low_rank else self.lokr_w2

    def adapter_output(self, x: torch.Tensor) -> torch.Tensor:
        return super().adapter_output(self.dropout(x))


@register
class LoKr(Method):
    name = "lokr"
    category = "reparameterization"
    foundation_models = ("VGM",)
    papers = ("lycoris",)
    summary = "Learn each weight update as the Kronecker product of a small matrix and a low-rank one."
    update_rule = "h = W0 x + (alpha/r) (W1 ⊗ B2 A2) x,  A2 = 0 at init"
    trainable = "lokr_w1 (u1 × v1) and lokr_w2_a (u2 × r), lokr_w2_b (r × v2) of each targeted linear layer"
    mergeable = True
    identity_at_init = True
    # The UNet first: a method is measured on its first model type's task, here one of its own FM type (VGM)
    model_types = ("unet", "bert", "gpt2", "llama", "vit", "clip")
    Options = LoKrOptions

    def inject(self, model: nn.Module, options: LoKrOptions) -> None:
        for name, module in lora_targets(model, options):
            replace_module(model, name, LoKrLinear(module, options))

    def expected_trainable(self, model: nn.Module, options: LoKrOptions) -> int:
        """u1·v1 + r·(u2 + v2) per layer, or u1·v1 + u2·v2 where W2 stays whole."""
        total = 0
        for _, module in lora_targets(model, options):
            u1, v1, u2, v2 = lokr_shapes(*linear_dims(module), options.factor)
            w2 = u2 * v2 if keeps_w2_whole(options.r, u2, v2) else options.r * (u2 + v2)
            total += u1 * v1 + w2
        return total
