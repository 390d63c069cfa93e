"""Choosing the modules a method adapts: a list of name suffixes, a regular expression, or "all-linear"."""

from __future__ import annotations

import re
from collections.abc import Sequence

from torch import nn
from transformers.pytorch_utils import Conv1D

from .errors import RefimplError

Targets = str | Sequence[str]
LINEAR_TYPES = (nn.Linear, Conv1D)
# Output heads are task-specific and usually trained or kept as they are, never adapted as "all-linear".
HEAD_NAMES = ("lm_head", "classifier", "score", "qa_outputs", "pooler.dense", "cls.predictions")


def _matches(name: str, targets: Targets) -> bool:
    if isinstance(targets, str):
        if targets == "all-linear":
            return not any(re.search(rf"(^|\.){re.escape(head)}(\.|$)", name) for head in HEAD_NAMES)
        return re.fullmatch(targets, name) is not None
    return any(name == suffix or name.endswith("." + suffix) for suffix in targets)


def find_targets(
    model: nn.Module,
    targets: Targets,
    types: tuple[type[nn.Module], ...] = LINEAR_TYPES,
    option: str = "target_modules",
) -> list[tuple[str, nn.Module]]:
    """All (name, module) of the given types whose name matches; an error naming the option if none does."""
    if isinstance(targets, str) and targets != "all-linear":
        try:
            re.compile(targets)
        except re.error as error:
            raise RefimplError(
                f"option {option!r}: invalid regular expression {targets!r}: {error}"
            ) from None
    found = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, types) and _matches(name, targets)
    ]
    if not found:
        kinds = "/".join(t.__name__ for t in types)
        raise RefimplError(
            f"option {option!r}: {targets!r} matches no {kinds} module of {type(model).__name__}"
        )
    return found


def linear_dims(module: nn.Module) -> tuple[int, int]:
    """(in_features, out_features) of nn.Linear or GPT-2's Conv1D (whose weight is stored in x out)."""
    if isinstance(module, Conv1D):
        in_features, out_features = module.weight.shape
        return in_features, out_features
    return module.in_features, module.out_features


def task_head_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters of the task head (classifier, lm_head, ...), leaving out weights tied to the input embeddings:
    training GPT-2's tied lm_head would silently train the whole token embedding."""
    embeddings = (
        getattr(model.get_input_embeddings(), "weight", None)
        if hasattr(model, "get_input_embeddings")
        else None
    )
    return [
        parameter
        for name, child in model.named_children()
        if name in HEAD_NAMES
        for parameter in child.parameters()
        if parameter is not embeddings
    ]
