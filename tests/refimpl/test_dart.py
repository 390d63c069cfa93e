"""DART: learned template tokens feed the model and learned label tokens score the classes at the mask; the
fluency objective trains them without touching the vocabulary."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import refimpl
from refimpl.models import tiny_model
from refimpl.prompt.dart import fluency_loss

from .test_pet import MASK, few_shot_task, tiny_masked_lm

TEMPLATE = 3


def dart(model, **options):
    return refimpl.apply(model, "dart", template_length=TEMPLATE, mask_token_id=MASK, **options)


def test_label_scores_come_from_learned_template_and_label_vectors():
    inputs = few_shot_task()[0].clamp(max=119)  # no reserved ids (the last 5) inside the input itself
    model = dart(tiny_masked_lm(), label_init=[10, 11])
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model.dart.template.copy_(torch.randn(TEMPLATE, 32, generator=generator))
        model.dart.labels.add_(torch.randn(2, 32, generator=generator))
        output = model(input_ids=inputs)

        base = tiny_masked_lm()
        words = base.get_input_embeddings()(torch.cat([inputs, torch.full((8, 1), MASK)], dim=1))
        embeds = torch.cat([words[:, :-1], model.dart.template.expand(8, -1, -1), words[:, -1:]], dim=1)
        hidden = base.cls.predictions.transform(base.bert(inputs_embeds=embeds).last_hidden_state[:, -1])
        label_ids = model.dart.label_ids
        expected = F.linear(hidden, model.dart.labels, base.cls.predictions.decoder.bias[label_ids])
    torch.testing.assert_close(output.label_logits, expected, rtol=0, atol=1e-5)


def test_fluency_objective_trains_the_template_and_labels_only():
    inputs, labels = few_shot_task()
    model = dart(tiny_masked_lm())
    vocabulary = model.get_input_embeddings().weight.clone()
    loss = fluency_loss(model, inputs, labels, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss)
    assert model.dart.template.grad.abs().sum() > 0 and model.dart.labels.grad.abs().sum() > 0
    assert model.get_input_embeddings().weight.grad is None
    assert torch.equal(model.get_input_embeddings().weight, vocabulary)
    assert refimpl.trainable_parameters(model)[0] == (TEMPLATE + 2) * 32


def test_fluency_needs_a_masked_lm():
    model = refimpl.apply(tiny_model("gpt2"), "dart")
    with pytest.raises(refimpl.RefimplError, match="masked LM"):
        fluency_loss(model, *few_shot_task())
