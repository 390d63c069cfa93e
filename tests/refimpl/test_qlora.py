"""QLoRA's promises: NF4 levels are normal quantiles, the 4-bit round trip stays within half a level gap of the block
absmax, weights are stored in about half a byte each, and the model stays close to the full-precision LoRA model.

peft's QLoRA path is not cross-checked: it quantises through bitsandbytes, which is not installed and needs CUDA."""

from __future__ import annotations

import pytest
import torch

import refimpl
from refimpl.core.layers import weight_out_in
from refimpl.reparameterization.qlora import (
    NF4_LEVELS,
    NF4Linear,
    QLoRALinear,
    dequantize_constants,
    nf4_dequantize,
    nf4_quantize,
    pack_nibbles,
    quantize_constants,
    unpack_nibbles,
)

from .conftest import tiny_batch

BLOCK = 64
HALF_LARGEST_GAP = (NF4_LEVELS[1:] - NF4_LEVELS[:-1]).max().item() / 2


def normal_quantile(p: torch.Tensor) -> torch.Tensor:
    return 2**0.5 * torch.erfinv(2 * p - 1)


def test_nf4_levels_are_the_papers_normal_quantiles():
    # Paper: quantiles of N(0, 1) at evenly spaced probabilities up to 1 - delta, delta = (1/32 + 1/30) / 2,
    # eight for the positive half and seven for the negative half, plus an exact zero, scaled into [-1, 1].
    top = 1 - (1 / 32 + 1 / 30) / 2
    positive = normal_quantile(torch.linspace(0.5, top, 9, dtype=torch.float64)[1:])
    negative = -normal_quantile(torch.linspace(0.5, top, 8, dtype=torch.float64)[1:]).flip(0)
    expected = torch.cat([negative, torch.zeros(1, dtype=torch.float64), positive]) / positive[-1]
    torch.testing.assert_close(NF4_LEVELS.double(), expected, rtol=0, atol=1e-6)


def test_nf4_round_trip_error_is_at_most_half_the_largest_level_gap_times_the_block_absmax():
    weight = torch.randn(96, 40) * 0.05  # 3840 weights: 60 blocks of 64
    codes, absmax = nf4_quantize(weight, BLOCK)
    error = (nf4_dequantize(codes, absmax, weight.shape) - weight).abs().view(-1, BLOCK)
    assert (error.amax(dim=1) <= HALF_LARGEST_GAP * absmax + 1e-7).all()
    assert error.max() > 0.1 * HALF_LARGEST_GAP * absmax.min()  # it is a real quantisation, not a copy


def test_double_quantisation_adds_at_most_half_an_int8_step_per_constant():
    absmax = torch.rand(600) * 0.3 + 0.1
    codes, scales, offset = quantize_constants(absmax, 256)
    assert codes.dtype == torch.int8 and scales.numel() == 3
    restored = dequantize_constants(codes, scales, offset, 256)
    step = scales.repeat_interleave(256)[:600] / 127
    assert ((restored - absmax).abs() <= step / 2 + 1e-7).all()


def test_two_codes_are_packed_per_byte_and_unpack_exactly():
    codes = torch.randint(0, 16, (130,), dtype=torch.uint8)
    packed = pack_nibbles(codes)
    assert packed.dtype == torch.uint8 and packed.numel() == 65
    assert torch.equal(unpack_nibbles(packed), codes)


def test_linear_weights_are_stored_in_4_bits_and_leave_the_module_tree(fresh):
    base = fresh("llama", hidden=64)
    weights = {
        name: weight_out_in(module).clone()
        for name, module in base.named_modules()
        if hasattr(module, "in_features") and name != "lm_head"
    }
    total_before = refimpl.trainable_parameters(base)[1]
    model = refimpl.apply(base, "qlora", r=8)
    quantized = {name: m for name, m in model.named_modules() if isinstance(m, NF4Linear)}
    assert {name.removesuffix(".base") for name in quantized} == set(weights)
    assert not any(name.endswith(("proj.weight", "proj.base.weight")) for name, _ in model.named_parameters())
    stored = sum(m.storage_bytes() for m in quantized.values())
    fp32_bytes = 4 * sum(w.numel() for w in weights.values())
    assert stored / fp32_bytes <= 0.16  # 4 bits = 0.125 of fp32, plus the block constants
    for name, layer in quantized.items():
        original = weights[name.removesuffix(".base")]
        blocks_absmax = original.flatten().abs().view(-1, BLOCK).amax(dim=1)
        error = (layer.dequantized_weight() - original).abs().flatten().view(-1, BLOCK).amax(dim=1)
        assert (error <= HALF_LARGEST_GAP * blocks_absmax * 1.01 + 1e-6).all()
    trainable, total = refimpl.trainable_parameters(model)
    assert total == total_before + trainable  # quantised weights are still counted


@pytest.mark.parametrize("model_type", ["bert", "gpt2", "llama"])
def test_outputs_stay_close_to_the_full_precision_lora_model(fresh, model_type):
    options = {"r": 8, "alpha": 16.0, "dropout": 0.0, "target_modules": "all-linear"}
    quantized = refimpl.apply(fresh(model_type), "qlora", **options)
    full = refimpl.apply(fresh(model_type), "lora", **options)
    with torch.no_grad():
        for name, layer in quantized.named_modules():
            if isinstance(layer, QLoRALinear):
                layer.lora_B.normal_(std=0.1)
                full.get_submodule(name).lora_A.copy_(layer.lora_A)
                full.get_submodule(name).lora_B.copy_(layer.lora_B)
        batch = tiny_batch(model_type)
        expected = full(input_ids=batch["input_ids"]).logits
        error = (quantized(input_ids=batch["input_ids"]).logits - expected).norm() / expected.norm()
    assert 0 < error < 0.1


def test_merge_materialises_the_dequantised_weight_plus_the_update(fresh):
    model = refimpl.apply(fresh("gpt2"), "qlora", r=4)
    layer = next(m for m in model.modules() if isinstance(m, QLoRALinear))
    with torch.no_grad():
        layer.lora_B.normal_()
    refimpl.merge(model)
    expected = layer.base.dequantized_weight() + layer.delta_weight()
    torch.testing.assert_close(layer.merged_weight, expected)
    refimpl.unmerge(model)
    assert not hasattr(layer, "merged_weight")


def test_an_odd_block_size_is_refused_by_name(fresh):
    with pytest.raises(refimpl.RefimplError, match="block_size"):
        refimpl.apply(fresh("gpt2"), "qlora", block_size=63)
