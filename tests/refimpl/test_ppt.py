"""PPT: a prompt pre-trained on a self-supervised task becomes the starting point of downstream prompt tuning."""

from __future__ import annotations

import pytest
import torch

import refimpl
from refimpl.models import tiny_gpt2, tiny_model
from refimpl.prompt.ppt import SOURCE_STEPS, next_sentence_pairs, pretrain_prompt

from .conftest import task_data, tiny_batch

LENGTH = 8


def documents(count: int = 6, length: int = 24) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.randint(3, 128, (length,), generator=generator) for _ in range(count)]


def test_sentence_pairs_have_the_three_ppt_labels_and_the_right_segments():
    docs = documents()
    batch = next_sentence_pairs(docs, segment=4, generator=torch.Generator().manual_seed(1))
    assert batch["input_ids"].shape == (6, 8)
    assert batch["labels"].tolist() == [0, 1, 2, 0, 1, 2]
    first, second = batch["input_ids"][2, :4], batch["input_ids"][2, 4:]
    start = next(i for i in range(0, 24, 4) if torch.equal(docs[2][i : i + 4], first))
    assert torch.equal(docs[2][start + 4 : start + 8], second)  # label 2: B is A's next segment
    assert torch.equal(batch["input_ids"][0, 4:], docs[1][:4])  # label 0: B from another document


def test_pretrained_prompt_lowers_its_loss_and_initialises_the_downstream_prompt(tmp_path):
    source = refimpl.apply(tiny_model("gpt2"), "ppt", prompt_length=LENGTH)
    # Unlabelled text over a small vocabulary (language-modelling objective): the prompt can learn to favour it.
    text = torch.randint(3, 10, (4, 24), generator=torch.Generator().manual_seed(0))
    batch = {"input_ids": text, "attention_mask": torch.ones_like(text), "labels": text}
    losses = pretrain_prompt(source, [batch], steps=15)
    assert losses[-1] < losses[0] - 0.02
    refimpl.save_adapter(source, tmp_path)

    target = refimpl.apply(tiny_model("gpt2"), "ppt", prompt_length=LENGTH, init_from=str(tmp_path))
    assert torch.equal(target.soft_prompt.embedding, source.soft_prompt.embedding)
    assert refimpl.trainable_parameters(target)[0] == LENGTH * target.config.hidden_size
    with pytest.raises(refimpl.RefimplError, match="init_from"):
        refimpl.apply(tiny_model("gpt2"), "ppt", prompt_length=LENGTH + 1, init_from=str(tmp_path))


def test_pretraining_refuses_a_model_without_a_soft_prompt():
    model = refimpl.apply(tiny_model("gpt2"), "p_tuning", prompt_length=LENGTH)
    with pytest.raises(refimpl.RefimplError, match="pretrain_prompt"):
        pretrain_prompt(model, [], steps=1)


@pytest.mark.parametrize("method", ["ppt", "spot"])
def test_prepare_pretrains_the_prompt_on_the_tasks_source_text_unless_one_is_given(method, tmp_path):
    source = [tiny_batch("gpt2", seed=s) for s in range(3)]
    data = task_data(source_batches=source)
    torch.manual_seed(0)
    prepared = refimpl.apply(tiny_gpt2(), method, prompt_length=LENGTH)
    start = prepared.soft_prompt.embedding.detach().clone()
    refimpl.prepare(prepared, data)
    torch.manual_seed(0)
    expected = refimpl.apply(tiny_gpt2(), method, prompt_length=LENGTH)
    pretrain_prompt(expected, source, steps=SOURCE_STEPS)
    assert torch.equal(prepared.soft_prompt.embedding, expected.soft_prompt.embedding)
    assert not torch.equal(prepared.soft_prompt.embedding, start)
    refimpl.save_adapter(prepared, tmp_path)
    given = refimpl.apply(tiny_gpt2(), method, prompt_length=LENGTH, init_from=str(tmp_path))
    kept = given.soft_prompt.embedding.detach().clone()
    refimpl.prepare(given, data)  # a prompt passed as init_from is the source: nothing to pre-train
    assert torch.equal(given.soft_prompt.embedding, kept)


def test_tasks_without_pretraining_text_leave_the_prompt_as_drawn():
    data = task_data()
    model = refimpl.apply(tiny_gpt2(), "ppt", prompt_length=LENGTH)
    start = model.soft_prompt.embedding.detach().clone()
    refimpl.prepare(model, data)
    assert torch.equal(model.soft_prompt.embedding, start)
