"""The method registry: every PEFT method is a `Method` subclass registered under its paper's name.

A method declares its paper(s), its update rule, what it trains, and an `Options` model whose fields use the
paper's names. `inject` changes an already-frozen model; the shared mechanics (freezing, bookkeeping, merge,
save/load) live in `refimpl.core.api`, so a method file only says what is particular to its paper.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from .errors import RefimplError

CATEGORIES = ("selective", "additive", "prompt", "reparameterization", "hybrid")
FOUNDATION_MODELS = ("LLM", "VFM", "VLM", "MFM", "VGM")


@dataclass(frozen=True)
class TaskData:
    """What a method may use to prepare itself on a task before training (FISH's Fisher mask, LT-SFT's first
    phase): fresh streams of the task's training batches, its training loss, the task's pre-trained model after
    full fine-tuning (a fresh one, trained by the task's full fine-tuning recipe, on each call), and batches of the
    unlabelled text its backbone was pre-trained on (PPT pre-trains its prompt there), None where the task has none."""

    batches: Callable[[], Iterator[dict[str, Any]]]
    loss: Callable[[nn.Module, dict[str, Any]], torch.Tensor]
    fine_tuned: Callable[[], nn.Module]
    source_batches: Callable[[], Iterator[dict[str, Any]] | None]


@dataclass(frozen=True)
class TrainingCallback:
    """A method's work in each training step beyond its optimiser's, for the training loop to call: `after_backward`
    once the gradients are in (to read or rescale them), `after_step` once the optimiser has moved the parameters."""

    after_backward: Callable[[], object] | None = None
    after_step: Callable[[], object] | None = None


class MethodOptions(BaseModel):
    """Base of every method's options: unknown options are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


@dataclass(frozen=True)
class MethodInfo:
    name: str
    category: str
    foundation_models: tuple[str, ...]
    papers: tuple[str, ...]
    summary: str
    update_rule: str
    trainable: str
    mergeable: bool
    model_types: tuple[str, ...]
    options: dict[str, Any]  # option name -> default
    module: str  # the Python module that implements it
    slower_than_full_fine_tuning: str  # why a step may cost more than full fine-tuning's ("": it may not)
    trains_pretrained_weights: bool  # whether it trains at a task's full fine-tuning learning rate
    learning_rates: dict[str, float]  # parameter-name prefix -> the rate its paper trains those parameters at


class Method:
    """One PEFT method. Subclasses set the class attributes and implement `inject`."""

    name: ClassVar[str]
    category: ClassVar[str]
    foundation_models: ClassVar[tuple[str, ...]]
    papers: ClassVar[tuple[str, ...]]  # catalogue keys
    summary: ClassVar[str]
    update_rule: ClassVar[str]  # one or two lines of math, plain text
    trainable: ClassVar[str]  # what receives gradients, in words
    mergeable: ClassVar[bool] = False  # whether the learned update folds into the base weights
    identity_at_init: ClassVar[bool] = (
        False  # whether, with default options, the output starts at the base model's
    )
    model_types: ClassVar[tuple[str, ...]] = (
        "bert",
        "gpt2",
        "llama",
    )  # transformers model types it applies to
    Options: ClassVar[type[MethodOptions]] = MethodOptions
    # A method's step should cost no more than full fine-tuning's; where its paper trades time for something
    # (memory, most often), say what here, and the bench and the method's page report it.
    slower_than_full_fine_tuning: ClassVar[str] = ""
    # Whether what it trains is pretrained weights themselves, wholesale (in place, a copy, or a delta as large as
    # the weights it updates): then it trains at a task's full fine-tuning learning rate, since a step sized for
    # small new modules would move the whole pretrained network at once.
    trains_pretrained_weights: ClassVar[bool] = False
    # Rates its paper trains (some of) its own parameters at, where a task's rate for small new modules would wreck
    # them, by parameter-name prefix ("" for all of the method's parameters); a task's new head keeps the task's rate.
    learning_rates: ClassVar[tuple[tuple[str, float], ...]] = ()

    def inject(self, model: nn.Module, options: MethodOptions) -> None:
        """Add or unfreeze this method's parameters on a model whose base parameters are all frozen."""
        raise NotImplementedError

    def expected_trainable(self, model: nn.Module, options: MethodOptions) -> int:
        """The paper's closed-form trainable-parameter count for this (not yet adapted) model and configuration."""
        raise NotImplementedError

    def prepare(self, model: nn.Module, options: MethodOptions, data: TaskData) -> None:
        """Set-up that needs task data, after `inject` and before training (FISH scores weights by their Fisher
        information); nothing for most methods. `run` and `bench` call it, through `refimpl.prepare`."""

    def training_callback(self, model: nn.Module, options: MethodOptions) -> TrainingCallback | None:
        """A fresh callback for one training run, when the method's training is more than its optimiser's
        (AutoFreeze freezes blocks, IncreLoRA grows ranks, ...); None for most methods."""
        return None

    def trainable_count(self, model: nn.Module) -> int:
        """Trainable parameters as the paper counts them (sparse methods override: only the unmasked entries)."""
        return sum(p.numel() for p in model.parameters() if p.requires_grad)

    def total_count(self, model: nn.Module, parameters: int) -> int:
        """All parameters of the adapted model; methods that store base weights as buffers (QLoRA) add them."""
        return parameters

    @classmethod
    def info(cls) -> MethodInfo:
        options = {
            name: field.get_default(call_default_factory=True)
            for name, field in cls.Options.model_fields.items()
        }
        return MethodInfo(
            name=cls.name,
            category=cls.category,
            foundation_models=cls.foundation_models,
            papers=cls.papers,
            summary=cls.summary,
            update_rule=cls.update_rule,
            trainable=cls.trainable,
            mergeable=cls.mergeable,
            model_types=cls.model_types,
            options=options,
            module=cls.__module__,
            slower_than_full_fine_tuning=cls.slower_than_full_fine_tuning,
            trains_pretrained_weights=cls.trains_pretrained_weights,
            learning_rates=dict(cls.learning_rates),
        )


_REGISTRY: dict[str, type[Method]] = {}
_CATEGORY_PACKAGES = tuple(f"refimpl.{category}" for category in CATEGORIES)


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: add a method to the registry, checking its declaration once, at import."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise RefimplError(
            f"method {cls.name!r} is registered twice ({_REGISTRY[cls.name].__module__}, {cls.__module__})"
        )
    if cls.category not in CATEGORIES:
        raise RefimplError(f"method {cls.name!r}: unknown category {cls.category!r}")
    if unknown := set(cls.foundation_models) - set(FOUNDATION_MODELS):
        raise RefimplError(f"method {cls.name!r}: unknown foundation model types {sorted(unknown)}")
    _REGISTRY[cls.name] = cls
    return cls


@functools.cache
def _import_all() -> None:
    """Import every method module once, so that their `@register` decorators run."""
    for package_name in _CATEGORY_PACKAGES:
        package = importlib.import_module(package_name)
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package_name}.{module.name}")


def get_method(name: str) -> Method:
    _import_all()
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise RefimplError(f"unknown method {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def methods() -> list[MethodInfo]:
    """Every registered method, sorted by category then name."""
    _import_all()
    infos = [cls.info() for cls in _REGISTRY.values()]
    return sorted(infos, key=lambda info: (CATEGORIES.index(info.category), info.name))
