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
bottleneck) to keep the layers light; the input layer acts on patch tokens rather than on raw pixels. The
paper prunes the two layers following the lottery-ticket hypothesis; `prune_implicit_layers(model, sparsity)`
does magnitude pruning with masks (persistent buffers, so adapter files carry them), without rewinding the
kept weights to their initial values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..core.api import add_hook, attach_module
from ..core.architectures import hidden_size
from ..core.errors import RefimplError
from ..core.layers import new_parameter
from ..core.registry import Method, MethodOptions, register
from ..core.vision import classifier_parameters
from .vp import pixel_embedding

CONTRACTION = 0.9  # bound on the spectral norm of the recurrent weight
PRUNABLE = ("recurrent", "injection", "readout")  # the weight matrices magnitude pruning acts on


class ImplicitLayer(nn.Module):
    """y = x + V z*, z* the fixed point of z = tanh(Ŵ z + U x + b) after `iterations` steps."""

    def __init__(self, hidden: int, state: int, iterations: int, like: torch.Tensor) -> None:
        super().__init__()
        self.iterations = iterations
        self.recurrent = new_parameter(state, state, like=like, init="normal")
        self.injection = new_parameter(state, hidden, like=like, init="kaiming")
        self.bias = new_parameter(state, like=like)
        self.readout = new_parameter(hidden, state, like=like)  # zero: the layer starts as the identity
        for name in PRUNABLE:  # pruning masks: all kept until `prune_implicit_layers` removes entries
            self.register_buffer(f"{name}_mask", torch.ones_like(getattr(self, name), dtype=torch.bool))

    def masked(self, name: str) -> torch.Tensor:
        return getattr(self, name) * getattr(self, f"{name}_mask")

    def contractive_weight(self) -> torch.Tensor:
        recurrent = self.masked("recurrent")
        return CONTRACTION * recurrent / recurrent.norm().clamp_min(1.0)

    def equilibrium(self, x: torch.Tensor) -> torch.Tensor:
        weight, injected = self.contractive_weight(), F.linear(x, self.masked("injection"), self.bias)
        z = torch.zeros_like(injected)
        for _ in range(self.iterations):
            z = torch.tanh(F.linear(z, weight) + injected)
        return z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + F.linear(self.equilibrium(x), self.masked("readout"))

    def pruned_count(self) -> int:
        return sum(int((~getattr(self, f"{name}_mask")).sum()) for name in PRUNABLE)

    @staticmethod
    def parameter_count(hidden: int, state: int) -> int:
        return state * state + 2 * state * hidden + state


@torch.no_grad()
def prune_implicit_layers(model: nn.Module, sparsity: float) -> int:
    """Magnitude pruning of both implicit layers: in each weight matrix keep the (1 − sparsity) share of
    entries with the largest |w| (entries pruned before stay pruned); returns how many are pruned in all."""
    if not 0 <= sparsity < 1:
        raise RefimplError(f"lion: sparsity must be in [0, 1), got {sparsity}")
    layers = list(model.implicit_prompts.values())
    for layer in layers:
        for name in PRUNABLE:
            weight, mask = getattr(layer, name), getattr(layer, f"{name}_mask")
            keep = min(int(mask.sum()), round(weight.numel() * (1 - sparsity)))
            scores = weight.abs().float().masked_fill(~mask, -1.0)  # pruned entries stay pruned
            mask.zero_().view(-1)[scores.flatten().topk(keep).indices] = True
    return sum(layer.pruned_count() for layer in layers)


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

    def trainable_count(self, model: nn.Module) -> int:
        """Trainable parameters less the entries pruning removed."""
        pruned = sum(layer.pruned_count() for layer in model.implicit_prompts.values())
        return super().trainable_count(model) - pruned

    def expected_trainable(self, model: nn.Module, options: LIONOptions) -> int:
        layers = 2 * ImplicitLayer.parameter_count(hidden_size(model), options.state_size)
        head = sum(p.numel() for p in classifier_parameters(model)) if options.train_head else 0
        return layers + head
