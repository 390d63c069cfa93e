"""MAD-X — Pfeiffer, Vulić, Gurevych and Ruder, "MAD-X: An Adapter-Based Framework for Multi-Task
Cross-Lingual Transfer", EMNLP 2020 (catalogue: mad-x).

    h ← h + LA(h),  h ← h + TA(h)      one Pfeiffer bottleneck per role, after the FFN of every block
    o = [e1 + F(e2); e2 + G(e1 + F(e2))]  invertible (NICE) adapter on the token embeddings,
                                          its inverse before the output embedding (LM head) of decoders

Language adapters (LA, reduction factor 2) and one invertible adapter per language are trained by language
modelling on that language; task adapters (TA, reduction factor 16) are trained on top of the frozen source
language adapter. For zero-shot transfer the language adapter is swapped for the target language's
(`adapter_common.activate`). Trainable: `train="language"`: the active language adapters and invertible adapter;
`train="task"`: the active task adapters and the task head. Every adapter named in the options exists in the
model and in the adapter file.

Simplified: the task adapter reads the language adapter's output with its own skip connection, instead of the
paper's extra residual from before the language adapter; the invertible adapter is applied to the word
embeddings (where the tied output embedding applies its inverse).
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field, StringConstraints, model_validator
from torch import nn

from ..core.api import add_hook, attach_module, replace_module
from ..core.architectures import block_sublayers, hidden_size, transformer_blocks
from ..core.errors import RefimplError
from ..core.layers import AdapterLayer
from ..core.registry import Method, MethodOptions, register
from ..core.targeting import task_head_parameters
from .bottleneck_adapter import Bottleneck, Init

AdapterName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]+$")]  # a module name: no dots
INVERTIBLE_MODULE = "mad_x_invertible"


class InvertibleAdapter(nn.Module):
    """An additive coupling block (NICE): exactly invertible whatever F and G compute."""

    def __init__(
        self, hidden: int, reduction_factor: int, activation: str, init: Init, like: torch.Tensor
    ) -> None:
        super().__init__()
        half = hidden // 2
        self.F = Bottleneck(half, half // reduction_factor, activation, init, like)
        self.G = Bottleneck(half, half // reduction_factor, activation, init, like)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        e1, e2 = e.chunk(2, dim=-1)
        o1 = e1 + self.F(e2)
        return torch.cat([o1, e2 + self.G(o1)], dim=-1)

    def inverse(self, o: torch.Tensor) -> torch.Tensor:
        o1, o2 = o.chunk(2, dim=-1)
        e2 = o2 - self.G(o1)
        return torch.cat([o1 - self.F(e2), e2], dim=-1)

    @staticmethod
    def parameter_count(hidden: int, reduction_factor: int) -> int:
        half = hidden // 2
        return 2 * Bottleneck.parameter_count(half, half // reduction_factor)


class AdapterStack(AdapterLayer):
    """Runs a sub-layer, then the active language adapter, then the active task adapter, each with a skip."""

    def __init__(self, base: nn.Module, languages: nn.ModuleDict, tasks: nn.ModuleDict) -> None:
        super().__init__()
        self.base = base
        self.languages = languages
        self.tasks = tasks
        self.active_language: str | None = None
        self.active_task: str | None = None

    def forward(self, *args: object, **kwargs: object) -> torch.Tensor:
        out = self.base(*args, **kwargs)
        if self.active_language is not None:
            out = out + self.languages[self.active_language](out)
        if self.active_task is not None:
            out = out + self.tasks[self.active_task](out)
        return out


class StackOptions(MethodOptions):
    """Options shared by MAD-X and BAD-X: everything except how the language adapters are named."""

    tasks: tuple[AdapterName, ...] = Field(("task",), min_length=1, description="names of the task adapters")
    active_task: str | None = Field(
        "task", description="task adapter that runs (None: language adapter only)"
    )
    train: Literal["language", "task"] = Field(
        "task", description="stage: train the active language adapters (MLM) or the active task adapter"
    )
    language_reduction_factor: int = Field(2, gt=0, description="hidden / bottleneck of language adapters")
    task_reduction_factor: int = Field(16, gt=0, description="hidden / bottleneck of task adapters")
    invertible: bool = Field(True, description="add an invertible adapter per language on the embeddings")
    invertible_reduction_factor: int = Field(
        2, gt=0, description="(hidden/2) / bottleneck of the coupling functions F and G"
    )
    activation: str = Field("relu", description="non-linearity of every adapter (a transformers ACT2FN name)")
    init: Init = Field("near_identity", description="N(0, 1e-2) projections, or zero up-projections")
    train_head: bool = Field(True, description="also train the task head in the task stage")

    @model_validator(mode="after")
    def _active_task_exists(self) -> StackOptions:
        if len(set(self.tasks)) < len(self.tasks):
            raise ValueError(f"tasks {list(self.tasks)} repeat a name")
        if self.active_task is not None and self.active_task not in self.tasks:
            raise ValueError(f"active_task {self.active_task!r} is not one of tasks {list(self.tasks)}")
        if self.train == "task" and self.active_task is None:
            raise ValueError("train='task' needs an active_task")
        return self


class MadXOptions(StackOptions):
    languages: tuple[AdapterName, ...] = Field(
        ("en", "sw"), min_length=1, description="names of the language adapters"
    )
    active_language: str = Field("en", description="language adapter (and invertible adapter) that runs")

    @model_validator(mode="after")
    def _active_language_exists(self) -> MadXOptions:
        if len(set(self.languages)) < len(self.languages):
            raise ValueError(f"languages {list(self.languages)} repeat a name")
        if self.active_language not in self.languages:
            raise ValueError(
                f"active_language {self.active_language!r} is not one of languages {list(self.languages)}"
            )
        return self


def _bottleneck_size(model: nn.Module, reduction_factor: int, option: str) -> int:
    size = hidden_size(model) // reduction_factor
    if size == 0:
        raise RefimplError(f"option {option!r}: hidden size {hidden_size(model)} leaves no bottleneck")
    return size


def inject_stack(model: nn.Module, options: StackOptions, languages: tuple[str, ...]) -> None:
    """Add language and task adapters after every FFN, and invertible adapters (all frozen until activated)."""
    like, d = next(model.parameters()), hidden_size(model)
    if options.invertible and d % 2:
        raise RefimplError(f"option 'invertible': the coupling splits the hidden size, {d} is odd")

    def adapters(names: tuple[str, ...], size: int) -> nn.ModuleDict:
        return nn.ModuleDict(
            {name: Bottleneck(d, size, options.activation, options.init, like) for name in names}
        )

    language_size = _bottleneck_size(model, options.language_reduction_factor, "language_reduction_factor")
    task_size = _bottleneck_size(model, options.task_reduction_factor, "task_reduction_factor")
    for name, module in block_sublayers(model, "ffn_output"):
        stack = AdapterStack(module, adapters(languages, language_size), adapters(options.tasks, task_size))
        replace_module(model, name, stack)
    if options.invertible:
        _bottleneck_size(model, 2 * options.invertible_reduction_factor, "invertible_reduction_factor")
        invertible = nn.ModuleDict(
            {
                name: InvertibleAdapter(
                    d, options.invertible_reduction_factor, options.activation, options.init, like
                )
                for name in languages
            }
        )
        attach_module(model, INVERTIBLE_MODULE, invertible)
        _hook_invertible(model, invertible)


def _hook_invertible(model: nn.Module, invertible: nn.ModuleDict) -> None:
    def embed(module: nn.Module, args: object, out: torch.Tensor) -> torch.Tensor:
        return invertible[invertible.active](out)

    def before_output_embedding(module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor]:
        return (invertible[invertible.active].inverse(args[0]),)

    add_hook(model, model.get_input_embeddings().register_forward_hook(embed))
    output_embedding = model.get_output_embeddings()
    if output_embedding is not None:  # decoders: undo the coupling before the (tied) output embedding
        add_hook(model, output_embedding.register_forward_pre_hook(before_output_embedding))


def set_active_stack(model: nn.Module, options: StackOptions, active_language: str) -> None:
    """Choose which adapters run and which train; everything else stays frozen."""
    trainable: list[nn.Module] = []
    for stack in _stacks(model):
        stack.active_language, stack.active_task = active_language, options.active_task
        for adapter in [*stack.languages.values(), *stack.tasks.values()]:
            adapter.requires_grad_(False)
        if options.train == "language":
            trainable.append(stack.languages[active_language])
        else:
            trainable.append(stack.tasks[options.active_task])
    if options.invertible:
        invertible = model.get_submodule(INVERTIBLE_MODULE)
        invertible.active = active_language
        invertible.requires_grad_(False)
        if options.train == "language":
            trainable.append(invertible[active_language])
    for module in trainable:
        module.requires_grad_(True)
    head = task_head_parameters(model)
    for parameter in head:
        parameter.requires_grad_(options.train == "task" and options.train_head)


def _stacks(model: nn.Module) -> list[AdapterStack]:
    return [module for module in model.modules() if isinstance(module, AdapterStack)]


def stack_trainable(model: nn.Module, options: StackOptions) -> int:
    """Closed form: one trained bottleneck per block, plus the invertible adapter or the head."""
    d, blocks = hidden_size(model), len(transformer_blocks(model))
    if options.train == "language":
        adapters = blocks * Bottleneck.parameter_count(d, d // options.language_reduction_factor)
        invertible = InvertibleAdapter.parameter_count(d, options.invertible_reduction_factor)
        return adapters + (invertible if options.invertible else 0)
    adapters = blocks * Bottleneck.parameter_count(d, d // options.task_reduction_factor)
    head = sum(p.numel() for p in task_head_parameters(model)) if options.train_head else 0
    return adapters + head


@register
class MadX(Method):
    name = "mad_x"
    category = "additive"
    foundation_models = ("LLM",)
    papers = ("mad-x",)
    summary = (
        "Stack a language adapter and a task adapter after every FFN, with invertible embedding adapters; "
        "swap language adapters for zero-shot cross-lingual transfer."
    )
    update_rule = (
        "h ← h + LA(h); h ← h + TA(h) (after the FFN);  e ← NICE coupling(e), inverse before the LM head"
    )
    trainable = "stage 'language': active language + invertible adapters; stage 'task': task adapter + head"
    Options = MadXOptions
    switchable = ("active_language", "active_task", "train", "train_head")

    def inject(self, model: nn.Module, options: MadXOptions) -> None:
        inject_stack(model, options, options.languages)
        self.set_active(model, options)

    def set_active(self, model: nn.Module, options: MadXOptions) -> None:
        """Used by `adapter_common.activate`, e.g. `activate(model, active_language="sw")` for zero-shot."""
        set_active_stack(model, options, options.active_language)

    def expected_trainable(self, model: nn.Module, options: MadXOptions) -> int:
        return stack_trainable(model, options)
