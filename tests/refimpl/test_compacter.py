"""Compacter's promises: PHM weights are sums of Kronecker products, the rules A are shared by every layer,
Compacter++ adapts only after the FFN, and sizes that n does not divide are refused."""

from __future__ import annotations

import pytest
import torch

import refimpl
from refimpl.core.layers import SerialAdapter
from refimpl.hybrid.compacter import PHMLinear
from refimpl.models import tiny_bert


def phm_layers(model):
    return [module for module in model.modules() if isinstance(module, PHMLinear)]


def test_a_phm_weight_is_the_sum_of_kronecker_products_of_rules_and_rank_one_factors():
    layer = phm_layers(refimpl.apply(tiny_bert(), "compacter"))[0]
    expected = sum(torch.kron(layer.rules[i], layer.s[i] @ layer.t[i]) for i in range(layer.rules.shape[0]))
    torch.testing.assert_close(layer.weight(), expected)
    assert layer.weight().shape == (16, 32)  # down-projection: hidden 32 -> bottleneck 16


def test_the_rules_are_one_parameter_shared_by_all_layers_and_learn_from_all_of_them():
    model = refimpl.apply(tiny_bert(layers=2), "compacter")
    layers = phm_layers(model)
    assert len(layers) == 2 * 2 * 2  # blocks × (attention, FFN) × (down, up)
    assert all(layer.rules is layers[0].rules for layer in layers)
    assert sum(1 for name, _ in model.named_parameters() if name.endswith("rules")) == 1
    model.train()
    ids = torch.randint(3, 128, (2, 8))
    model(input_ids=ids, labels=torch.tensor([0, 1])).loss.backward()
    assert layers[0].rules.grad is not None and layers[0].rules.grad.abs().sum() > 0


def test_compacter_plus_plus_adapts_only_the_ffn_output_and_trains_fewer_parameters():
    plain, plus = tiny_bert(), tiny_bert()
    refimpl.apply(plain, "compacter")
    refimpl.apply(plus, "compacter", variant="compacter++")
    wrapped = [name for name, m in plus.named_modules() if isinstance(m, SerialAdapter)]
    assert wrapped == ["bert.encoder.layer.0.output.dense", "bert.encoder.layer.1.output.dense"]
    assert refimpl.trainable_parameters(plus)[0] < refimpl.trainable_parameters(plain)[0]


def test_zero_initialised_up_factors_start_at_the_base_model():
    ids = torch.randint(3, 128, (2, 8))
    base = tiny_bert()(input_ids=ids).logits
    adapted = refimpl.apply(tiny_bert(), "compacter", init="zeros")(input_ids=ids).logits
    torch.testing.assert_close(adapted, base, rtol=0, atol=1e-6)


def test_a_bottleneck_that_n_does_not_divide_is_refused():
    with pytest.raises(refimpl.RefimplError, match="adapter_size 10 is not divisible by n=4"):
        refimpl.apply(tiny_bert(), "compacter", adapter_size=10)
