"""DiffuseKronA — Marjit et al., "DiffuseKronA: A Parameter Efficient Fine-tuning Method for Personalized Diffusion
Models", WACV 2025 (catalogue: diffusekrona).

    h = W0 x + (A ⊗ B) x,   A ∈ R^{a1×a2}, B ∈ R^{b1×b2}, a1·b1 = out, a2·b2 = in

Trainable: A and B of the UNet's attention projections (to_q, to_k, to_v, to_out.0 of self- and cross-attention);
no low-rank factor, and A ⊗ B folds into W0 after training. The Kronecker layer is KronA's (krona.py); what differs
is kept here:
- layers: the query, key, value and output projections (KronA: query and value);
- sizes: the authors' released Stable Diffusion script sets a1 = 64, a2 = 8 (A is 64 × 8, B is out/64 × in/8); for
  layers these do not divide (the tiny models have 32 and 96 features) the default takes gcd(64, out) and gcd(8, in),
  the largest sizes that divide both; a1 and a2 given explicitly must divide the layer;
- initialisation (the authors' code): A ~ N(0, 1/a1²), B = 0, so ΔW = 0 at the start.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import nn

from ..core.api import replace_module
from ..core.architectures import projection_names
from ..core.registry import Method, register
from ..core.targeting import find_targets, linear_dims
from .krona import KronALinear, KronAOptions, factor_shapes

PAPER_A1, PAPER_A2 = 64, 8


class DiffuseKronAOptions(KronAOptions):
    a1: int | None = Field(
        None,
        gt=0,
        description=f"rows of A (must divide out); default: gcd({PAPER_A1}, out), the paper's size",
    )
    a2: int | None = Field(
        None,
        gt=0,
        description=f"columns of A (must divide in); default: gcd({PAPER_A2}, in), the paper's size",
    )


class DiffuseKronALinear(KronALinear):
    def __init__(self, base: nn.Module, options: KronAOptions) -> None:
        super().__init__(base, options)
        with torch.no_grad():
            self.kron_A.normal_(std=1 / self.kron_A.shape[0])


def layer_options(module: nn.Module, options: DiffuseKronAOptions) -> DiffuseKronAOptions:
    """The options with this layer's factor sizes filled in."""
    in_features, out_features = linear_dims(module)
    return options.model_copy(
        update={
            "a1": options.a1 or math.gcd(PAPER_A1, out_features),
            "a2": options.a2 or math.gcd(PAPER_A2, in_features),
        }
    )


def diffusekrona_targets(model: nn.Module, options: DiffuseKronAOptions) -> list[tuple[str, nn.Module]]:
    roles = ("query", "key", "value", "attention_output")
    return find_targets(model, options.target_modules or projection_names(model, roles))


@register
class DiffuseKronA(Method):
    name = "diffusekrona"
    category = "reparameterization"
    foundation_models = ("VGM",)
    papers = ("diffusekrona",)
    summary = "Learn the UNet's attention-weight updates as Kronecker products of two small matrices."
    update_rule = "h = W0 x + (A ⊗ B) x on W_q, W_k, W_v, W_o,  B = 0 at init"
    trainable = "kron_A (a1 × a2) and kron_B (b1 × b2) of each attention projection"
    mergeable = True
    identity_at_init = True
    # The UNet first: a method is measured on its first model type's task, here one of its own FM type (VGM)
    model_types = ("unet", "bert", "gpt2", "llama")
    Options = DiffuseKronAOptions

    def inject(self, model: nn.Module, options: DiffuseKronAOptions) -> None:
        for name, module in diffusekrona_targets(model, options):
            replace_module(model, name, DiffuseKronALinear(module, layer_options(module, options)))

    def expected_trainable(self, model: nn.Module, options: DiffuseKronAOptions) -> int:
        total = 0
        for _, module in diffusekrona_targets(model, options):
            a1, a2, b1, b2 = factor_shapes(*linear_dims(module), layer_options(module, options))
            total += a1 * a2 + b1 * b2
        return total
