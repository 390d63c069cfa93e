"""LoHa's promises: ΔW = (alpha/r)·(B1 A1) ⊙ (B2 A2) reaches a rank beyond what LoRA gets from the same parameters,
and it reproduces huggingface peft's LoHa in count and outputs, with the same factors, on a text encoder and on the
diffusion UNet."""

from __future__ import annotations

import pytest
import torch

import refimpl
from refimpl.models import TINY_MODELS
from refimpl.reparameterization.loha import LoHaLinear

from .conftest import tiny_batch

TARGETS = {"bert": ["query", "value"], "unet": ["to_q", "to_v"]}
# peft's factor names -> ours: hada_w1_a (out × r) @ hada_w1_b (r × in) is our first pair, lora_B @ lora_A.
PEFT_FACTORS = {"hada_w1_a": "lora_B", "hada_w1_b": "lora_A", "hada_w2_a": "hada_B", "hada_w2_b": "hada_A"}


def outputs(model, model_type):
    with torch.no_grad():
        return TINY_MODELS[model_type].output(model, tiny_batch(model_type))


def test_the_hadamard_product_reaches_rank_r_squared(fresh):
    model = refimpl.apply(fresh("bert"), "loha", r=4)
    layer = next(m for m in model.modules() if isinstance(m, LoHaLinear))
    with torch.no_grad():
        layer.lora_B.normal_()
    # 2·4·(32 + 32) parameters, as many as LoRA of rank 8, give rank 16 on this 32 × 32 layer.
    assert torch.linalg.matrix_rank(layer.delta_weight()) == 16


@pytest.mark.parametrize("model_type", ["bert", "unet"])
def test_loha_matches_peft_in_count_and_outputs(fresh, model_type):
    peft = pytest.importorskip("peft")
    config = peft.LoHaConfig(r=4, alpha=8, target_modules=TARGETS[model_type])
    reference = peft.inject_adapter_in_model(config, fresh(model_type))
    ours = refimpl.apply(fresh(model_type), "loha", r=4, alpha=8.0, target_modules=TARGETS[model_type])
    factors = {name: p for name, p in reference.named_parameters() if ".hada_" in name}
    assert refimpl.trainable_parameters(ours)[0] == sum(p.numel() for p in factors.values())
    ours_by_name = dict(ours.named_parameters())
    with torch.no_grad():
        for name, tensor in factors.items():
            tensor.normal_(std=0.5)  # peft zero-initialises one factor: make all four non-trivial
            layer, factor, _adapter = name.rsplit(".", 2)
            ours_by_name[f"{layer}.{PEFT_FACTORS[factor]}"].copy_(tensor)
    expected = outputs(reference, model_type)
    assert (expected - outputs(fresh(model_type), model_type)).abs().max() > 1e-3
    torch.testing.assert_close(outputs(ours, model_type), expected, rtol=0, atol=1e-5)
