"""Y-tuning: label representations attend to frozen features; no gradient reaches the backbone, padding is
ignored, and the label scores can fit a few-shot task on any backbone."""

from __future__ import annotations

import torch

import refimpl
from refimpl.models import tiny_model

from .test_pet import few_shot_task


def test_no_gradient_enters_the_backbone_even_if_it_were_trainable():
    model = refimpl.apply(tiny_model("bert"), "y_tuning")
    for parameter in model.bert.parameters():
        parameter.requires_grad_(True)
    inputs, labels = few_shot_task()
    model(input_ids=inputs, labels=labels).loss.backward()
    assert all(p.grad is None for p in model.bert.parameters())
    assert model.y_network.label_embeddings.grad.abs().sum() > 0


def test_padded_positions_do_not_change_the_label_scores():
    model = refimpl.apply(tiny_model("bert"), "y_tuning")
    inputs, _ = few_shot_task(count=2)
    mask = torch.ones_like(inputs)
    mask[1, 4:] = 0
    with torch.no_grad():
        padded = model(input_ids=inputs, attention_mask=mask).logits[1]
        alone = model(input_ids=inputs[1:, :4]).logits[0]
    # BERT's own features at the real positions ignore padding too, so the scores agree.
    torch.testing.assert_close(padded, alone, rtol=0, atol=1e-5)


def test_label_scores_fit_a_few_shot_task_on_a_causal_lm():
    model = refimpl.apply(tiny_model("gpt2"), "y_tuning", num_labels=2)
    inputs, labels = few_shot_task()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(60):
        optimizer.zero_grad()
        model(input_ids=inputs, labels=labels).loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(input_ids=inputs).logits.argmax(-1), labels)
