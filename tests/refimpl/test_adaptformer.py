"""AdaptFormer: a scaled bottleneck branch beside each FFN, reading the FFN's own input."""

from __future__ import annotations

import torch

import refimpl
from refimpl.additive.adaptformer import ffn_modules


def test_the_branch_adds_s_times_the_bottleneck_of_the_ffn_input(fresh):
    model = refimpl.apply(fresh("vit"), "adaptformer", scale=0.5)
    wrapped = ffn_modules(model)[0][1]
    torch.nn.init.normal_(wrapped.adapter.up.weight)
    x = torch.randn(2, 5, 32)
    with torch.no_grad():
        expected = wrapped.base(x) + 0.5 * wrapped.adapter.up(torch.relu(wrapped.adapter.down(x)))
        torch.testing.assert_close(wrapped(x), expected)


def test_only_the_ffns_are_wrapped_and_attention_is_untouched(fresh):
    model = refimpl.apply(fresh("vit"), "adaptformer")
    names = [name for name, module in model.named_modules() if type(module).__name__ == "ParallelAdapter"]
    assert names == ["vit.layers.0.mlp", "vit.layers.1.mlp"]
