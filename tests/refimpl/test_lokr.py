"""LoKr's promises: ΔW = (alpha/r)·W1 ⊗ (B2 A2) with LyCORIS's near-square factorisation, W2 kept whole only where a
rank-r factorisation would not save parameters, and huggingface peft's LoKr reproduced in count and outputs with the
same factors on a text encoder and on the diffusion UNet."""

from __future__ import annotations

import pytest
import torch

import refimpl
from refimpl.models import TINY_MODELS
from refimpl.reparameterization.lokr import LoKrLinear

from .conftest import tiny_batch, train_steps

TARGETS = {"bert": ["query", "value"], "unet": ["to_q", "to_v"]}


def lokr_layers(model):
    return [m for m in model.modules() if isinstance(m, LoKrLinear)]


def outputs(model, model_type):
    with torch.no_grad():
        return TINY_MODELS[model_type].output(model, tiny_batch(model_type))


def test_factor_shapes_and_where_the_second_factor_is_low_rank(fresh):
    low_rank = refimpl.apply(fresh("bert"), "lokr", r=2)  # 32 = 4 · 8 on both sides: W1 4×4, W2 8×8 of rank 2
    (layer, *_) = lokr_layers(low_rank)
    assert (
        layer.lokr_w1.shape == (4, 4) and layer.lokr_w2_a.shape == (8, 2) and layer.lokr_w2_b.shape == (2, 8)
    )
    assert refimpl.trainable_parameters(low_rank)[0] == 4 * (16 + 2 * (8 + 8))  # 2 layers × 2 BERT blocks
    whole = refimpl.apply(fresh("bert"), "lokr", r=4)  # r ≥ 8 / 2: a factorisation would save nothing
    assert lokr_layers(whole)[0].lokr_w2.shape == (8, 8)


def test_the_low_rank_factors_all_train(fresh):
    model = refimpl.apply(fresh("bert"), "lokr", r=2)
    losses = train_steps(model, tiny_batch("bert"), steps=6)
    layer = lokr_layers(model)[0]
    assert losses[-1] < losses[0]
    assert all(torch.count_nonzero(p.grad) for p in (layer.lokr_w1, layer.lokr_w2_a, layer.lokr_w2_b))


def test_a_factor_that_does_not_divide_the_layer_is_refused_by_name(fresh):
    with pytest.raises(refimpl.RefimplError, match="'factor'"):
        refimpl.apply(fresh("bert"), "lokr", factor=5)


@pytest.mark.parametrize("r", [2, 8], ids=["low-rank-w2", "whole-w2"])
@pytest.mark.parametrize("model_type", ["bert", "unet"])
def test_lokr_matches_peft_in_count_and_outputs(fresh, model_type, r):
    peft = pytest.importorskip("peft")
    config = peft.LoKrConfig(r=r, alpha=2 * r, target_modules=TARGETS[model_type])
    reference = peft.inject_adapter_in_model(config, fresh(model_type))
    ours = refimpl.apply(fresh(model_type), "lokr", r=r, alpha=2.0 * r, target_modules=TARGETS[model_type])
    factors = {name: p for name, p in reference.named_parameters() if ".lokr_" in name}
    assert refimpl.trainable_parameters(ours)[0] == sum(p.numel() for p in factors.values())
    ours_by_name = dict(ours.named_parameters())
    with torch.no_grad():
        for name, tensor in factors.items():
            tensor.normal_(std=0.5)  # peft zero-initialises W1: make every factor non-trivial
            ours_by_name[name.removesuffix(".default")].copy_(tensor)
    expected = outputs(reference, model_type)
    assert (expected - outputs(fresh(model_type), model_type)).abs().max() > 1e-3
    torch.testing.assert_close(outputs(ours, model_type), expected, rtol=0, atol=1e-5)


def test_dropout_on_the_branch_input_keeps_the_update_a_branch(fresh):
    """Where the vec trick does not pay, ΔW is formed and added to W0; dropout acts on the branch's input, so with
    it the update must stay a branch (in training mode the two then differ)."""
    plain = [m for m in refimpl.apply(fresh("llama"), "lokr").modules() if isinstance(m, LoKrLinear)]
    dropped = [
        m for m in refimpl.apply(fresh("llama"), "lokr", dropout=0.5).modules() if isinstance(m, LoKrLinear)
    ]
    assert not any(layer.factored for layer in plain)  # the tiny model's 32-wide layers: formed ΔW
    assert all(layer.factored for layer in dropped)
