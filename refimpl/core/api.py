"""The public operations on a model: apply, count, merge, unmerge, remove, save and load an adapter.

`apply` freezes the base model and lets the method add or unfreeze its parameters; every structural change goes
through `replace_module` / `add_hook` / `add_undo`, so `remove` can put the model back exactly as it was.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import torch
from pydantic import ValidationError
from torch import nn

from .errors import RefimplError
from .layers import AdapterLayer
from .registry import Method, MethodOptions, TaskData, TrainingCallback, get_method
from .targeting import task_head_parameters

STATE_ATTRIBUTE = "refimpl_state"


@dataclass
class AdapterState:
    method: Method
    options: MethodOptions
    base_tensors: dict[int, weakref.ref] = field(default_factory=dict)
    # Names of the base tensors once the method is in place: they survive wrappers that swap the tensor objects
    # (FSDP turns every parameter into a DTensor), where identities do not.
    base_names: frozenset[str] = frozenset()
    undo: list[Callable[[], None]] = field(default_factory=list)
    merged: bool = False
    trains_head: bool = False  # the core, not the method, unfroze the task head (apply's train_head)

    def is_base(self, tensor: torch.Tensor) -> bool:
        ref = self.base_tensors.get(id(tensor))
        return ref is not None and ref() is tensor


def state_of(model: nn.Module) -> AdapterState:
    state = model.__dict__.get(STATE_ATTRIBUTE)
    if state is None:
        raise RefimplError(f"{type(model).__name__} has no refimpl adapter; call refimpl.apply first")
    return state


def is_adapted(model: nn.Module) -> bool:
    return STATE_ATTRIBUTE in model.__dict__


def validate_options(method: Method, options: dict[str, Any]) -> MethodOptions:
    try:
        return method.Options(**options)
    except ValidationError as error:
        problems = "; ".join(
            f"option {'.'.join(str(part) for part in item['loc']) or '?'!r}: {item['msg']}"
            for item in error.errors()
        )
        raise RefimplError(f"{method.name}: {problems}") from None


def apply(model: nn.Module, method: str, **options: Any) -> nn.Module:
    """Adapt `model` in place with a registered method and return it. The base parameters end up frozen.

    `train_head=True` also trains the model's task head (`classifier`, ...), as a newly added head must be; it is
    accepted by every method. Methods whose papers train the head have it as their own option, with the
    paper's default; for the others the core unfreezes the head after the method is in place.
    """
    if is_adapted(model):
        raise RefimplError(
            f"model is already adapted with {state_of(model).method.name!r}; refimpl.remove(model) first"
        )
    implementation = get_method(method)
    trains_head = "train_head" not in implementation.Options.model_fields and options.pop("train_head", False)
    validated = validate_options(implementation, options)
    state = AdapterState(method=implementation, options=validated, trains_head=bool(trains_head))
    state.base_tensors = {id(t): weakref.ref(t) for t in chain(model.parameters(), model.buffers())}
    model.__dict__[STATE_ATTRIBUTE] = state
    _freeze(model)
    try:
        implementation.inject(model, validated)
        if state.trains_head:
            head = task_head_parameters(model)
            if not head:
                raise RefimplError(f"train_head: {type(model).__name__} has no task head")
            for parameter in head:
                parameter.requires_grad_(True)
    except Exception:
        remove(model)
        raise
    state.base_names = frozenset(name for name, tensor in _named_tensors(model) if state.is_base(tensor))
    return model


def _named_tensors(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """Parameters and persistent buffers by their state-dict names."""
    yield from model.named_parameters()
    for module_name, module in model.named_modules():
        for buffer_name, buffer in module._buffers.items():
            if buffer is not None and buffer_name not in module._non_persistent_buffers_set:
                yield (f"{module_name}.{buffer_name}" if module_name else buffer_name), buffer


def _freeze(model: nn.Module) -> None:
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for parameter, _ in flags:
        parameter.requires_grad_(False)
    add_undo(model, lambda: [p.requires_grad_(flag) for p, flag in flags])


def add_undo(model: nn.Module, undo: Callable[[], Any]) -> None:
    """Record how to revert a change the method made, for `remove` and for a failed `apply`."""
    state_of(model).undo.append(undo)


def replace_module(model: nn.Module, name: str, new: nn.Module) -> nn.Module:
    """Swap the sub-module at dotted `name` for `new`; returns the old one."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, child)
    new.train(old.training)  # a new module starts in training mode; it must follow the model's current mode
    setattr(parent, child, new)
    add_undo(model, lambda: setattr(parent, child, old))
    return old


def attach_module(model: nn.Module, name: str, module: nn.Module) -> nn.Module:
    """Register a new sub-module on the model, so it is saved, moved and counted with it."""
    if hasattr(model, name):
        raise RefimplError(f"{type(model).__name__} already has an attribute {name!r}")
    model.add_module(name, module)
    add_undo(model, lambda: delattr(model, name))
    return module


def add_hook(model: nn.Module, handle: torch.utils.hooks.RemovableHandle) -> None:
    add_undo(model, handle.remove)


def remove(model: nn.Module) -> nn.Module:
    """Undo `apply`: the base model comes back with its modules, hooks and requires_grad flags as they were."""
    state = state_of(model)
    if state.merged:
        unmerge(model)
    for undo in reversed(state.undo):
        undo()
    del model.__dict__[STATE_ATTRIBUTE]
    return model


@contextmanager
def _frozen(parameters: list[nn.Parameter]) -> Iterator[None]:
    for parameter in parameters:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter in parameters:
            parameter.requires_grad_(True)


def adapter_layers(model: nn.Module) -> Iterator[AdapterLayer]:
    return (module for module in model.modules() if isinstance(module, AdapterLayer))


def merge(model: nn.Module) -> nn.Module:
    """Fold the learned update into the base weights, so inference runs at the base model's cost."""
    state = state_of(model)
    if not state.method.mergeable:
        raise RefimplError(
            f"method {state.method.name!r} adds computation that cannot be folded into the weights"
        )
    if state.merged:
        raise RefimplError("the adapter is already merged")
    for layer in adapter_layers(model):
        layer.merge()
    state.merged = True
    return model


def unmerge(model: nn.Module) -> nn.Module:
    state = state_of(model)
    if not state.merged:
        raise RefimplError("the adapter is not merged")
    for layer in adapter_layers(model):
        layer.unmerge()
    state.merged = False
    return model


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; trainable as the method's paper counts it."""
    total = sum(p.numel() for p in model.parameters())
    if is_adapted(model):
        state = state_of(model)
        head = task_head_parameters(model) if state.trains_head else []
        with _frozen(head):  # the method counts its own parameters as its paper does; the head comes on top
            own = state.method.trainable_count(model)
        return own + sum(p.numel() for p in head), state.method.total_count(model, total)
    return sum(p.numel() for p in model.parameters() if p.requires_grad), total


def prepare(model: nn.Module, data: TaskData) -> None:
    """Let the method of `model` set itself up on task data before training (see `Method.prepare`)."""
    state = state_of(model)
    state.method.prepare(model, state.options, data)


def training_callback(model: nn.Module) -> TrainingCallback | None:
    """A fresh `TrainingCallback` for one training run of `model`, if its method's training is more than its
    optimiser's (AutoFreeze's freezing schedule, IncreLoRA's rank growth, ...); None otherwise."""
    if not is_adapted(model):
        return None
    state = state_of(model)
    return state.method.training_callback(model, state.options)


def adapter_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """What an adapter file holds: trainable parameters, and parameters or persistent buffers the method added."""
    state = state_of(model)
    return {
        name: tensor
        for name, tensor in _named_tensors(model)
        if tensor.requires_grad or name not in state.base_names
    }
