"""AdapterBias: the shift after each FFN is one vector v scaled per token by α(h)."""

from __future__ import annotations

import torch

import refimpl
from refimpl.additive.adapter_bias import TokenShift


def test_the_shift_is_token_dependent_but_always_along_the_layers_vector(fresh):
    model = refimpl.apply(fresh("bert"), "adapter_bias")
    shift = next(m for m in model.modules() if isinstance(m, TokenShift))
    with torch.no_grad():
        torch.nn.init.normal_(shift.alpha.weight)
        torch.nn.init.normal_(shift.v)
        delta = shift(torch.randn(5, 32))
    scores = delta @ shift.v / shift.v.dot(shift.v)
    torch.testing.assert_close(delta, scores[:, None] * shift.v)  # every token moves along v ...
    assert scores.unique().numel() == 5  # ... by its own amount


def test_the_paper_scale_count_is_two_d_plus_one_per_layer_plus_norms(fresh):
    model = fresh("bert")  # 2 blocks, d = 32, 2 LayerNorms per block, classifier 32·2 + 2
    expected = 2 * (2 * 32 + 1) + 2 * 2 * 2 * 32 + 66
    assert refimpl.trainable_parameters(refimpl.apply(model, "adapter_bias"))[0] == expected
