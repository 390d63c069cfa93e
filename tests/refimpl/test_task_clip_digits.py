"""The CLIP digits task: prompts, splits and domain are as documented, the CLIP methods train on it, score is
accuracy; the
canvas tasks put four digits in the quadrants and score regions by accuracy and patches by mean IoU."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from refimpl.tasks import clip_digits
from refimpl.tasks.clip_digits import (
    CLIPDigits,
    DigitRegions,
    DigitSegmentation,
    canvases,
    examples,
    prompt_ids,
    splits,
    tokenize,
)
from refimpl.tasks.runner import execute

from .conftest import private_cache


@pytest.fixture(scope="module", autouse=True)
def short_pretraining(tmp_path_factory):
    with private_cache(tmp_path_factory, clip_digits.PRETRAIN):
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
        ("mask_prompt_tuning", "clip_region"),
        ("fc_clip", "clip_dense"),
        ("san", "clip_seg"),
    ],
)
def test_the_clip_methods_train_on_the_task(method, model_type):
    outcome = execute(method, model_type, steps=2)
    figures = outcome.figures()
    assert figures["model"] == model_type
    assert 0 < outcome.trainable < outcome.total
    assert all(math.isfinite(loss) for loss in outcome.fit.losses) and len(outcome.fit.losses) == 2
    assert 0.0 <= outcome.metric <= 1.0


def test_a_canvas_holds_four_test_digits_at_their_own_resolution_one_per_quadrant():
    images, labels = canvases("test", torch.tensor([[0, 1, 2, 3]]))
    assert torch.equal(labels[0], digits_of_test()[:4])
    upscaled = clip_digits.digits()[0][splits()["test"]]
    assert torch.equal(images[0, :, 8:, :8], upscaled[2, :, ::2, ::2])  # bottom-left: the third digit


def test_regions_ask_each_test_quadrant_once_and_segmentation_labels_patches_by_quadrant():
    regions, patches = (
        DigitRegions("clip_region").test_batches()[0],
        DigitSegmentation("clip_seg").test_batches()[0],
    )
    count = len(splits()["test"]) // 4
    assert (
        regions["region_mask"].shape == (4 * count, 4, 4) and (regions["region_mask"].sum((1, 2)) == 4).all()
    )
    assert torch.equal(regions["labels"], digits_of_test()[: 4 * count])
    assert torch.equal(regions["region_mask"][3], torch.tensor([[0, 0, 0, 0]] * 2 + [[0, 0, 1, 1]] * 2))
    first = digits_of_test()[:4].tolist()
    assert (
        patches["labels"][0].tolist()
        == [[first[0]] * 2 + [first[1]] * 2] * 2 + [[first[2]] * 2 + [first[3]] * 2] * 2
    )


def digits_of_test() -> torch.Tensor:
    return clip_digits.digits()[1][splits()["test"]]


def test_mean_iou_averages_the_digits_present_in_prediction_or_truth():
    labels = torch.tensor([[[1, 1], [2, 2]]])  # three patches would do; four keep the grid square
    batch = {"pixel_values": torch.zeros(1, 3, 16, 16), "labels": labels}
    task = DigitSegmentation("clip_dense")
    perfect = torch.nn.functional.one_hot(labels, 10).permute(0, 3, 1, 2).float()
    assert task.score(FixedLogits(perfect), [batch]) == 1.0
    one_wrong = torch.nn.functional.one_hot(torch.tensor([[[1, 2], [2, 2]]]), 10).permute(0, 3, 1, 2).float()
    # digit 1: 1 of 2 patches, union 2 -> 1/2; digit 2: 2 hits, union 3 -> 2/3
    assert task.score(FixedLogits(one_wrong), [batch]) == pytest.approx((1 / 2 + 2 / 3) / 2)
