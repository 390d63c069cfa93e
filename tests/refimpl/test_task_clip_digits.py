"""The CLIP digits task: prompts, splits and domain are as documented, the CLIP methods train on it, score is
accuracy."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from refimpl.tasks import clip_digits
from refimpl.tasks.clip_digits import CLIPDigits, examples, prompt_ids, splits, tokenize
from refimpl.tasks.runner import execute


@pytest.fixture(scope="module", autouse=True)
def private_cache_and_short_pretraining(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REFIMPL_CACHE", str(tmp_path_factory.mktemp("cache")))
        patch.setitem(clip_digits.PRETRAIN, "steps", 2)
        yield


def test_prompts_are_bos_template_digit_name_eos_then_padding():
    three = prompt_ids()[3].tolist()
    words = tokenize("a photo of the digit three")
    assert three == [0, *words, 1] + [2] * (16 - len(words) - 2)
    assert len(set(map(tuple, prompt_ids().tolist()))) == 10
    with pytest.raises(ValueError, match="eleven"):
        tokenize("a photo of the digit eleven")


def test_splits_are_disjoint_with_sixteen_shots_of_each_digit():
    parts = splits()
    align, train, test = (set(parts[name].tolist()) for name in ("align", "train", "test"))
    assert not (align & train or align & test or train & test)
    assert len(align | train | test) == 1797
    assert torch.bincount(examples("train")[1]).tolist() == [16] * 10
    assert set(examples("test")[1].tolist()) == set(range(10))


def test_only_the_few_shot_data_is_drawn_in_red():
    aligned, shifted = examples("align")[0], examples("test")[0]
    assert torch.equal(aligned[:, 0], aligned[:, 1])
    assert shifted[:, 1:].abs().sum() == 0 and shifted[:, 0].abs().sum() > 0


def test_bare_clip_fed_the_prompts_scores_as_the_classifier():
    batch = CLIPDigits("clip").test_batches()[0]
    classifier, bare = CLIPDigits("clip_fewshot"), CLIPDigits("clip")
    classifier_model, bare_model = classifier.build_model(0), bare.build_model(0)
    with torch.no_grad():
        expected = classifier.predict(classifier_model, batch)
        assert torch.allclose(bare.predict(bare_model, batch), expected, atol=1e-5)


class FixedLogits(nn.Module):
    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, pixel_values: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(logits=self.logits)


def test_score_is_the_share_of_images_whose_best_prompt_is_their_digit():
    labels = torch.tensor([0, 7, 9, 3])
    batch = {"pixel_values": torch.zeros(4, 3, 16, 16), "labels": labels}
    logits = torch.nn.functional.one_hot(labels, 10).float()
    task = CLIPDigits("clip_fewshot")
    assert task.score(FixedLogits(logits), [batch]) == 1.0
    assert task.score(FixedLogits(logits.roll(1, dims=1)), [batch]) == 0.0
    logits[:2] = logits[:2].roll(1, dims=1)
    assert task.score(FixedLogits(logits), [batch]) == 0.5


@pytest.mark.parametrize(
    ("method", "model_type"),
    [
        ("coop", "clip_fewshot"),
        ("tip_adapter", "clip_fewshot"),
        ("clip_adapter", "clip_fewshot"),
        ("clip_adapter", "clip"),
        ("lora", "clip"),
    ],
)
def test_the_clip_methods_train_on_the_task(method, model_type):
    outcome = execute(method, model_type, "clip_digits", steps=2)
    figures = outcome.figures()
    assert figures["task"] == "clip_digits" and figures["model"] == model_type
    assert 0 < outcome.trainable < outcome.total
    assert all(math.isfinite(loss) for loss in outcome.fit.losses) and len(outcome.fit.losses) == 2
    assert 0.0 <= outcome.metric <= 1.0
