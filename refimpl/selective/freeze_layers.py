"""Freeze Layers — Lee et al., "What Would Elsa Do? Freezing Layers During Transformer Fine-Tuning", arXiv 2019
(catalogue: elsa).

    θ = (θ_1 … θ_{L-k} frozen,  θ_{L-k+1} … θ_L, θ_top trainable)

Trainable: every parameter of the last k transformer blocks (`trainable_layers`; by default a quarter of the
blocks, rounded up, as Table 1 of the survey summarises the paper: "1/4 final layers"), plus what sits above
them: the final norm (GPT-2's ln_f, LLaMA's norm) or BERT's pooler, and the task head (a head tied to the input
embeddings, as GPT-2's lm_head, stays frozen: training it would train the embeddings). The pretrained weights of
those layers are updated directly, so there is nothing to merge: the fine-tuned model is the adapted model.
"""

from __future__ import annotations

import math

from pydantic import Field
from torch import nn

from ..core.architectures import named_blocks
from ..core.errors import RefimplError
from ..core.registry import Method, MethodOptions, register
from ..core.targeting import task_head_parameters

# The module between the block stack and the task head, per architecture.
_ABOVE_BLOCKS = {"bert": "pooler", "gpt2": "ln_f", "llama": "norm"}


class FreezeLayersOptions(MethodOptions):
    trainable_layers: int | None = Field(
        None, gt=0, description="how many final blocks to fine-tune; default: a quarter of them, rounded up"
    )
    train_head: bool = Field(True, description="also train the final norm / pooler and the task head")


def trainable_block_count(model: nn.Module, options: FreezeLayersOptions) -> int:
    blocks = len(named_blocks(model)[1])
    count = options.trainable_layers or math.ceil(blocks / 4)
    if count > blocks:
        raise RefimplError(f"option 'trainable_layers': {count} exceeds the model's {blocks} blocks")
    return count


def _top_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The final norm or pooler (the module between the block stack and the head) and the task head."""
    top = "." + _ABOVE_BLOCKS[model.config.model_type]
    above = [p for name, module in model.named_modules() if name.endswith(top) for p in module.parameters()]
    return above + task_head_parameters(model)


def _selected_parameters(model: nn.Module, options: FreezeLayersOptions) -> list[nn.Parameter]:
    blocks = named_blocks(model)[1]
    first = len(blocks) - trainable_block_count(model, options)
    chosen = [p for block in blocks[first:] for p in block.parameters()]
    return chosen + (_top_parameters(model) if options.train_head else [])


@register
class FreezeLayers(Method):
    name = "freeze_layers"
    category = "selective"
    foundation_models = ("LLM",)
    papers = ("elsa",)
    summary = "Fine-tune only the last quarter of the transformer blocks (and the head); freeze the rest."
    update_rule = "θ_l = θ_l0 for blocks l ≤ L − k;  blocks L−k+1 … L and the head are fine-tuned"
    trainable = "all weights of the last k blocks, the final norm or pooler, and the task head"
    identity_at_init = True  # nothing is added: the model only changes once training starts
    Options = FreezeLayersOptions
    trains_pretrained_weights = True

    def inject(self, model: nn.Module, options: FreezeLayersOptions) -> None:
        for parameter in _selected_parameters(model, options):
            parameter.requires_grad_(True)

    def expected_trainable(self, model: nn.Module, options: FreezeLayersOptions) -> int:
        # From the unadapted shapes: k times the size of one block, plus the layers above the blocks.
        per_block = sum(p.numel() for p in named_blocks(model)[1][-1].parameters())
        top = sum(p.numel() for p in _top_parameters(model)) if options.train_head else 0
        return trainable_block_count(model, options) * per_block + top
