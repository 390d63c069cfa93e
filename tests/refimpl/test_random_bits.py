"""The weight-sized random draws of Child-Tuning_F and diff pruning (`core.sparse.random_int16`)."""

from __future__ import annotations

import torch

from refimpl.core.sparse import int16_threshold, random_int16


def test_every_bit_of_every_entry_is_a_fair_coin_whatever_its_place_in_the_64_bit_draw():
    torch.manual_seed(0)
    draws = random_int16(torch.Size([1 << 18]), torch.device("cpu")).to(torch.int32) & 0xFFFF
    bits = torch.stack([(draws >> b) & 1 for b in range(16)], dim=1).float()  # (draws, bit)
    for lane in range(4):  # each 64-bit word fills four consecutive entries
        frequency = bits[lane::4].mean(dim=0)
        assert ((frequency - 0.5).abs() < 0.01).all(), (lane, frequency)


def test_draws_follow_the_seed_and_the_requested_shape():
    torch.manual_seed(3)
    first = random_int16(torch.Size([5, 7]), torch.device("cpu"))
    torch.manual_seed(3)
    second = random_int16(torch.Size([5, 7]), torch.device("cpu"))
    assert first.shape == (5, 7) and first.dtype == torch.int16
    assert torch.equal(first, second)


def test_a_threshold_keeps_its_probability_to_16_bits():
    below, exact = int16_threshold(0.3)
    assert exact == 19661 / 65536
    torch.manual_seed(1)
    kept = random_int16(torch.Size([1 << 20]), torch.device("cpu")) < below
    assert abs(kept.float().mean().item() - exact) < 0.002
    assert int16_threshold(1.0) == (32768, 1.0)  # every int16 value is below 32768
