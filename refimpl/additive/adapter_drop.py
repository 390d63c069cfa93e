"""AdapterDrop — Rücklé, Geigle, Glockner, Beck, Pfeiffer, Reimers and Gurevych, "AdapterDrop: On the
Efficiency of Adapters in Transformers", EMNLP 2021 (catalogue: adapterdrop).

    block_l(h) = base block                                  for l < n  (no adapter: nothing to compute there)
    block_l(h) with h ← h + W_up σ(W_down h) after attention and FFN, for l ≥ n

Specialised AdapterDrop (`robust=False`) has no adapters at all in the first `drop_first_n` blocks, in
training and at inference. Robust AdapterDrop (`robust=True`) keeps adapters in every block and, for each
training batch, drops those of the first n blocks with n drawn uniformly from {0, ..., L-1}, so one model can
then run with any `drop_first_n` at inference. Trainable: the kept adapters and the task head. Our choices:
the blocks' layer norms stay frozen (a dropped block is then exactly the base block), and the default n = 1
suits the two-block test models (the paper drops e.g. 5 of BERT-base's 12).
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import nn

from ..core.api import add_hook, replace_module
from ..core.architectures import block_sublayers, hidden_size, named_blocks
from ..core.errors import RefimplError
from ..core.layers import SerialAdapter
from ..core.registry import Method, MethodOptions, register
from .adapter_common import norms_and_head_count
from .bottleneck_adapter import Bottleneck, Init, unfreeze_norms_and_head

POSITIONS = ("attention_output", "ffn_output")


class DroppableAdapter(SerialAdapter):
    """A serial adapter that can be switched off, leaving exactly the base sub-layer."""

    dropped = False

    def forward(self, *args: object, **kwargs: object) -> torch.Tensor:
        return self.base(*args, **kwargs) if self.dropped else super().forward(*args, **kwargs)


class AdapterDropOptions(MethodOptions):
    drop_first_n: int = Field(1, ge=0, description="blocks from the bottom without adapters (at inference)")
    robust: bool = Field(False, description="adapters everywhere; drop a random number n per training batch")
    adapter_size: int = Field(16, gt=0, description="bottleneck dimension m")
    activation: str = Field("relu", description="non-linearity σ (a transformers ACT2FN name)")
    init: Init = Field(
        "near_identity", description="N(0, 1e-2) projections, or zero W_up for an exact identity"
    )
    train_head: bool = Field(True, description="also train the task head")


def _block_index(name: str, blocks_name: str) -> int:
    return int(name.removeprefix(blocks_name + ".").split(".")[0])


def _adapted_blocks(model: nn.Module, options: AdapterDropOptions) -> range:
    blocks = len(named_blocks(model)[1])
    if options.drop_first_n >= blocks:
        raise RefimplError(
            f"option 'drop_first_n': {options.drop_first_n} drops every adapter of a {blocks}-block model"
        )
    return range(blocks) if options.robust else range(options.drop_first_n, blocks)


@register
class AdapterDrop(Method):
    name = "adapter_drop"
    category = "additive"
    foundation_models = ("LLM",)
    papers = ("adapterdrop",)
    summary = (
        "Remove the adapters of the lowest blocks (fixed, or a random number per batch) to save compute."
    )
    update_rule = "h ← h + W_up σ(W_down h) after attention and FFN, only in blocks l ≥ n"
    trainable = "the adapters of the kept blocks (all blocks when robust) and the task head"
    Options = AdapterDropOptions

    def inject(self, model: nn.Module, options: AdapterDropOptions) -> None:
        like, blocks_name = next(model.parameters()), named_blocks(model)[0]
        adapted = _adapted_blocks(model, options)
        wrapped: list[tuple[int, DroppableAdapter]] = []
        for name, module in block_sublayers(model, *POSITIONS):
            if (index := _block_index(name, blocks_name)) in adapted:
                adapter = Bottleneck(
                    hidden_size(model), options.adapter_size, options.activation, options.init, like
                )
                wrapped.append((index, DroppableAdapter(module, adapter)))
                replace_module(model, name, wrapped[-1][1])
        unfreeze_norms_and_head(model, norms=False, head=options.train_head)
        if options.robust:
            blocks = len(adapted)

            def drop_for_this_batch(module: nn.Module, args: Any) -> None:
                n = int(torch.randint(blocks, ())) if module.training else options.drop_first_n
                for index, adapter in wrapped:
                    adapter.dropped = index < n

            add_hook(model, model.register_forward_pre_hook(drop_for_this_batch))

    def expected_trainable(self, model: nn.Module, options: AdapterDropOptions) -> int:
        adapters = len(_adapted_blocks(model, options)) * len(POSITIONS)
        bottleneck = Bottleneck.parameter_count(hidden_size(model), options.adapter_size)
        return adapters * bottleneck + norms_and_head_count(model, norms=False, head=options.train_head)
