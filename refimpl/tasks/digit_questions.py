"""Visual question answering over scikit-learn's bundled digits for the tiny LLaVA and BLIP-2 (no download).

Each example is one digit image and a short question, as characters (ASCII codes, like the generation task):

    [begin] [image placeholders] question answer [end]

The loss and the metric cover only the answer and its end marker. The whole model (vision tower, connector or
Q-Former, language model) is pre-trained inside the task on two questions, "digit?" ("seven") and "even?"
("yes"/"no"), over the training images (cached once), then adapted to a question it has never seen,
"plus one?" (the name of the digit plus one, "one" to "ten"; "ten" is a word it has never produced).
Images: a fixed 60/40 split of all 1,797 images; the test images are seen neither in pre-training nor in
adaptation. Metric: exact-match accuracy on the test images asked "plus one?": the greedy answer, decoded one
character at a time from the question until the end marker, must equal the expected answer. This is computed in
one teacher-forced pass: greedy decoding reproduces the answer exactly when, at every answer position, the most
likely next character given the correct prefix is the correct one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from ..models import tiny_model
from ..models.multimodal import IGNORE_INDEX, IMAGE_PATCHES, IMAGE_TOKEN, QUERY_TOKENS
from ..models.specs import Batch
from .base import Task, pretrained_weights, shuffled_batches
from .digits import digits
from .generation import BEGIN, END, PAD

NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
ANSWERS: dict[str, Callable[[int], str]] = {
    "digit?": lambda digit: NAMES[digit],
    "even?": lambda digit: "no" if digit % 2 else "yes",
    "plus one?": lambda digit: NAMES[digit + 1],
}
PRETRAIN_QUESTIONS, NEW_QUESTION = ("digit?", "even?"), "plus one?"
IMAGE_TOKENS = {"llava": IMAGE_PATCHES, "blip2": QUERY_TOKENS}  # placeholders the model fills with the image
TRAIN_FRACTION, SPLIT_SEED = 0.6, 0
PRETRAIN = {"steps": 1000, "lr": 2e-3, "seed": 0, "batch_size": 32}
START_STD = 0.02  # the spread of BLIP-2's other initial weights, for its image encoder and queries


def image_indices(split: str) -> torch.Tensor:
    """A fixed 60/40 train/test split of all the digit images."""
    order = torch.randperm(len(digits()[1]), generator=torch.Generator().manual_seed(SPLIT_SEED))
    cut = int(TRAIN_FRACTION * len(order))
    return order[:cut] if split == "train" else order[cut:]


def encode(model_type: str, rows: list[tuple[int, str]]) -> Batch:
    """(image index, question) pairs as inputs; only the answer and its end marker are labelled."""
    images, labels = digits()
    prompts, answers = [], []
    for index, question in rows:
        prompts.append([BEGIN, *[IMAGE_TOKEN] * IMAGE_TOKENS[model_type], *map(ord, question)])
        answers.append([*map(ord, ANSWERS[question](int(labels[index]))), END])
    width = max(len(p) + len(a) for p, a in zip(prompts, answers))
    input_ids = torch.full((len(rows), width), PAD)
    targets = torch.full((len(rows), width), IGNORE_INDEX)
    attention_mask = torch.zeros(len(rows), width, dtype=torch.long)
    for row, (prompt, answer) in enumerate(zip(prompts, answers)):
        end = len(prompt) + len(answer)
        input_ids[row, :end] = torch.tensor(prompt + answer)
        targets[row, len(prompt) : end] = torch.tensor(answer)
        attention_mask[row, :end] = 1
    return {
        "pixel_values": images[[index for index, _ in rows]],
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "labels": targets,
    }


def question_batches(
    model_type: str, indices: torch.Tensor, questions: tuple[str, ...], size: int, seed: int
) -> Iterator[Batch]:
    """Endless shuffled batches over every (image, question) pair."""
    pairs = [(int(index), question) for index in indices for question in questions]
    return shuffled_batches(len(pairs), size, seed, lambda rows: encode(model_type, [pairs[i] for i in rows]))


def exact_matches(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per row: whether every labelled token is the most likely next token at the position before it."""
    predicted, targets = logits[:, :-1].argmax(-1), labels[:, 1:]
    return ((predicted == targets) | (targets == IGNORE_INDEX)).all(dim=1)


@torch.no_grad()
def redraw_image_path(model: nn.Module, seed: int) -> None:
    """Give BLIP-2's image encoder and queries weights that can learn from scratch.

    transformers builds BLIP-2 to load a pre-trained image encoder, so it draws the encoder's weights with
    std 1e-10 and starts the queries at zero: the image features are then constant and no gradient reaches
    them. Here the encoder's weights and the queries are drawn from N(0, 0.02²) (biases 0, norms kept at 1, 0).
    """
    generator = torch.Generator().manual_seed(seed)
    drawn = [p for name, p in model.vision_model.named_parameters() if "norm" not in name]
    for parameter in [*drawn, model.query_tokens]:
        if parameter.dim() == 1:
            parameter.zero_()
        else:
            parameter.normal_(std=START_STD, generator=generator)


class DigitQuestions(Task):
    foundation_model = "MFM"
    name = "digit_questions"
    description = (
        "tiny LLaVA/BLIP-2 pre-trained to answer 'digit?' and 'even?' about digit images, adapted to 'plus one?';"
        " exact-match accuracy of the greedy answer on held-out images"
    )
    model_types = ("llava", "blip2")
    metric = "exact-match accuracy"
    higher_is_better = True
    steps = 150
    lr = 1e-2
    full_lr = 1e-3
    batch_size = 32

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "pretrain": PRETRAIN,
            "questions": [PRETRAIN_QUESTIONS, NEW_QUESTION],
            "split": [TRAIN_FRACTION, SPLIT_SEED],
            **({"image_path_std": START_STD} if self.model_type == "blip2" else {}),
        }

    def build_model(self, seed: int) -> nn.Module:
        """The pre-trained model (no new head, so `seed` does not change it); `seed` then seeds the global
        generator that BLIP-2's Q-Former dropout draws from, so training is the same whether or not the
        pre-training just ran in this process."""
        model = tiny_model(self.model_type, seed=PRETRAIN["seed"])
        if self.model_type == "blip2":
            redraw_image_path(model, PRETRAIN["seed"])
        batches = question_batches(
            self.model_type,
            image_indices("train"),
            PRETRAIN_QUESTIONS,
            PRETRAIN["batch_size"],
            PRETRAIN["seed"],
        )
        model.load_state_dict(pretrained_weights(f"{self.model_type}-vqa", self.config(), model, batches))
        torch.manual_seed(seed)
        return model.eval()

    def train_batches(self, seed: int) -> Iterator[Batch]:
        return question_batches(
            self.model_type, image_indices("train"), (NEW_QUESTION,), self.batch_size, seed
        )

    def test_batches(self) -> list[Batch]:
        test = [(int(index), NEW_QUESTION) for index in image_indices("test")]
        return [encode(self.model_type, test[start : start + 128]) for start in range(0, len(test), 128)]

    def score(self, model: nn.Module, batches: list[Batch]) -> float:
        matches = [
            exact_matches(model(**{k: v for k, v in b.items() if k != "labels"}).logits, b["labels"])
            for b in batches
        ]
        return torch.cat(matches).float().mean().item()
