"""CLIP-Adapter — Gao et al., "CLIP-Adapter: Better Vision-Language Models with Feature Adapters", IJCV
(catalogue: clip-adapter; also linked from the CLIP backbone entry).

    f' = α · A(f) + (1 − α) · f,   A(f) = ReLU(W2 ReLU(W1 f)),   W1 ∈ R^{(D/r)×D}, W2 ∈ R^{D×(D/r)}

A two-layer bottleneck MLP on CLIP's final image feature f (and/or text feature), blended with the original
feature by the residual ratio α so that the few-shot adapter keeps CLIP's zero-shot knowledge. Trainable: the
two bias-free linear layers per adapted feature, 2·D²/r parameters; the whole of CLIP stays frozen. Defaults
as in the authors' code (clip_adapter.py): the image adapter only, reduction r = 4, α = 0.2. Applies to the
zero-shot class-prompt classifier ("clip_fewshot", the paper's few-shot classification setting) and to the
plain CLIP dual encoder.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from ..core.api import replace_module
from ..core.layers import AdapterLayer
from ..core.registry import Method, MethodOptions, register

PROJECTIONS = {"image": ("visual_projection",), "text": ("text_projection",)}
PROJECTIONS["both"] = PROJECTIONS["image"] + PROJECTIONS["text"]


class ResidualFeatureAdapter(AdapterLayer):
    """The base projection's output f, blended with a bottleneck MLP of it: α·A(f) + (1 − α)·f."""

    def __init__(self, base: nn.Linear, reduction: int, ratio: float) -> None:
        super().__init__()
        self.base = base
        features, like = base.out_features, base.weight
        factory = {"dtype": like.dtype, "device": like.device}
        self.adapter = nn.Sequential(
            nn.Linear(features, features // reduction, bias=False, **factory),
            nn.ReLU(),
            nn.Linear(features // reduction, features, bias=False, **factory),
            nn.ReLU(),
        )
        self.ratio = ratio

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feature = self.base(x)
        return self.ratio * self.adapter(feature) + (1 - self.ratio) * feature


class CLIPAdapterOptions(MethodOptions):
    features: Literal["image", "text", "both"] = Field("image", description="which CLIP feature(s) to adapt")
    reduction: int = Field(4, gt=0, description="bottleneck reduction r: the hidden layer has D / r units")
    residual_ratio: float = Field(
        0.2, ge=0, le=1, description="α: weight of the adapted feature in the blend"
    )


def clip_of(model: nn.Module) -> tuple[str, nn.Module]:
    """The CLIPModel and its name inside `model` (itself, or the `clip` of a class-prompt classifier)."""
    return ("clip.", model.clip) if hasattr(model, "clip") else ("", model)


@register
class CLIPAdapter(Method):
    name = "clip_adapter"
    category = "additive"
    foundation_models = ("VLM",)
    papers = ("clip-adapter",)
    summary = "A residual-blended two-layer MLP on CLIP's image (or text) feature; CLIP itself stays frozen."
    update_rule = "f' = α·ReLU(W2 ReLU(W1 f)) + (1 − α)·f"
    trainable = "two bias-free linear layers (D → D/r → D) per adapted feature"
    model_types = ("clip_fewshot", "clip")
    Options = CLIPAdapterOptions

    def inject(self, model: nn.Module, options: CLIPAdapterOptions) -> None:
        prefix, clip = clip_of(model)
        for name in PROJECTIONS[options.features]:
            adapter = ResidualFeatureAdapter(getattr(clip, name), options.reduction, options.residual_ratio)
            replace_module(model, prefix + name, adapter)

    def expected_trainable(self, model: nn.Module, options: CLIPAdapterOptions) -> int:
        """2 · D · (D / r) per adapted feature, D = CLIP's joint embedding size."""
        dimension = clip_of(model)[1].config.projection_dim
        return len(PROJECTIONS[options.features]) * 2 * dimension * (dimension // options.reduction)
