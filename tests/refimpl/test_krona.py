"""KronA's promises: ΔW = s·(A ⊗ B) with a1·b1 = out and a2·b2 = in, computed without forming A ⊗ B, and an update
whose rank can far exceed what its few parameters would allow a low-rank product."""

from __future__ import annotations

import pytest
import torch

import refimpl
from refimpl.reparameterization.krona import KronALinear, KronAOptions


def krona_layers(model):
    return [m for m in model.modules() if isinstance(m, KronALinear)]


def test_factor_shapes_multiply_to_the_layer_shape(fresh):
    model = refimpl.apply(fresh("gpt2"), "krona")
    (layer, *_) = krona_layers(model)  # GPT-2's fused c_attn: 32 -> 96
    assert layer.kron_A.shape == (8, 4) and layer.kron_B.shape == (12, 8)
    assert torch.count_nonzero(layer.kron_B) == 0
    assert refimpl.trainable_parameters(model)[0] == 2 * (8 * 4 + 12 * 8)


def test_the_vec_trick_and_the_formed_update_both_equal_the_explicit_kronecker_product(fresh):
    model = refimpl.apply(fresh("llama"), "krona", scale=0.5)
    for layer in krona_layers(model):
        with torch.no_grad():
            layer.kron_B.normal_()
            x = torch.randn(2, 5, layer.in_features)
            explicit = layer.base(x) + x @ (0.5 * torch.kron(layer.kron_A, layer.kron_B)).T
            for factored in (True, False):
                layer.factored = factored
                torch.testing.assert_close(layer(x), explicit, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(layer.delta_weight(), 0.5 * torch.kron(layer.kron_A, layer.kron_B))


def test_the_vec_trick_serves_where_it_saves_over_8x_the_dense_updates_work():
    wide = KronALinear(torch.nn.Linear(384, 384), KronAOptions())  # A 16×16, B 24×24: 1/16 + 1/24 of it
    narrow = KronALinear(torch.nn.Linear(32, 32), KronAOptions(a1=32, a2=8))  # A 32×8, B 1×4: 1/32 + 1/4
    assert wide.factored and not narrow.factored
    assert narrow.adapter_output(torch.randn(3, 32)) is None


def test_the_update_has_rank_rank_a_times_rank_b(fresh):
    model = refimpl.apply(fresh("bert"), "krona", a1=4, a2=4)  # A 4x4, B 8x8 on 32x32 layers
    layer = krona_layers(model)[0]
    with torch.no_grad():
        layer.kron_B.normal_()
    assert torch.linalg.matrix_rank(layer.delta_weight()) == 32  # full rank from 16 + 64 parameters


def test_a_factor_that_does_not_divide_the_layer_is_refused_by_name(fresh):
    with pytest.raises(refimpl.RefimplError, match="'a1'"):
        refimpl.apply(fresh("bert"), "krona", a1=5)
