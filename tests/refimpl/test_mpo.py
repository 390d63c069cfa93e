"""MPO's promises: the sequential-SVD chain rebuilds W exactly at full bond dimension and approximates it ever better
as the bond grows; the central tensor is the largest and stays frozen while the auxiliary tensors train."""

from __future__ import annotations

import math

import pytest
import torch

import refimpl
from refimpl.reparameterization.mpo import (
    MPOLinear,
    MPOOptions,
    auxiliary_count,
    mpo_contract,
    mpo_decompose,
    site_sizes,
    split_evenly,
)

from .conftest import tiny_batch, train_steps


def test_index_sizes_multiply_back_to_the_dimension():
    assert split_evenly(96, 5) == [4, 3, 2, 2, 2] and math.prod(split_evenly(768, 5)) == 768
    assert split_evenly(16, 5) == [2, 2, 2, 2, 1]


def test_the_largest_index_sits_at_the_central_site_so_the_auxiliary_tensors_stay_small():
    assert site_sizes(1536, 5) == [4, 4, 6, 4, 4] and site_sizes(384, 5) == [3, 4, 4, 4, 2]
    assert auxiliary_count(1536, 384, MPOOptions()) < 0.1 * 1536 * 384  # evenly in order: 27%


@pytest.mark.parametrize(
    ("shape", "rows", "cols"), [((32, 32), [2] * 5, [2] * 5), ((24, 60), [2, 3, 4], [3, 4, 5])]
)
def test_the_decomposition_reconstructs_w_exactly_at_full_bond_dimension(shape, rows, cols):
    weight = torch.randn(*shape, dtype=torch.float64)
    tensors = mpo_decompose(weight, rows, cols, cap=None)
    assert [t.shape[1:3] for t in tensors] == list(zip(rows, cols, strict=True))
    torch.testing.assert_close(mpo_contract(tensors), weight, rtol=0, atol=1e-10)


def test_truncating_the_bond_trades_accuracy_for_size():
    weight = torch.randn(32, 32, dtype=torch.float64)
    errors = [
        (mpo_contract(mpo_decompose(weight, [2] * 5, [2] * 5, cap)) - weight).norm().item()
        for cap in (2, 4, 8, 16)
    ]
    assert errors[0] > errors[1] > errors[2] > 0 and errors[3] < 1e-10  # 16 is the largest bond here


def test_only_the_auxiliary_tensors_train_and_the_central_one_is_the_largest(fresh):
    model = refimpl.apply(fresh("bert"), "mpo")
    layers = [m for m in model.modules() if isinstance(m, MPOLinear)]
    central_before = [layer.central.clone() for layer in layers]
    train_steps(model, tiny_batch("bert"), steps=2)
    for layer, central in zip(layers, central_before, strict=True):
        assert torch.equal(layer.central, central)
        assert all(layer.central.numel() >= t.numel() for t in layer.auxiliary)
        assert all(t.requires_grad for t in layer.auxiliary) and not layer.central.requires_grad
