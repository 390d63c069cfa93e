"""What every task provides, and the one training loop that methods and both references go through.

A task owns a pre-trained model (built once and cached), fixed train and test data, a metric and its direction,
and default steps and learning rates. Its two references are computed by the same `fit` loop as the methods:
"full fine-tuning" trains every parameter, "frozen baseline" trains only the task head on a frozen backbone
(a linear probe; with no head to train, as for language models, it is the pre-trained model as it is).
"""

from __future__ import annotations

import statistics
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from tqdm import tqdm

from ..core.api import training_callback
from ..core.registry import TrainingCallback
from ..models.specs import Batch
from .cache import Tensors, cached_tensors

# The training loop's optimiser settings besides the rate; part of every cache key, since results depend on them.
# fused: one kernel over all parameters instead of the CPU default, a Python loop that costs more than a small
# adapter's update.
ADAMW = {"weight_decay": 0.0, "fused": True}


def model_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    """The loss a model computes itself from the batch's `labels` (transformers' convention)."""
    return model(**batch).loss


class Task(ABC):
    name: ClassVar[str]
    description: ClassVar[str]
    model_types: ClassVar[tuple[str, ...]]  # the refimpl model types this task can train
    foundation_model: ClassVar[str]  # the survey's FM type of those models (LLM, VFM, VLM, MFM, VGM)
    metric: ClassVar[str]
    higher_is_better: ClassVar[bool]
    steps: ClassVar[int]
    lr: ClassVar[float]  # for methods and the frozen baseline
    full_lr: ClassVar[float]  # for full fine-tuning, which moves every weight and needs a smaller step
    batch_size: ClassVar[int] = 16

    def __init__(self, model_type: str) -> None:
        self.model_type = model_type

    @abstractmethod
    def build_model(self, seed: int) -> nn.Module:
        """The pre-trained model with its task head initialised from `seed`; two calls give identical weights."""

    @abstractmethod
    def train_batches(self, seed: int) -> Iterator[Batch]:
        """An endless stream of training batches (inputs and labels), shuffled by `seed`."""

    @abstractmethod
    def test_batches(self) -> list[Batch]:
        """The fixed held-out batches the metric is computed on."""

    @abstractmethod
    def score(self, model: nn.Module, batches: list[Batch]) -> float:
        """The task metric of `model` on `batches`."""

    def source_batches(self, seed: int) -> Iterator[Batch] | None:
        """An endless stream of the unlabelled batches the backbone was pre-trained on, for methods that pre-train
        on them (PPT's prompt); None where the task has none to offer."""
        return None

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """The training loss on one batch."""
        return model_loss(model, batch)

    def head_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        """The parameters of a task head the task adds to the pre-trained model (new, so every method trains it
        too), and the only ones the frozen baseline trains; none when the task keeps the model's own outputs."""
        return []

    def config(self) -> dict[str, Any]:
        """Everything that determines a result besides method, steps, lr and seed: the key of cached results."""
        return {
            "task": self.name,
            "model_type": self.model_type,
            "batch_size": self.batch_size,
            "optimizer": {"AdamW": ADAMW},
        }

    def predict(self, model: nn.Module, batch: Batch) -> Any:
        """One inference forward on a test batch (what merged inference is timed on)."""
        return model(**{key: value for key, value in batch.items() if key != "labels"})

    def evaluate(self, model: nn.Module) -> float:
        """The metric on the test set, in eval mode without gradients."""
        model.eval()
        with torch.no_grad():
            return self.score(model, self.test_batches())


class Classification(Task):
    """A task whose model has a `classifier` head and is scored by accuracy."""

    metric = "accuracy"
    higher_is_better = True

    def head_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return list(model.classifier.parameters())

    def score(self, model: nn.Module, batches: list[Batch]) -> float:
        correct = sum(
            (model(**{k: v for k, v in b.items() if k != "labels"}).logits.argmax(-1) == b["labels"])
            .sum()
            .item()
            for b in batches
        )
        return correct / sum(len(b["labels"]) for b in batches)


@dataclass
class Fit:
    losses: list[float]
    step_times: list[float]  # wall seconds per step: forward, backward and optimiser update

    @property
    def median_step(self) -> float:
        return statistics.median(self.step_times) if self.step_times else 0.0


def parameter_groups(
    model: nn.Module, lr: float, rates: Mapping[str, float], head: Iterable[nn.Parameter] = ()
) -> list[dict[str, Any]]:
    """The trainable parameters of `model` by learning rate: each takes the rate of the longest name prefix in
    `rates` that it starts with ("" matches all), or `lr` if none does; the `head` parameters always take `lr`."""
    head_ids = {id(parameter) for parameter in head}
    prefixes = sorted(rates, key=len, reverse=True)
    groups: dict[float, list[nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            prefix = next((prefix for prefix in prefixes if name.startswith(prefix)), None)
            rate = lr if prefix is None or id(parameter) in head_ids else rates[prefix]
            groups.setdefault(rate, []).append(parameter)
    return [{"params": parameters, "lr": rate} for rate, parameters in groups.items()]


def training_step(
    model: nn.Module,
    lr: float,
    loss_of: Callable[[nn.Module, Batch], torch.Tensor] = model_loss,
    rates: Mapping[str, float] | None = None,
    head: Iterable[nn.Parameter] = (),
) -> Callable[[Batch], tuple[float, float]]:
    """One AdamW step on the parameters of `model` that require gradients (at `lr`, or as `parameter_groups` says
    for `rates`), as a function of the batch that returns the loss and the step's wall seconds (forward, backward,
    and update, with the method's training callback if it has one). Puts the model in training mode."""
    groups = parameter_groups(model, lr, rates or {}, head)
    optimizer = torch.optim.AdamW(groups, lr=lr, **ADAMW)
    callback = training_callback(model) or TrainingCallback()
    model.train()

    def step(batch: Batch) -> tuple[float, float]:
        start = time.perf_counter()
        optimizer.zero_grad()
        loss = loss_of(model, batch)
        loss.backward()
        if callback.after_backward is not None:
            callback.after_backward()
        optimizer.step()
        if callback.after_step is not None:
            callback.after_step()
        return loss.item(), time.perf_counter() - start

    return step


def fit(
    model: nn.Module,
    batches: Iterator[Batch],
    steps: int,
    lr: float,
    label: str,
    loss_of: Callable[[nn.Module, Batch], torch.Tensor] = model_loss,
    rates: Mapping[str, float] | None = None,
    head: Iterable[nn.Parameter] = (),
) -> Fit:
    """Train the parameters of `model` that require gradients with AdamW (rates as in `training_step`), showing a
    progress bar on stderr; a model with none to train (a language model's frozen baseline) takes no steps."""
    trains = any(p.requires_grad for p in model.parameters())
    step = training_step(model, lr, loss_of, rates, head) if trains else None
    losses, step_times = [], []
    progress = tqdm(range(steps if trains else 0), desc=label, unit="step", leave=False, dynamic_ncols=True)
    for _ in progress:
        loss, seconds = step(next(batches))
        losses.append(loss)
        step_times.append(seconds)
        progress.set_postfix(loss=f"{loss:.4f}")
    model.eval()
    return Fit(losses, step_times)


def shuffled_batches(
    count: int, batch_size: int, seed: int, collate: Callable[[list[int]], Batch]
) -> Iterator[Batch]:
    """Endless full batches of `count` examples, reshuffled by a `seed`-ed generator on every pass."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(count, generator=generator).tolist()
        for start in range(0, count - batch_size + 1, batch_size):
            yield collate(order[start : start + batch_size])


def pretrained_weights(
    kind: str,
    config: dict[str, Any],
    model: nn.Module,
    batches: Iterator[Batch],
    loss_of: Callable[[nn.Module, Batch], torch.Tensor] = model_loss,
) -> Tensors:
    """Pre-train `model` as `config["pretrain"]` says (steps, lr) once; later calls read the weights from the cache."""

    def pretrain() -> Tensors:
        settings = config["pretrain"]
        fit(
            model,
            batches,
            settings["steps"],
            settings["lr"],
            f"pre-training the {kind} backbone (cached once)",
            loss_of,
        )
        return model.state_dict()

    # The architecture is part of the key: weights cached for another shape of the model are never loaded.
    return cached_tensors(kind, {**config, "architecture": str(model)}, pretrain)
