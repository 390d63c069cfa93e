"""Transfer of a tiny ViT between digit classes: scikit-learn's bundled 8×8 digits (no download).

The ViT is pre-trained inside the task on all images of the digits 0–4 (cached once), then given a new classifier
and adapted to the digits 5–9 (as labels 0–4), a fixed 60/40 train/test split of those. The 8×8 images are scaled
up to the tiny ViT's 16×16 three-channel input. Metric: test accuracy.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from ..models import tiny_model
from ..models.specs import Batch
from ..models.vision import IMAGE_SIZE
from .base import Classification, pretrained_weights, shuffled_batches

SOURCE_CLASSES, TARGET_CLASSES = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)
TRAIN_FRACTION, SPLIT_SEED = 0.6, 0
SIZES = {"hidden": 64, "layers": 2}
PRETRAIN = {"steps": 200, "lr": 3e-3, "seed": 0, "batch_size": 32}


@functools.cache
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 images as (N, 3, 16, 16) floats in [-1, 1] and their digit labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32) / 16.0 * 2 - 1
    scale = IMAGE_SIZE // images.shape[-1]
    images = images.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)
    return images[:, None].expand(-1, 3, -1, -1).contiguous(), torch.tensor(data.target)


def indices_of(classes: tuple[int, ...]) -> torch.Tensor:
    return torch.isin(digits()[1], torch.tensor(classes)).nonzero().squeeze(1)


def target_indices(split: str) -> torch.Tensor:
    """A fixed 60/40 split of the images of the target classes."""
    indices = indices_of(TARGET_CLASSES)
    order = indices[torch.randperm(len(indices), generator=torch.Generator().manual_seed(SPLIT_SEED))]
    cut = int(TRAIN_FRACTION * len(indices))
    return order[:cut] if split == "train" else order[cut:]


def labelled(indices: torch.Tensor, classes: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """The images at `indices`, labelled by the position of their digit in `classes`."""
    images, labels = digits()
    return images[indices], torch.searchsorted(torch.tensor(classes), labels[indices])


def batches_of(images: torch.Tensor, labels: torch.Tensor, size: int, seed: int) -> Iterator[Batch]:
    return shuffled_batches(
        len(labels), size, seed, lambda rows: {"pixel_values": images[rows], "labels": labels[rows]}
    )


class Digits(Classification):
    foundation_model = "VFM"
    name = "digits"
    description = "tiny ViT pre-trained on digits 0-4, adapted to digits 5-9 (scikit-learn's bundled digits)"
    model_types = ("vit",)
    steps = 60
    lr = 3e-3
    full_lr = 1e-3
    batch_size = 32

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "sizes": SIZES,
            "pretrain": PRETRAIN,
            "classes": [SOURCE_CLASSES, TARGET_CLASSES],
        }

    def build_model(self, seed: int) -> nn.Module:
        model = tiny_model("vit", **SIZES, num_labels=len(TARGET_CLASSES), seed=PRETRAIN["seed"])
        source = batches_of(
            *labelled(indices_of(SOURCE_CLASSES), SOURCE_CLASSES), PRETRAIN["batch_size"], PRETRAIN["seed"]
        )
        model.load_state_dict(pretrained_weights("vit-digits", self.config(), model, source))
        torch.manual_seed(seed)
        model.classifier.reset_parameters()  # a new head for the new classes
        return model.eval()

    def train_batches(self, seed: int) -> Iterator[Batch]:
        return batches_of(*labelled(target_indices("train"), TARGET_CLASSES), self.batch_size, seed)

    def test_batches(self) -> list[Batch]:
        images, labels = labelled(target_indices("test"), TARGET_CLASSES)
        return [{"pixel_values": images, "labels": labels}]
