"""AdapterBias: the shift after each FFN is one vector v scaled per token by α(h)."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

import refimpl
from refimpl.additive.adapter_bias import AdapterBias, AdapterBiasOptions, TokenShift


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


@pytest.mark.parametrize(
    ("config", "count", "percent"),
    [
        (BertConfig(), 55_308, 0.05),  # BERT-base
        (
            BertConfig(
                hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096
            ),
            147_480,
            0.04,
        ),
    ],
    ids=["bert-base", "bert-large"],
)
def test_with_layer_norms_the_count_is_the_share_table_1_reports(config, count, percent):
    with torch.device("meta"):  # shapes only, no memory
        model = BertForSequenceClassification(config)
    trained = AdapterBias().expected_trainable(model, AdapterBiasOptions(train_head=False))
    assert trained == count
    assert round(100 * trained / sum(p.numel() for p in model.parameters()), 2) == percent
