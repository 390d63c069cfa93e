"""LoRA's particular promises: factor shapes, zero-initialised B, the exact (alpha/r)·BA update, and clear option
errors. The cross-check against huggingface peft is in test_peft_crosscheck.py."""

from __future__ import annotations

import pytest
import torch
from transformers.pytorch_utils import Conv1D

import refimpl
from refimpl.core.layers import weight_out_in
from refimpl.core.targeting import LINEAR_TYPES, linear_dims
from refimpl.reparameterization.loha import LoHaLinear
from refimpl.reparameterization.lora import LoRALinear


def lora_layers(model):
    return {name: module for name, module in model.named_modules() if isinstance(module, LoRALinear)}


@pytest.mark.parametrize("model_type", ["bert", "gpt2", "llama"])
def test_a_is_r_by_in_and_b_is_out_by_r_with_b_zero_at_init(fresh, model_type):
    model = refimpl.apply(fresh(model_type), "lora", r=4)
    layers = lora_layers(model)
    assert layers
    for layer in layers.values():
        in_features, out_features = linear_dims(layer.base)
        assert layer.lora_A.shape == (4, in_features)
        assert layer.lora_B.shape == (out_features, 4)
        assert torch.count_nonzero(layer.lora_B) == 0
        assert torch.count_nonzero(layer.lora_A) > 0


@pytest.mark.parametrize("model_type", ["bert", "gpt2"])
def test_the_update_is_alpha_over_r_times_b_a_exactly(fresh, model_type):
    # alpha / r = 2 is a power of two, so scaling is exact whichever way the product is ordered.
    model = refimpl.apply(fresh(model_type), "lora", r=4, alpha=8.0)
    layer = next(iter(lora_layers(model).values()))
    with torch.no_grad():
        layer.lora_B.normal_()
    expected = 2.0 * (layer.lora_B @ layer.lora_A)
    assert torch.equal(layer.delta_weight(), expected)
    x = torch.randn(3, 5, layer.in_features)
    with torch.no_grad():
        explicit = x @ (weight_out_in(layer.base) + expected).T + layer.base.bias
        torch.testing.assert_close(layer(x), explicit, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"r": 0}, "'r'"),
        ({"alpha": -1.0}, "'alpha'"),
        ({"target_modules": ["no_such_layer"]}, "'target_modules'"),
        ({"target_modules": "query(["}, "'target_modules'"),
    ],
    ids=["zero-rank", "negative-alpha", "unmatched-target", "bad-regex"],
)
def test_bad_options_raise_a_refimpl_error_naming_the_option(fresh, options, named):
    model = fresh("bert")
    names = [name for name, _ in model.named_parameters()]
    with pytest.raises(refimpl.RefimplError, match=named):
        refimpl.apply(model, "lora", **options)
    assert not refimpl.is_adapted(model)
    assert [name for name, _ in model.named_parameters()] == names


@pytest.mark.parametrize("model_type", ["bert", "gpt2", "llama"])
def test_all_linear_adapts_every_linear_layer_except_the_heads(fresh, model_type):
    model = fresh(model_type)
    linears = {name for name, module in model.named_modules() if isinstance(module, LINEAR_TYPES)}
    heads = {name for name in linears if name.split(".")[0] in ("classifier", "lm_head") or "pooler" in name}
    assert heads, "the tiny model should have a head to skip"
    refimpl.apply(model, "lora", target_modules="all-linear")
    assert set(lora_layers(model)) == linears - heads


@pytest.mark.parametrize("base_type", ["linear", "linear without bias", "conv1d"])
def test_the_written_out_backward_matches_autograd_on_the_plain_formula(base_type):
    torch.manual_seed(0)
    base = {
        "linear": lambda: torch.nn.Linear(12, 10),
        "linear without bias": lambda: torch.nn.Linear(12, 10, bias=False),
        "conv1d": lambda: Conv1D(10, 12),
    }[base_type]()
    layer = LoRALinear(base, r=3, alpha=6.0)
    torch.nn.init.normal_(layer.lora_B)
    base.weight.requires_grad_(True)  # the written-out backward must also serve an unfrozen base
    assert layer.plain_branch
    x = torch.randn(2, 5, 12, requires_grad=True)
    fused = layer(x)
    weight = weight_out_in(base)
    plain = (
        x @ weight.T + (0 if base.bias is None else base.bias) + 2.0 * (x @ layer.lora_A.T) @ layer.lora_B.T
    )
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-5)
    upstream = torch.randn_like(plain)
    inputs = [x, layer.lora_A, layer.lora_B, base.weight]
    for expected, actual in zip(
        torch.autograd.grad(plain, inputs, upstream),
        torch.autograd.grad(fused, inputs, upstream),
        strict=True,
    ):
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_variants_that_redefine_the_branch_keep_their_own_forward():
    assert not LoHaLinear(torch.nn.Linear(8, 8), r=2, alpha=2.0).plain_branch
    assert not LoRALinear(torch.nn.Linear(8, 8), r=2, alpha=2.0, dropout=0.1).plain_branch
