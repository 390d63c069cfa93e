"""The digit_questions task: tiny LLaVA and BLIP-2 pre-trained to answer "digit?" and "even?" about digit images,
adapted to "plus one?", scored by exact-match accuracy of the greedy answer on held-out images."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from refimpl.core.registry import get_method
from refimpl.models import tiny_model
from refimpl.models.multimodal import IGNORE_INDEX, IMAGE_PATCHES, IMAGE_TOKEN, QUERY_TOKENS
from refimpl.tasks import choose_task
from refimpl.tasks.digit_questions import (
    NEW_QUESTION,
    PRETRAIN,
    PRETRAIN_QUESTIONS,
    DigitQuestions,
    encode,
    exact_matches,
    image_indices,
    redraw_image_path,
)
from refimpl.tasks.digits import digits
from refimpl.tasks.generation import BEGIN, END, PAD
from refimpl.tasks.runner import FROZEN, FULL, execute

from .conftest import private_cache

METHODS = [("layernorm_tuning", "llava"), ("llama_adapter_v2", "llava"), ("qformer", "blip2")]


@pytest.fixture(scope="module", autouse=True)
def short_pretraining(tmp_path_factory):
    with private_cache(tmp_path_factory, PRETRAIN):
        yield


def text(ids: torch.Tensor) -> str:
    return "".join(chr(i) for i in ids.tolist())


def test_test_images_are_held_out_from_pretraining_and_adaptation():
    train, test = image_indices("train"), image_indices("test")
    assert not set(train.tolist()) & set(test.tolist())
    assert sorted(train.tolist() + test.tolist()) == list(range(len(digits()[1])))
    assert set(digits()[1][test].tolist()) == set(range(10))
    assert NEW_QUESTION not in PRETRAIN_QUESTIONS


@pytest.mark.parametrize(("model_type", "placeholders"), [("llava", IMAGE_PATCHES), ("blip2", QUERY_TOKENS)])
def test_an_example_is_image_question_answer_and_only_the_answer_is_labelled(model_type, placeholders):
    seven, eight = (int((digits()[1] == d).nonzero()[0]) for d in (7, 8))
    batch = encode(model_type, [(seven, "plus one?"), (eight, "even?")])
    ids, labels = batch["input_ids"], batch["labels"]
    prompt = [BEGIN, *[IMAGE_TOKEN] * placeholders]
    assert ids[0, : len(prompt)].tolist() == prompt
    assert text(ids[0, len(prompt) : len(prompt) + 9]) == "plus one?"
    assert text(labels[0][labels[0] != IGNORE_INDEX][:-1]) == "eight"
    assert text(labels[1][labels[1] != IGNORE_INDEX][:-1]) == "yes"
    assert (labels[labels != IGNORE_INDEX] == ids[labels != IGNORE_INDEX]).all()
    ends = [row[row != IGNORE_INDEX][-1].item() for row in labels]
    assert ends == [END, END]
    assert (ids[1][batch["attention_mask"][1] == 0] == PAD).all() and batch["attention_mask"][0].all()
    assert torch.equal(batch["pixel_values"][0], digits()[0][seven])


def test_test_set_asks_the_new_question_about_every_test_image():
    batches = DigitQuestions("llava").test_batches()
    assert sum(len(b["input_ids"]) for b in batches) == len(image_indices("test"))
    question = [ord(c) for c in NEW_QUESTION]
    start = 1 + IMAGE_PATCHES
    assert all(
        (b["input_ids"][:, start : start + len(question)] == torch.tensor(question)).all() for b in batches
    )


def test_exact_match_needs_every_answer_token_including_the_end():
    batch = encode("llava", [(0, "plus one?"), (1, "plus one?")])
    perfect = F.one_hot(batch["input_ids"].roll(-1, dims=1), 128).float()  # predicts each next token
    assert exact_matches(perfect, batch["labels"]).tolist() == [True, True]
    last = (batch["labels"][0] != IGNORE_INDEX).nonzero().max()  # the end marker of the first answer
    perfect[0, last - 1] = F.one_hot(torch.tensor(PAD), 128).float()
    assert exact_matches(perfect, batch["labels"]).tolist() == [False, True]


def test_score_is_one_for_a_model_that_predicts_every_next_token():
    class Oracle(torch.nn.Module):
        def forward(self, input_ids, **_):
            return type("Out", (), {"logits": F.one_hot(input_ids.roll(-1, dims=1), 128).float()})

    task = DigitQuestions("blip2")
    assert task.score(Oracle(), task.test_batches()) == 1.0


def test_blip2_image_path_is_redrawn_so_image_features_differ_between_images():
    model = tiny_model("blip2")
    images = encode("blip2", [(0, "digit?"), (1, "digit?")])["pixel_values"]

    def spread_between_images() -> float:
        with torch.no_grad():
            return model.vision_model(pixel_values=images).last_hidden_state.std(dim=0).max().item()

    assert spread_between_images() < 1e-4 and not model.query_tokens.any()  # as transformers builds it
    redraw_image_path(model, seed=0)
    assert spread_between_images() > 1e-2 and model.query_tokens.std() > 1e-2


@pytest.mark.parametrize(("method", "model_type"), METHODS)
def test_methods_run_by_default_on_this_task_and_give_finite_figures(method, model_type):
    assert choose_task(get_method(method).info()).name == "digit_questions"
    outcome = execute(method, model_type, "digit_questions", steps=2)
    assert outcome.trainable < outcome.total and all(math.isfinite(x) for x in outcome.fit.losses)
    for value in (outcome.metric, outcome.references[FULL]["metric"], outcome.references[FROZEN]["metric"]):
        assert 0 <= value <= 1
    assert outcome.references[FROZEN]["trainable"] == 0  # the pre-trained model as it is


def test_same_seed_gives_the_same_model_figures_and_dropout_draws_whether_or_not_pretraining_just_ran(
    tmp_path, monkeypatch
):

    monkeypatch.setenv("REFIMPL_CACHE", str(tmp_path))
    task = DigitQuestions("blip2")
    first = task.build_model(0)  # pre-trains
    first_draw = torch.rand(3)
    again = task.build_model(0)  # reads the cache
    assert torch.equal(first_draw, torch.rand(3))
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    assert task.evaluate(first) == task.evaluate(again)
