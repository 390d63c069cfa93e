"""LoHa — Yeh et al., "Navigating Text-To-Image Customization: From LyCORIS Fine-Tuning to Model Evaluation",
ICLR 2024 (catalogue: lycoris): LyCORIS's low-rank Hadamard-product update.

    h = W0 x + (alpha / r) · ((B1 A1) ⊙ (B2 A2)) x,   A_i ∈ R^{r×in}, B_i ∈ R^{out×r}

Trainable: both factor pairs of every targeted linear layer, 2·r·(in + out) parameters (as many as LoRA of rank 2r),
while the element-wise product of two rank-r matrices can reach rank r². The first pair is LoRA's own (lora_A
Kaiming, lora_B zero, so ΔW = 0 at the start); the second pair (hada_A, hada_B) is Kaiming-initialised so that the
gradient reaches lora_B. ΔW folds into W0 after training. The forward forms ΔW (out × in) explicitly: a Hadamard
product has no cheaper factored form. Options and defaults are LoRA's (rank 8, alpha 16, the query and value
projections: to_q and to_v in a diffusion UNet).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core.layers import new_parameter
from ..core.registry import Method, register
from .lora import LoRALinear, LoRAOptions, inject_lora_layers, lora_parameter_count


class LoHaLinear(LoRALinear):
    def __init__(self, base: nn.Module, r: int, alpha: float, dropout: float = 0.0) -> None:
        super().__init__(base, r, alpha, dropout)
        self.hada_A = new_parameter(r, self.in_features, like=base.weight, init="kaiming")
        self.hada_B = new_parameter(self.out_features, r, like=base.weight, init="kaiming")

    def delta_weight(self) -> torch.Tensor:
        return (self.lora_B @ self.lora_A) * (self.hada_B @ self.hada_A) * self.scaling

    def adapter_output(self, x: torch.Tensor) -> torch.Tensor | None:
        # ΔW is dense: only dropout on the branch's input keeps it from folding into one matmul with W0 + ΔW.
        return (
            None
            if isinstance(self.dropout, nn.Identity)
            else F.linear(self.dropout(x), self.delta_weight().to(x.dtype))
        )


@register
class LoHa(Method):
    name = "loha"
    category = "reparameterization"
    foundation_models = ("VGM",)
    papers = ("lycoris",)
    summary = (
        "Learn each weight update as the Hadamard product of two low-rank products; merge it after training."
    )
    update_rule = "h = W0 x + (alpha/r) ((B1 A1) ⊙ (B2 A2)) x,  B1 = 0 at init"
    trainable = "two rank-r factor pairs (lora_A, lora_B, hada_A, hada_B) of each targeted linear layer"
    mergeable = True
    identity_at_init = True
    # The UNet first: a method is measured on its first model type's task, here one of its own FM type (VGM)
    model_types = ("unet", "bert", "gpt2", "llama", "vit", "clip")
    Options = LoRAOptions

    def inject(self, model: nn.Module, options: LoRAOptions) -> None:
        inject_lora_layers(model, options, layer=LoHaLinear)

    def expected_trainable(self, model: nn.Module, options: LoRAOptions) -> int:
        """Two LoRA-sized pairs, 2 · r · (in + out), per adapted layer."""
        return 2 * lora_parameter_count(model, options)
