"""DiffuseKronA's promises: a Kronecker update on every attention projection of the UNet, the paper's factor sizes
(A 64 × 8) where they divide the layer and their gcd with it where not, and A ~ N(0, 1/a1²) with B = 0."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import refimpl
from refimpl.reparameterization.diffusekrona import (
    DiffuseKronALinear,
    DiffuseKronAOptions,
    layer_options,
)


def test_a_stable_diffusion_sized_layer_gets_the_papers_factor_sizes():
    layer = nn.Linear(320, 640)
    adapter = DiffuseKronALinear(layer, layer_options(layer, DiffuseKronAOptions()))
    assert adapter.kron_A.shape == (64, 8) and adapter.kron_B.shape == (10, 40)
    assert torch.count_nonzero(adapter.kron_B) == 0
    assert adapter.kron_A.std().item() == pytest.approx(1 / 64, rel=0.15)


def test_every_attention_projection_of_the_unet_is_adapted(fresh):
    model = refimpl.apply(fresh("unet"), "diffusekrona")
    names = [name for name, module in model.named_modules() if isinstance(module, DiffuseKronALinear)]
    assert len(names) == 4 * 2 * 4
    for projection in (
        "to_q",
        "to_k",
        "to_v",
        "to_out.0",
    ):  # in self- and cross-attention of 4 transformer blocks
        assert sum(name.endswith("." + projection) for name in names) == 2 * 4
    layers = [model.get_submodule(name) for name in names]
    # 32 features: gcd(64, 32) = 32 rows, gcd(8, 32) = 8 columns, so B is 1 × 4; the mid block's 64: B is 1 × 8.
    shapes = {(tuple(m.kron_A.shape), tuple(m.kron_B.shape)) for m in layers}
    assert shapes == {((32, 8), (1, 4)), ((64, 8), (1, 8)), ((64, 8), (1, 4))}


def test_explicit_factor_sizes_must_divide_the_layer(fresh):
    with pytest.raises(refimpl.RefimplError, match="'a2'"):
        refimpl.apply(fresh("unet"), "diffusekrona", a2=5)
