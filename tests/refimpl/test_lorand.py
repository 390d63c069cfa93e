"""LoRand: each projection is a sum of α rank-β branches whose kernels are shared by both projections."""

from __future__ import annotations

import torch

import refimpl
from refimpl.reparameterization.lorand import LoRandAdapter, LoRandOptions


def test_each_projection_has_rank_at_most_alpha_times_beta():
    adapter = LoRandAdapter(32, LoRandOptions(branches=2, kernel_dim=3, bottleneck=16), torch.empty(0))
    down = adapter.projection(adapter.down_P, adapter.down_Q)
    up = adapter.projection(adapter.up_P, adapter.up_Q)
    assert down.shape == (16, 32) and up.shape == (32, 16)
    assert torch.linalg.matrix_rank(down) == 6 and torch.linalg.matrix_rank(up) == 6


def test_a_kernel_is_shared_by_the_down_and_the_up_projection():
    adapter = LoRandAdapter(32, LoRandOptions(branches=2, kernel_dim=3), torch.empty(0))
    adapter.projection(adapter.down_P, adapter.down_Q).sum().backward()
    down_grad = adapter.kernels.grad.clone()
    adapter.kernels.grad = None
    adapter.projection(adapter.up_P, adapter.up_Q).sum().backward()
    assert down_grad.abs().sum() > 0 and adapter.kernels.grad.abs().sum() > 0


def test_zero_init_starts_at_the_base_model_and_kaiming_does_not(fresh, batch_for):
    pixels = batch_for("vit")["pixel_values"]
    with torch.no_grad():
        base = fresh("vit")(pixel_values=pixels).logits
        zeros = refimpl.apply(fresh("vit"), "lorand", init="zeros")(pixel_values=pixels).logits
        kaiming = refimpl.apply(fresh("vit"), "lorand")(pixel_values=pixels).logits
    torch.testing.assert_close(zeros, base, rtol=0, atol=1e-6)
    assert not torch.allclose(kaiming, base)
