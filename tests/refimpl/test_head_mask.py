"""Head mask (after "Revealing the Dark Secrets of BERT"): disabled heads contribute nothing; others are gated."""

from __future__ import annotations

import pytest
import torch

import refimpl
from refimpl.models import tiny_model

from .conftest import tiny_batch

OUTPUT_PROJECTION = {
    "bert": "bert.encoder.layer.{}.attention.output.dense",
    "llama": "model.layers.{}.self_attn.o_proj",
}


def logits(model, batch):
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


@pytest.mark.parametrize("model_type", ["bert", "llama"])
def test_disabling_a_head_equals_zeroing_its_columns_of_the_output_projection(model_type):
    batch = tiny_batch(model_type)
    reference = tiny_model(model_type)
    projection = reference.get_submodule(OUTPUT_PROJECTION[model_type].format(1))
    head_dim = projection.in_features // 4
    with torch.no_grad():
        projection.weight[:, 2 * head_dim : 3 * head_dim] = 0
    masked = refimpl.apply(tiny_model(model_type), "head_mask", disabled_heads=[[1, 2]])
    torch.testing.assert_close(logits(masked, batch), logits(reference, batch), rtol=0, atol=1e-6)


def test_only_the_gates_of_enabled_heads_are_counted_and_receive_signal():
    model = refimpl.apply(tiny_model("bert"), "head_mask", disabled_heads=[[0, 1], [1, 3]])
    assert refimpl.trainable_parameters(model)[0] == 2 * 4 - 2
    model(**tiny_batch("bert")).loss.backward()
    gradient = model.head_gates.gate.grad
    assert gradient[0, 1] == 0 and gradient[1, 3] == 0
    assert (gradient[0, [0, 2, 3]] != 0).all()


def test_a_head_outside_the_model_is_refused():
    with pytest.raises(refimpl.RefimplError, match="disabled_heads"):
        refimpl.apply(tiny_model("gpt2"), "head_mask", disabled_heads=[[0, 4]])
