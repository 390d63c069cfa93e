"""LION — Wang, Chang, Zhai, Luo, Sun, Lin and Tian, "LION: Implicit Vision Prompt Tuning", AAAI 2024
(catalogue: lion).

    z* = tanh(Ŵ z* + U x + b)  (an equilibrium point, found by fixed-point iteration),   y = x + V z*

Two such implicit layers are the prompts: one at the input of the frozen ViT (on the patch-embedding tokens,
before the first block) and one at its output (on the final normed hidden states, before the head). Trainable:
both layers (W ∈ R^{m×m}, U ∈ R^{m×d}, b ∈ R^m, V ∈ R^{d×m} each), and the head only if `train_head`. V starts
at zero, so the adapted model starts exactly at the base model.

What we simplified, and why: the equilibrium is reached by `iterations` unrolled fixed-point steps from z = 0
and differentiated through the unrolled steps, not by a root solver with implicit differentiation (cheap and
exact enough for a few steps); Ŵ = 0.9 · W / max(1, ‖W‖_F) keeps the map a contraction (tanh is 1-Lipschitz
and ‖Ŵ‖₂ ≤ ‖Ŵ‖_F ≤ 0.9), so the iteration converges and the fixed point is unique; the state z has width m (a
bottleneck) to keep the layers light; the input layer acts on patch tokens rather than on raw pixels; the
paper's lottery-ticket pruning of the two layers (its robust training) is not implemented.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..core.api import add_hook, attach_module
from ..core.architectures import hidden_size
from ..core.layers import new_parameter
from ..core.registry import Method, MethodOptions, register
from ..core.vision import classifier_parameters
from .vp import pixel_embedding

CONTRACTION = 0.9  # bound on the spectral norm of the recurrent weight


class ImplicitLayer(nn.Module):
    """y = x + V z*, z* the fixed point of z = tanh(Ŵ z + U x + b) after `iterations` steps."""

    def __init__(self, hidden: int, state: int, iterations: int, like: torch.Tensor) -> None:
        super().__init__()
        self.iterations = iterations
        self.recurrent = new_parameter(state, state, like=like, init="normal")
        self.injection = new_parameter(state, hidden, like=like, init="kaiming")
        self.bias = new_parameter(state, like=like)
        self.readout = new_parameter(hidden, state, like=like)  # zero: the layer starts as the identity

    def contractive_weight(self) -> torch.Tensor:
        return CONTRACTION * self.recurrent / self.recurrent.norm().clamp_min(1.0)

    def equilibrium(self, x: torch.Tensor) -> torch.Tensor:
        weight, injected = self.contractive_weight(), F.linear(x, self.injection, self.bias)
        z = torch.zeros_like(injected)
        for _ in range(self.iterations):
            z = torch.tanh(F.linear(z, weight) + injected)
        return z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + F.linear(self.equilibrium(x), self.readout)

    @staticmethod
    def parameter_count(hidden: int, state: int) -> int:
        return state * state + 2 * state * hidden + state


class LIONOptions(MethodOptions):
    state_size: int = Field(8, gt=0, description="width m of each implicit layer's equilibrium state")
    iterations: int = Field(6, gt=0, description="fixed-point iterations used to reach the equilibrium")
    train_head: bool = Field(False, description="also train the classification head")


@register
class LION(Method):
    name = "lion"
    category = "prompt"
    foundation_models = ("VFM",)
    papers = ("lion",)
    summary = (
        "Two light equilibrium (implicit) layers as prompts at the input and the output of a frozen ViT."
    )
    update_rule = "y = x + V z*,  z* = tanh(Ŵ z* + U x + b)  (at the input tokens and at the output features)"
    trainable = "the two implicit layers (W, U, b, V each); the head only if train_head"
    identity_at_init = True
    model_types = ("vit",)
    Options = LIONOptions

    def inject(self, model: nn.Module, options: LIONOptions) -> None:
        like = next(model.parameters())
        layers = {
            place: ImplicitLayer(hidden_size(model), options.state_size, options.iterations, like)
            for place in ("input", "output")
        }
        attach_module(model, "implicit_prompts", nn.ModuleDict(layers))
        final_norm = getattr(model, model.base_model_prefix).layernorm
        for place, module in (("input", pixel_embedding(model)), ("output", final_norm)):
            hook = module.register_forward_hook(lambda m, args, out, layer=layers[place]: layer(out))
            add_hook(model, hook)
        for parameter in classifier_parameters(model) if options.train_head else []:
            parameter.requires_grad_(True)

    def expected_trainable(self, model: nn.Module, options: LIONOptions) -> int:
        layers = 2 * ImplicitLayer.parameter_count(hidden_size(model), options.state_size)
        head = sum(p.numel() for p in classifier_parameters(model)) if options.train_head else 0
        return layers + head
