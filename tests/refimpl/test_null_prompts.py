"""Null prompts: the input followed by [MASK] and nothing else, read through a verbalizer; only biases train."""

from __future__ import annotations

import torch

import refimpl
from refimpl.selective.bitfit import BitFitOptions, selected_biases

from .test_pet import MASK, VERBALIZER, few_shot_task, tiny_masked_lm


def test_the_prompt_is_just_the_input_and_a_mask_and_the_cloze_loss_trains_only_biases():
    inputs, _ = few_shot_task()
    model = refimpl.apply(tiny_masked_lm(), "null_prompts", verbalizer=VERBALIZER, mask_token_id=MASK)
    with torch.no_grad():
        cloze = torch.cat([inputs, torch.full((len(inputs), 1), MASK)], dim=1)
        expected = tiny_masked_lm()(input_ids=cloze).logits[:, -1, VERBALIZER]
        torch.testing.assert_close(model(input_ids=inputs).label_logits, expected, rtol=0, atol=1e-6)
    biases = selected_biases(tiny_masked_lm(), BitFitOptions(train_head=False))
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert [p.shape for p in trainable] == [p.shape for p in biases]

    # A random tiny MLM barely separates inputs at the mask, but biases can learn a skewed label prior.
    labels = torch.tensor([1, 1, 1, 1, 1, 1, 0, 0])
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    weights = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    losses = []
    for _ in range(10):
        optimizer.zero_grad()
        loss = model(input_ids=inputs, labels=labels).loss
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.05
    assert all(torch.equal(p, weights[n]) for n, p in model.named_parameters() if n in weights)
