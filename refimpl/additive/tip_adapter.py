"""Tip-Adapter — Zhang et al., "Tip-Adapter: Training-free CLIP-Adapter for Better Vision-Language Modeling"
(catalogue: tip-adapter; covers the fine-tuned variant Tip-Adapter-F).

A key-value cache built from the N = K·C few-shot training images (K shots of C classes) is added to CLIP's
zero-shot classifier:

    logits = s · f W_cᵀ + α · exp(−β (1 − f F_trainᵀ)) L_train

with f the L2-normalised test image feature, W_c the normalised class-prompt text features, F_train ∈ R^{N×D}
the keys (normalised CLIP features of the training images) and L_train ∈ {0,1}^{N×C} their one-hot labels. α
weighs the cache against the zero-shot term and β sets how sharply affinities decay. Tip-Adapter itself trains
nothing; Tip-Adapter-F unfreezes the keys (N·D parameters), keeping the values fixed.

`build_cache(model, pixel_values, labels)` fills the keys from K images per class (the training-free adapter).
Before it is called, each class's K key slots hold that class's text feature, a stand-in stated here so the
cache is defined from the options alone. The values are always the class-major one-hot layout (K rows per
class), a function of the options, so they are re-derived rather than saved. `finetune_keys` defaults to True
(Tip-Adapter-F) because a method whose defaults train nothing cannot be fine-tuned or tested as one; with
False the model is the training-free Tip-Adapter. Defaults α = 1.17, β = 1: where the authors' ImageNet
configuration (configs/imagenet.yaml of the official code) starts its search over both.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..core.api import add_hook, attach_module, state_of
from ..core.errors import RefimplError
from ..core.registry import Method, MethodOptions, register

CACHE_NAME = "tip_cache"


class TipAdapterOptions(MethodOptions):
    shots: int = Field(2, gt=0, description="K: cached training images per class (the cache holds K·C keys)")
    alpha: float = Field(1.17, ge=0, description="α: weight of the cache logits against the zero-shot logits")
    beta: float = Field(1.0, gt=0, description="β: sharpness of the affinity exp(−β(1 − f·k))")
    finetune_keys: bool = Field(
        True, description="Tip-Adapter-F: train the cached keys (False: training-free)"
    )


class TipCache(nn.Module):
    def __init__(self, keys: torch.Tensor, classes: int, shots: int, alpha: float, beta: float) -> None:
        super().__init__()
        self.keys = nn.Parameter(keys)
        labels = torch.arange(classes, device=keys.device).repeat_interleave(shots)
        self.register_buffer("values", F.one_hot(labels, classes).to(keys.dtype), persistent=False)
        self.alpha, self.beta = alpha, beta

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        """α · exp(−β (1 − f Kᵀ)) V: the few-shot logits of normalised image features f."""
        affinity = torch.exp(-self.beta * (1 - image_features @ self.keys.T.to(image_features.dtype)))
        return self.alpha * affinity @ self.values.to(image_features.dtype)


def cache_of(model: nn.Module) -> TipCache:
    state_of(model)
    return getattr(model, CACHE_NAME)


@torch.no_grad()
def build_cache(model: nn.Module, pixel_values: torch.Tensor, labels: torch.Tensor) -> None:
    """Fill the keys with the normalised CLIP features of K images per class (training-free Tip-Adapter)."""
    cache = cache_of(model)
    classes, shots = cache.values.shape[1], cache.keys.shape[0] // cache.values.shape[1]
    counts = torch.bincount(labels, minlength=classes)
    if labels.numel() != pixel_values.shape[0] or counts.tolist() != [shots] * classes:
        raise RefimplError(f"build_cache needs exactly {shots} images of each of the {classes} classes")
    order = torch.sort(labels, stable=True).indices  # class-major, matching the one-hot values
    features = model(pixel_values[order]).image_embeds
    cache.keys.copy_(features)


@register
class TipAdapter(Method):
    name = "tip_adapter"
    category = "additive"
    foundation_models = ("VLM",)
    papers = ("tip-adapter",)
    summary = (
        "Add a key-value cache of few-shot image features to CLIP's zero-shot logits; -F trains the keys."
    )
    update_rule = "logits = s·f W_cᵀ + α·exp(−β(1 − f F_trainᵀ)) L_train"
    trainable = "the cached keys F_train (K·C × D) with finetune_keys (Tip-Adapter-F); nothing otherwise"
    model_types = ("clip_fewshot",)
    Options = TipAdapterOptions

    def inject(self, model: nn.Module, options: TipAdapterOptions) -> None:
        if getattr(model, "dense", True):
            raise RefimplError(
                "tip_adapter needs CLIP as a whole-image class-prompt classifier (clip_fewshot)"
            )
        with torch.no_grad():
            keys = model.text_features().repeat_interleave(options.shots, dim=0)
        cache = TipCache(keys, keys.shape[0] // options.shots, options.shots, options.alpha, options.beta)
        cache.keys.requires_grad_(options.finetune_keys)
        attach_module(model, CACHE_NAME, cache)

        def add_cache_logits(module: nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> Any:
            output.logits = output.logits + cache(output.image_embeds)
            labels = kwargs.get("labels", args[1] if len(args) > 1 else None)
            if labels is not None:
                output.loss = F.cross_entropy(output.logits.float(), labels)
            return output

        add_hook(model, model.register_forward_hook(add_cache_logits, with_kwargs=True))

    def expected_trainable(self, model: nn.Module, options: TipAdapterOptions) -> int:
        """K · C keys of the joint embedding size D, when they are fine-tuned."""
        classes = model.class_name_ids.shape[0]
        return options.shots * classes * model.config.projection_dim if options.finetune_keys else 0
