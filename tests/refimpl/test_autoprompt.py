"""AutoPrompt: the HotFlip search only accepts improving trigger swaps, finds the best single swap when allowed
to try every candidate, is saved with the adapter; label tokens are read off the trained classifier."""

from __future__ import annotations

import torch

import refimpl
from refimpl.prompt.autoprompt import (
    CLASSIFIER_STEPS,
    SEARCH_BATCHES,
    fit_classifier,
    search_triggers,
    select_label_tokens,
)

from .conftest import task_data, train_steps
from .test_pet import MASK, few_shot_task, tiny_masked_lm


def adapted():
    model = refimpl.apply(
        tiny_masked_lm(), "autoprompt", triggers=[MASK] * 3, mask_token_id=MASK, num_labels=2
    )
    torch.manual_seed(0)
    torch.nn.init.normal_(model.autoprompt.classifier.weight, std=5.0)  # a classifier that reads the features
    return model


def batches():
    inputs, labels = few_shot_task()
    return [{"input_ids": inputs, "attention_mask": torch.ones_like(inputs), "labels": labels}]


def loss(model) -> float:
    with torch.no_grad():
        return model(**batches()[0]).loss.item()


def test_search_never_raises_the_loss_and_the_triggers_travel_with_the_adapter(tmp_path):
    model = adapted()
    start = loss(model)
    history = search_triggers(model, batches(), iterations=6, candidates=8)
    assert all(later <= earlier for earlier, later in zip([start, *history], history))
    assert history[-1] < start
    assert model.autoprompt.trigger_ids.tolist() != [MASK] * 3
    refimpl.save_adapter(model, tmp_path)
    loaded = refimpl.load_adapter(tiny_masked_lm(), tmp_path)
    assert torch.equal(loaded.autoprompt.trigger_ids, model.autoprompt.trigger_ids)
    assert loss(loaded) == loss(model)


def test_trying_every_candidate_finds_the_best_single_swap():
    model = adapted()
    exhaustive = []
    for token in range(128):
        model.autoprompt.trigger_ids[0] = token
        exhaustive.append(loss(model))
    model.autoprompt.trigger_ids[0] = MASK
    (found,) = search_triggers(model, batches(), iterations=1, candidates=127)
    assert found == min(exhaustive)
    assert model.autoprompt.trigger_ids[0] == min(range(128), key=exhaustive.__getitem__)


def test_label_tokens_are_the_words_the_classifier_assigns_most_confidently():
    model = adapted()
    tokens = select_label_tokens(model, per_label=3)
    with torch.no_grad():
        probabilities = model.autoprompt.classifier(model.get_output_embeddings().weight).softmax(-1)
    for label, chosen in enumerate(tokens):
        assert len(chosen) == 3
        assert probabilities[chosen, label].min() >= probabilities[:, label].sort().values[-3]


def test_a_sequence_classifier_predicts_with_the_trained_label_scores(fresh, batch_for):
    """On a sequence classifier (the suite's BERT, MiniLM's sentiment task) the loss is on the AutoPrompt
    classifier's label scores; its `logits` must be those scores, not the model's own head, which gets no gradient
    (that head decided the test accuracy, and it stayed at chance)."""
    model = refimpl.apply(fresh("bert"), "autoprompt", train_head=True)
    batch = batch_for("bert")
    train_steps(model, batch, steps=5)
    with torch.no_grad():
        output = model(**batch)
    assert output.logits.shape == (len(batch["labels"]), model.config.num_labels)
    torch.testing.assert_close(output.logits, output.label_logits, rtol=0, atol=0)
    assert model.classifier.weight.grad is None  # the model's own head is not what AutoPrompt trains


def test_prepare_fits_the_classifier_then_searches_every_trigger_twice_on_the_tasks_batches():
    data = task_data(batches() * 8)
    prepared, expected = adapted(), adapted()
    refimpl.prepare(prepared, data)
    fitted = fit_classifier(expected, batches() * SEARCH_BATCHES, CLASSIFIER_STEPS)
    assert fitted[-1] < fitted[0]
    search_triggers(expected, batches() * SEARCH_BATCHES, iterations=6)
    assert torch.equal(prepared.autoprompt.trigger_ids, expected.autoprompt.trigger_ids)
    assert torch.equal(prepared.autoprompt.classifier.weight, expected.autoprompt.classifier.weight)
    assert prepared.autoprompt.trigger_ids.tolist() != [MASK] * 3
