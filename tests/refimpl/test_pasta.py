"""PASTA (Yang et al.): trainable vectors added to special tokens' hidden states before every block."""

from __future__ import annotations

import torch

import refimpl
from refimpl.models import tiny_bert, tiny_gpt2

from .conftest import tiny_batch


def logits(model, input_ids):
    with torch.no_grad():
        return model(input_ids=input_ids).logits


def test_a_first_layer_cls_vector_equals_shifting_the_cls_embedding_output():
    input_ids = tiny_batch("bert")["input_ids"]
    input_ids[:, 0], input_ids[:, -1] = 101, 102  # [CLS] ... [SEP]
    model = refimpl.apply(tiny_bert(), "pasta")
    shift = torch.randn(32)
    with torch.no_grad():
        model.pasta_vectors.vectors[0, 0] = shift
    reference = tiny_bert()

    def add_to_cls(module, args, output):
        return output + (input_ids == 101).unsqueeze(-1) * shift

    reference.bert.embeddings.register_forward_hook(add_to_cls)
    torch.testing.assert_close(logits(model, input_ids), logits(reference, input_ids), rtol=0, atol=1e-5)


def test_on_a_decoder_only_positions_from_the_special_token_on_change():
    input_ids = tiny_batch("gpt2")["input_ids"]
    input_ids[:, 5] = 1  # GPT-2's eos id in the tiny config
    base = logits(tiny_gpt2(), input_ids)
    model = refimpl.apply(tiny_gpt2(), "pasta")
    assert model.pasta_vectors.ids == [0, 1]  # bos and eos from the config
    with torch.no_grad():
        model.pasta_vectors.vectors.normal_()
    adapted = logits(model, input_ids)
    torch.testing.assert_close(adapted[:, :5], base[:, :5], rtol=0, atol=1e-6)
    assert not torch.allclose(adapted[:, 5:], base[:, 5:])
