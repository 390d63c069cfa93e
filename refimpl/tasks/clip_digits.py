"""Few-shot CLIP classification of digits with class-name prompts (scikit-learn's bundled digits, no download).

The tiny CLIP is first aligned inside the task (cached once): half of the 1,797 images, as they are, each
against the ten prompts "a photo of the digit zero" … "a photo of the digit nine" (CLIP's image-to-text
contrastive loss with the ten prompts as the candidates). The few-shot task is a shifted domain: the other half
of the images, drawn in red only (`shift`), of which 16 per class are the training shots and the rest the test set.
The frozen baseline is the aligned CLIP as a zero-shot classifier over the same prompts. Metric: test accuracy
(share of test images whose most similar prompt is their digit's).

Prompts are word-level: each word of `WORDS` is one token id of the tiny CLIP's 128-token vocabulary (0, 1, 2
are begin, end and padding; 3 is the image placeholder of the multimodal models), so a prompt is
[BOS] a photo of the digit three [EOS] [PAD …], the four-token template and two-token class name that
`refimpl.models.multimodal.CLIPClassifier` expects. "clip_fewshot" is that classifier; "clip" is its bare
CLIPModel with the same weights, fed the ten prompts as `input_ids` and scored by `logits_per_image`.
"""

from __future__ import annotations

import functools
from abc import abstractmethod
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..models import tiny_model
from ..models.multimodal import IMAGE_TOKEN, PATCHES_PER_SIDE
from ..models.specs import Batch
from .base import Task, pretrained_weights, shuffled_batches
from .digits import digits

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
WORDS = ("a", "photo", "of", "the", "digit", *DIGIT_NAMES)
TEMPLATE = "a photo of the"
ALIGN_FRACTION, SHOTS, SPLIT_SEED = 0.5, 16, 0
PRETRAIN = {"steps": 1000, "lr": 3e-3, "seed": 0, "batch_size": 32}


def tokenize(text: str) -> list[int]:
    """One id per word, after the ids the tiny models reserve."""
    unknown = [word for word in text.split() if word not in WORDS]
    if unknown:
        raise ValueError(f"words outside the digit prompts' vocabulary: {unknown}")
    return [IMAGE_TOKEN + 1 + WORDS.index(word) for word in text.split()]


def shift(images: torch.Tensor) -> torch.Tensor:
    """The target domain: the digit in the red channel only, green and blue flat at the middle value 0."""
    return images * torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)


@functools.cache
def splits() -> dict[str, torch.Tensor]:
    """Disjoint image indices: "align" (half of all), then of the rest "train" (SHOTS per class) and "test"."""
    labels = digits()[1]
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(SPLIT_SEED))
    cut = int(ALIGN_FRACTION * len(order))
    rest = order[cut:]
    shots = torch.cat([rest[labels[rest] == digit][:SHOTS] for digit in range(len(DIGIT_NAMES))])
    return {"align": order[:cut], "train": shots, "test": rest[~torch.isin(rest, shots)]}


def examples(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = digits()
    indices = splits()[split]
    return (images[indices] if split == "align" else shift(images[indices])), labels[indices]


def batches_of(split: str, size: int, seed: int) -> Iterator[Batch]:
    images, labels = examples(split)
    return shuffled_batches(
        len(labels), size, seed, lambda rows: {"pixel_values": images[rows], "labels": labels[rows]}
    )


def with_digit_prompts(model: nn.Module) -> nn.Module:
    """A tiny CLIP class-prompt model with the digit prompts in place of its random stand-in words."""
    model.template_ids = torch.tensor(tokenize(TEMPLATE))
    model.class_name_ids = torch.tensor([tokenize(f"digit {name}") for name in DIGIT_NAMES])
    return model


def aligned_clip(model_type: str) -> nn.Module:
    """The tiny CLIP of `model_type` (whole-image, region, dense or segmenter) with the aligned weights, which are
    learnt (once, cached) by the whole-image classifier: all these models share its parameter and buffer names."""
    key = CLIPDigits("clip_fewshot").config()
    classifier = with_digit_prompts(tiny_model("clip_fewshot", seed=PRETRAIN["seed"]))
    align = batches_of("align", PRETRAIN["batch_size"], PRETRAIN["seed"])
    weights = pretrained_weights("clip-digits", key, classifier, align)
    model = with_digit_prompts(tiny_model(model_type, seed=PRETRAIN["seed"]))
    model.load_state_dict(weights)
    return model.eval()


@functools.cache
def prompt_ids() -> torch.Tensor:
    """The ten class prompts as the classifier builds them: [BOS] template name [EOS] [PAD …]."""
    model = with_digit_prompts(tiny_model("clip_fewshot"))
    return model.prompt_ids(model.template_ids)


class CLIPDigits(Task):
    foundation_model = "VLM"
    name = "clip_digits"
    description = (
        "tiny CLIP aligned on digits with class-name prompts, 16-shot on red-only digits; test accuracy"
    )
    model_types = ("clip_fewshot", "clip")
    metric = "accuracy"
    higher_is_better = True
    steps = 150
    lr = 1e-2
    full_lr = 1e-3
    batch_size = 32

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "pretrain": PRETRAIN,
            "prompts": [TEMPLATE, DIGIT_NAMES],
            "split": [ALIGN_FRACTION, SHOTS, SPLIT_SEED],
            "shift": shift(torch.ones(1, 3, 1, 1)).flatten().tolist(),
        }

    def build_model(self, seed: int) -> nn.Module:
        """The aligned CLIP (classifier or bare model); nothing is new, so `seed` does not change it."""
        model = aligned_clip("clip_fewshot")
        return model.clip if self.model_type == "clip" else model

    def class_logits(self, model: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 10) similarities of each image to the ten class prompts, as the adapted model computes them."""
        if self.model_type == "clip":
            return model(input_ids=prompt_ids(), pixel_values=pixel_values).logits_per_image
        return model(pixel_values=pixel_values).logits

    def train_batches(self, seed: int) -> Iterator[Batch]:
        return batches_of("train", self.batch_size, seed)

    def test_batches(self) -> list[Batch]:
        images, labels = examples("test")
        return [{"pixel_values": images, "labels": labels}]

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(self.class_logits(model, batch["pixel_values"]).float(), batch["labels"])

    def predict(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return self.class_logits(model, batch["pixel_values"])

    def score(self, model: nn.Module, batches: list[Batch]) -> float:
        correct = sum((self.predict(model, b).argmax(-1) == b["labels"]).sum().item() for b in batches)
        return correct / sum(len(b["labels"]) for b in batches)


TRAIN_CANVASES = 400


def canvases(split: str, groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Canvases of four digits of `split` (rows of `groups`: top-left, top-right, bottom-left, bottom-right,
    as positions in the split) and the four digits' labels."""
    indices = splits()[split][groups]
    small = digits()[0][indices][..., ::2, ::2]  # undo the 2× upscaling: (B, 4, 3, 8, 8)
    rows = [torch.cat([small[:, 2 * row], small[:, 2 * row + 1]], dim=-1) for row in (0, 1)]
    return torch.cat(rows, dim=-2), digits()[1][indices]


def quadrant_of_patches() -> torch.Tensor:
    """(h, w): the quadrant (0 top-left … 3 bottom-right) each patch of the grid lies in."""
    half = torch.arange(PATCHES_PER_SIDE) // (PATCHES_PER_SIDE // 2)
    return 2 * half.view(-1, 1) + half.view(1, -1)


class DigitCanvases(Task):
    """Digits in the quadrants of canvases, on the aligned CLIP of `CLIPDigits` (its 16 shots per digit and its
    test images, not recoloured). A 16 × 16 canvas holds four 8 × 8 digits, one per quadrant (2 × 2 patches), so
    the aligned CLIP meets digits at half the size it was aligned on. Training canvases: a fixed pool of
    TRAIN_CANVASES random groups of four shots; test canvases: the test images in fixed groups of four."""

    foundation_model = "VLM"

    higher_is_better = True
    steps = 150
    full_lr = 1e-3
    batch_size = 32

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "backbone": CLIPDigits("clip_fewshot").config(),
            "canvases": TRAIN_CANVASES,
        }

    def build_model(self, seed: int) -> nn.Module:
        """The aligned CLIP; its decoder (if any) has no parameters, so `seed` does not change it."""
        return aligned_clip(self.model_type)

    @abstractmethod
    def batch(self, split: str, groups: torch.Tensor, quadrants: torch.Tensor) -> Batch:
        """The inputs and labels of canvases `groups`; `quadrants` picks a region per canvas where one is asked."""

    def train_batches(self, seed: int) -> Iterator[Batch]:
        generator = torch.Generator().manual_seed(SPLIT_SEED)
        groups = torch.randint(len(splits()["train"]), (TRAIN_CANVASES, 4), generator=generator)
        quadrants = torch.randint(4, (TRAIN_CANVASES,), generator=generator)
        return shuffled_batches(
            TRAIN_CANVASES,
            self.batch_size,
            seed,
            lambda rows: self.batch("train", groups[rows], quadrants[rows]),
        )

    def predicted_classes(self, model: nn.Module, batches: list[Batch]) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted and true classes of every test item (region or patch), flattened."""
        predicted = torch.cat([self.predict(model, b).logits.argmax(1).flatten() for b in batches])
        return predicted, torch.cat([b["labels"].flatten() for b in batches])


class DigitRegions(DigitCanvases):
    """ "clip_region": classify the digit of one quadrant, the rest blanked by `region_mask` (every quadrant of
    every test canvas is asked once). Metric: region accuracy, the share of asked quadrants whose most similar
    prompt is their digit's."""

    name = "clip_digit_regions"
    description = (
        "the digit in one quadrant of a four-digit canvas, on the aligned tiny CLIP; region accuracy"
    )
    model_types = ("clip_region",)
    metric = "region accuracy"
    lr = 1e-2

    def batch(self, split: str, groups: torch.Tensor, quadrants: torch.Tensor) -> Batch:
        images, labels = canvases(split, groups)
        repeat = len(quadrants) // len(groups)  # the test set asks every quadrant of a canvas
        return {
            "pixel_values": images.repeat_interleave(repeat, 0),
            "region_mask": (quadrant_of_patches() == quadrants.view(-1, 1, 1)).long(),
            "labels": labels.repeat_interleave(repeat, 0).gather(1, quadrants.view(-1, 1)).squeeze(1),
        }

    def test_batches(self) -> list[Batch]:
        count = len(splits()["test"]) // 4
        return [self.batch("test", torch.arange(4 * count).view(count, 4), torch.arange(4).repeat(count))]

    def score(self, model: nn.Module, batches: list[Batch]) -> float:
        predicted, truth = self.predicted_classes(model, batches)
        return (predicted == truth).float().mean().item()


class DigitSegmentation(DigitCanvases):
    """ "clip_dense", "clip_seg": label every patch of the canvas with the digit of its quadrant. Metric: mean IoU
    over the ten digits at patch resolution, a digit's IoU being |predicted ∩ true| / |predicted ∪ true| over
    all patches of all test canvases."""

    name = "clip_digit_segmentation"
    description = "label each patch of four-digit canvases with its digit, on the aligned tiny CLIP; mean IoU"
    model_types = ("clip_dense", "clip_seg")
    metric = "mean IoU"
    lr = 3e-3  # the new decoders of fc_clip and san collapse to one class at 1e-2

    def batch(self, split: str, groups: torch.Tensor, quadrants: torch.Tensor) -> Batch:
        images, labels = canvases(split, groups)
        return {"pixel_values": images, "labels": labels[:, quadrant_of_patches()]}

    def test_batches(self) -> list[Batch]:
        count = len(splits()["test"]) // 4
        return [self.batch("test", torch.arange(4 * count).view(count, 4), torch.empty(0))]

    def score(self, model: nn.Module, batches: list[Batch]) -> float:
        predicted, truth = self.predicted_classes(model, batches)
        classes = torch.arange(len(DIGIT_NAMES)).view(-1, 1)
        hits, true = predicted == classes, truth == classes
        union = (hits | true).sum(1)
        return ((hits & true).sum(1) / union)[union > 0].mean().item()
