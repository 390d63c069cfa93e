"""Domain adaptation of a small character-level language model (tiny GPT-2 or LLaMA built from a config).

The model is first pre-trained inside the task on the product statements of the shipped sentiment file (cached
once), then adapted to the movie statements it has not seen; the metric is the perplexity per character of the
held-out movie test sentences. Characters are their ASCII codes, which fit the tiny models' 128-token vocabulary
(0, 1 and 2 are begin, end and padding, codes no printable character uses).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..models import tiny_model
from ..models.specs import Batch
from ..models.tiny import VOCAB_SIZE
from .base import Task, pretrained_weights, shuffled_batches
from .sentiment import data_sha256, examples

BEGIN, END, PAD, IGNORE_INDEX = 0, 1, 2, -100
SIZES = {"hidden": 64, "layers": 2}
PRETRAIN = {"steps": 200, "lr": 3e-3, "seed": 0, "batch_size": 16}
SOURCE_DOMAIN, TARGET_DOMAIN = "product", "movie"


def encode(texts: list[str]) -> Batch:
    """Character ids between begin and end markers, padded; padding is masked and ignored by the loss."""
    sequences = [[BEGIN, *(ord(c) for c in text), END] for text in texts]
    if any(max(s) >= VOCAB_SIZE for s in sequences):
        raise ValueError("the generation task reads ASCII text only")
    width = max(len(s) for s in sequences)
    input_ids = torch.tensor([s + [PAD] * (width - len(s)) for s in sequences])
    attention_mask = (torch.arange(width) < torch.tensor([len(s) for s in sequences])[:, None]).long()
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "labels": input_ids.masked_fill(attention_mask == 0, IGNORE_INDEX),
    }


def texts(domain: str, split: str) -> list[str]:
    return [row.text for row in examples() if row.domain == domain and row.split == split]


class Generation(Task):
    foundation_model = "LLM"
    name = "generation"
    description = (
        "adapt a char-level LM pre-trained on product statements to movie statements; test perplexity"
    )
    model_types = ("gpt2", "llama")
    metric = "perplexity"
    higher_is_better = False
    steps = 60
    lr = 3e-3
    full_lr = 1e-3

    def config(self) -> dict[str, Any]:
        return {**super().config(), "data_sha256": data_sha256(), "sizes": SIZES, "pretrain": PRETRAIN}

    def build_model(self, seed: int) -> nn.Module:
        """The pre-trained language model; it has no new head, so `seed` does not change it."""
        model = tiny_model(self.model_type, **SIZES, seed=PRETRAIN["seed"])
        batches = self.source_batches(PRETRAIN["seed"])
        model.load_state_dict(pretrained_weights(f"{self.model_type}-lm", self.config(), model, batches))
        return model.eval()

    def source_batches(self, seed: int) -> Iterator[Batch]:
        """The product statements the model is pre-trained on, shuffled by `seed`."""
        source = texts(SOURCE_DOMAIN, "train") + texts(SOURCE_DOMAIN, "test")
        return shuffled_batches(
            len(source), PRETRAIN["batch_size"], seed, lambda rows: encode([source[i] for i in rows])
        )

    def train_batches(self, seed: int) -> Iterator[Batch]:
        train = texts(TARGET_DOMAIN, "train")
        return shuffled_batches(
            len(train), self.batch_size, seed, lambda rows: encode([train[i] for i in rows])
        )

    def test_batches(self) -> list[Batch]:
        test = texts(TARGET_DOMAIN, "test")
        return [encode(test[start : start + 100]) for start in range(0, len(test), 100)]

    def score(self, model: nn.Module, batches: list[Batch]) -> float:
        """exp of the mean next-character negative log-likelihood over all test characters (and end markers)."""
        total, count = 0.0, 0
        for batch in batches:
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            targets = batch["labels"][:, 1:]
            total += F.cross_entropy(
                logits[:, :-1].flatten(0, 1).float(),
                targets.flatten(),
                ignore_index=IGNORE_INDEX,
                reduction="sum",
            ).item()
            count += int((targets != IGNORE_INDEX).sum())
        return math.exp(total / count)
