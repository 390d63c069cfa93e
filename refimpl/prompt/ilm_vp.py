"""ILM-VP — Chen, Yao, Chen, Zhang and Liu, "Understanding and Improving Visual Prompting: A Label-Mapping
Perspective", CVPR 2023 (catalogue: ilm-vp).

    ŷ_t(x) = f_{m(t)}(x + v),   m: target label -> source label, re-chosen each epoch from the prompted model

A frozen classifier pre-trained on source labels is reused for a target task with T ≤ S labels: a pixel prompt
v (VP's padding prompt, x + v) is trained by cross-entropy on the mapped logits, and between epochs
`remap_labels(model, batches)` recomputes the mapping from the current prompted model. It counts how often
each source label is predicted for images of each target label (the frequency matrix F, S × T) and assigns
labels greedily one to one: take the largest entry F[s, t], map t -> s, strike out row s and column t, repeat.
This alternation is the paper's bilevel optimisation (the mapping is the lower level, the prompt the upper).
Trainable: the prompt only; the mapping is a persistent buffer, so adapter files carry it. Before the first
remap the mapping is the identity (target t -> source t). The border defaults to p = 2 on the tiny 16-pixel
images, as VP's. The prompt form (VP's additive border) is our choice; ILM-VP's CLIP setting is not
implemented: this applies to ViT classifiers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..core.api import add_hook, attach_module
from ..core.errors import RefimplError
from ..core.registry import Method, MethodOptions, register
from ..models.specs import Batch
from .vp import BorderPrompt, image_shape, transform_pixels


class LabelMapping(nn.Module):
    """Which source output serves each target label: `source_of_target[t] = s`."""

    def __init__(self, target_labels: int, device: torch.device) -> None:
        super().__init__()
        self.register_buffer("source_of_target", torch.arange(target_labels, device=device))
        self.active = True  # off while remap_labels reads the source predictions

    def forward(self, source_logits: torch.Tensor) -> torch.Tensor:
        return source_logits[:, self.source_of_target] if self.active else source_logits


def greedy_one_to_one(frequency: torch.Tensor) -> torch.Tensor:
    """For an S × T frequency matrix, the mapping t -> s built by repeatedly taking the largest remaining
    entry and striking out its row and column (so no source label serves two target labels)."""
    remaining = frequency.clone().float()
    mapping = torch.empty(frequency.shape[1], dtype=torch.long)
    for _ in range(frequency.shape[1]):
        source, target = divmod(int(remaining.argmax()), frequency.shape[1])
        mapping[target] = source
        remaining[source, :] = -1
        remaining[:, target] = -1
    return mapping


@torch.no_grad()
def label_frequency(model: nn.Module, batches: Iterable[Batch]) -> torch.Tensor:
    """F[s, t]: how many images of target label t the prompted model assigns to source label s."""
    mapping: LabelMapping = model.label_mapping
    frequency = torch.zeros(model.config.num_labels, len(mapping.source_of_target), dtype=torch.long)
    was_training, mapping.active = model.training, False
    model.eval()
    try:
        for batch in batches:
            predicted = model(pixel_values=batch["pixel_values"]).logits.argmax(-1).cpu()
            frequency.index_put_((predicted, batch["labels"].cpu()), torch.tensor(1), accumulate=True)
    finally:
        mapping.active = True
        model.train(was_training)
    return frequency


def remap_labels(model: nn.Module, batches: Iterable[Batch]) -> torch.Tensor:
    """ILM's per-epoch step: recompute the label mapping from the current prompted model's predictions on
    `batches` (dicts with pixel_values and target labels), install it and return it (target -> source)."""
    mapping = greedy_one_to_one(label_frequency(model, batches))
    model.label_mapping.source_of_target.copy_(mapping)
    return mapping


class ILMVPOptions(MethodOptions):
    prompt_size: int = Field(2, gt=0, description="border width p of the padding prompt")
    num_target_labels: int | None = Field(
        None, gt=0, description="target labels T (at most the model's source labels); default: all of them"
    )


@register
class ILMVP(Method):
    name = "ilm_vp"
    category = "prompt"
    foundation_models = ("VFM",)
    papers = ("ilm-vp",)
    summary = (
        "A pixel prompt for a frozen classifier plus a source-to-target label mapping re-chosen every epoch."
    )
    update_rule = (
        "ŷ_t = f_{m(t)}(x + v);  m = greedy one-to-one argmax of the predicted-label frequency matrix"
    )
    trainable = "the padding prompt v (the label mapping is recomputed, not trained)"
    model_types = ("vit",)
    Options = ILMVPOptions

    def inject(self, model: nn.Module, options: ILMVPOptions) -> None:
        sources = model.config.num_labels
        targets = options.num_target_labels or sources
        if targets > sources:
            raise RefimplError(
                f"ilm_vp: option 'num_target_labels': {targets} target labels need as many source labels; "
                f"the model has {sources}"
            )
        channels, side = image_shape(model)
        like = next(model.parameters())
        prompt = attach_module(
            model, "visual_prompt", BorderPrompt(1, channels, side, options.prompt_size, like)
        )
        mapping = attach_module(model, "label_mapping", LabelMapping(targets, like.device))
        transform_pixels(model, lambda pixels: pixels + prompt().to(pixels.dtype))

        def map_labels(module: nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> Any:
            output.logits = mapping(output.logits)
            if kwargs.get("labels") is not None and mapping.active:
                output.loss = F.cross_entropy(output.logits, kwargs["labels"])
            return output

        add_hook(model, model.register_forward_hook(map_labels, with_kwargs=True))

    def expected_trainable(self, model: nn.Module, options: ILMVPOptions) -> int:
        channels, side = image_shape(model)
        return BorderPrompt.parameter_count(1, channels, side, options.prompt_size)
