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
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..models import tiny_model
from ..models.multimodal import IMAGE_TOKEN
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


def digit_classifier() -> nn.Module:
    """The tiny CLIP class-prompt classifier with the digit prompts in place of its random stand-in words."""
    model = tiny_model("clip_fewshot", seed=PRETRAIN["seed"])
    model.template_ids = torch.tensor(tokenize(TEMPLATE))
    model.class_name_ids = torch.tensor([tokenize(f"digit {name}") for name in DIGIT_NAMES])
    return model


@functools.cache
def prompt_ids() -> torch.Tensor:
    """The ten class prompts as the classifier builds them: [BOS] template name [EOS] [PAD …]."""
    model = digit_classifier()
    return model.prompt_ids(model.template_ids)


class CLIPDigits(Task):
    name = "clip_digits"
    description = (
        "tiny CLIP aligned on digits with class-name prompts, 16-shot on recoloured digits; test accuracy"
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
        model = digit_classifier()
        weights = pretrained_weights(
            "clip-digits",
            self.config() | {"model_type": "clip_fewshot"},
            model,
            batches_of("align", PRETRAIN["batch_size"], PRETRAIN["seed"]),
        )
        model.load_state_dict(weights)
        return (model.clip if self.model_type == "clip" else model).eval()

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
