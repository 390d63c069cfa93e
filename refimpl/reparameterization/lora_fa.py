"""LoRA-FA — Zhang, Zhang, Shi, Chu, Li, "LoRA-FA: Memory-efficient Low-rank Adaptation for Large Language Models
Fine-tuning", arXiv 2023 (catalogue: lora-fa).

    h = W0 x + (alpha / r) · B A x,   A ∈ R^{r×in} frozen at its random init, B ∈ R^{out×r} trained (zeros at init)

Trainable: only B of each targeted linear layer, r · out parameters per layer. With A frozen, backpropagation needs
only the r-dimensional projection A x of each layer's input instead of the full input, which is where the paper's
activation-memory saving comes from (PyTorch autograd keeps x for A's gradient only when A requires it).
A is still saved in the adapter file: it is random, not derivable from the base model.
"""

from __future__ import annotations

from torch import nn

from ..core.registry import Method, register
from ..core.targeting import linear_dims
from .lora import LoRAOptions, inject_lora_layers, lora_targets


@register
class LoRAFA(Method):
    name = "lora_fa"
    category = "reparameterization"
    foundation_models = ("LLM",)
    papers = ("lora-fa",)
    summary = "LoRA with the down-projection A frozen at its random initialisation; only B is trained."
    update_rule = "h = W0 x + (alpha/r) B A x,  A frozen (random), B = 0 at init"
    trainable = "lora_B (out × r) of each targeted linear layer"
    mergeable = True
    identity_at_init = True
    Options = LoRAOptions

    def inject(self, model: nn.Module, options: LoRAOptions) -> None:
        for layer in inject_lora_layers(model, options):
            layer.lora_A.requires_grad_(False)

    def expected_trainable(self, model: nn.Module, options: LoRAOptions) -> int:
        return sum(options.r * linear_dims(module)[1] for _, module in lora_targets(model, options))
