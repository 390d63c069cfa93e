"""PET: a pattern-verbalizer pair turns a language model into a classifier read at the mask position; training
fine-tunes the whole LM on the cloze loss. Also the tiny masked LM that the cloze methods' tests share."""

from __future__ import annotations

import torch
from transformers import BertForMaskedLM

import refimpl
from refimpl.models import tiny_model
from refimpl.prompt.pet import mask_tokens, pet_loss, predict

from .conftest import tiny_batch

MASK = 2  # the tiny vocabulary's ids 0-2 never occur in test inputs
BEFORE, AFTER, VERBALIZER = [7, 8], [9], [10, 11]


def tiny_masked_lm(seed: int = 0) -> BertForMaskedLM:
    """The tiny BERT with a masked-LM head instead of the classifier."""
    config = tiny_model("bert").config
    torch.manual_seed(seed)
    return BertForMaskedLM(config).eval()


def few_shot_task(count: int = 8, length: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Label 1 iff the input contains token 50: learnable from a handful of examples."""
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randint(60, 128, (count, length), generator=generator)
    labels = torch.arange(count) % 2
    inputs[labels == 1, 2] = 50
    return inputs, labels


def pet(model, **options):
    return refimpl.apply(
        model, "pet", pattern_before=BEFORE, pattern_after=AFTER, verbalizer=VERBALIZER, **options
    )


def test_label_scores_are_the_mlm_logits_of_the_verbalizer_at_the_mask():
    inputs, _ = few_shot_task()
    with torch.no_grad():
        cloze = torch.cat([torch.tensor([BEFORE] * 8), inputs, torch.tensor([AFTER + [MASK]] * 8)], dim=1)
        expected = tiny_masked_lm()(input_ids=cloze).logits[:, -1, VERBALIZER]
        adapted = pet(tiny_masked_lm(), mask_token_id=MASK)
        output = adapted(input_ids=inputs, attention_mask=torch.ones_like(inputs))
    torch.testing.assert_close(output.label_logits, expected, rtol=0, atol=1e-6)
    assert output.logits.shape == (8, inputs.shape[1], 128)  # cut back to the input positions


def test_cloze_fine_tuning_fits_a_few_shot_task_and_trains_every_weight():
    model = pet(tiny_model("gpt2"))
    inputs, labels = few_shot_task()
    assert refimpl.trainable_parameters(model)[0] == refimpl.trainable_parameters(tiny_model("gpt2"))[1]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(30):
        optimizer.zero_grad()
        model(input_ids=inputs, labels=labels).loss.backward()
        optimizer.step()
    assert torch.equal(predict(model, inputs), labels)


def test_token_labels_give_the_lm_loss_on_the_input_only():
    batch = tiny_batch("gpt2")
    base_loss = tiny_model("gpt2")(**batch).loss
    # Nothing before the input, and a causal LM: the pattern after it cannot change the input's loss.
    adapted = refimpl.apply(tiny_model("gpt2"), "pet", pattern_after=AFTER, verbalizer=VERBALIZER)
    torch.testing.assert_close(adapted(**batch).loss, base_loss, rtol=0, atol=1e-6)


def test_pet_loss_mixes_cloze_and_masked_lm_losses_with_alpha():
    inputs, labels = few_shot_task()
    model = pet(tiny_masked_lm(), mask_token_id=MASK)
    cloze = model(input_ids=inputs, labels=labels).loss
    masked, targets = mask_tokens(inputs, MASK, generator=torch.Generator().manual_seed(0))
    language = model(input_ids=masked, labels=targets).loss
    mixed = pet_loss(model, inputs, labels, alpha=0.25, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(mixed, 0.75 * cloze + 0.25 * language)
    assert ((targets != -100) == (masked == MASK)).all() and (masked == MASK).any(dim=1).all()
