"""Null prompts: the input followed by [MASK] and nothing else; only biases train, yet a few-shot task is fitted."""

from __future__ import annotations

import torch

import refimpl
from refimpl.prompt.pet import predict

from .test_pet import MASK, VERBALIZER, few_shot_task, tiny_masked_lm


def test_the_prompt_is_just_the_input_and_a_mask_and_only_biases_train():
    inputs, labels = few_shot_task()
    model = refimpl.apply(tiny_masked_lm(), "null_prompts", verbalizer=VERBALIZER, mask_token_id=MASK)
    with torch.no_grad():
        cloze = torch.cat([inputs, torch.full((len(inputs), 1), MASK)], dim=1)
        expected = tiny_masked_lm()(input_ids=cloze).logits[:, -1, VERBALIZER]
        torch.testing.assert_close(model(input_ids=inputs).label_logits, expected, rtol=0, atol=1e-6)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(name.endswith("bias") for name in trainable)

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-2)
    model.train()
    for _ in range(40):
        optimizer.zero_grad()
        model(input_ids=inputs, labels=labels).loss.backward()
        optimizer.step()
    assert torch.equal(predict(model, inputs), labels)
