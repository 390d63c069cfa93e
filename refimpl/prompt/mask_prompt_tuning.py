"""Mask prompt tuning — Liang et al., "Open-Vocabulary Semantic Segmentation with Mask-adapted CLIP", CVPR
2023 (catalogue: ovseg).

    t_i = P_i if patch i is blank (outside the mask) else E(x)_i,   CLIP image encoder frozen

OVSeg classifies masked region proposals with CLIP; the blank (zeroed) area of a masked image is far from
CLIP's training images. Mask prompt tuning replaces the tokens of the blank patches by learned prompt tokens,
so CLIP adapts to masked inputs without changing its weights. Trainable: one prompt token per patch position
and per prompted layer (depth · P · d); `depth = 1` prompts the encoder input only, `depth > 1` also replaces
the blank tokens at the input of the next depth − 1 layers (deep prompts).

Applies to CLIP as a class-prompt classifier of masked regions ("clip_region": batches carry `region_mask`, 1
= inside, on the patch grid). The input-layer prompts start at the token a blank patch produces (its position
embedding, CLIP's patch projection having no bias), so the adapted model starts exactly at the base model —
our choice of initialisation; deeper prompts start from N(0, 0.02²).
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import nn

from ..core.api import add_hook, attach_module
from ..core.errors import RefimplError
from ..core.registry import Method, MethodOptions, register


class MaskPromptOptions(MethodOptions):
    depth: int = Field(1, gt=0, description="layers whose blank tokens are replaced (1: the input only)")


class MaskPrompts(nn.Module):
    def __init__(self, blank_tokens: torch.Tensor, depth: int) -> None:
        super().__init__()
        deeper = torch.randn(depth - 1, *blank_tokens.shape, device=blank_tokens.device) * 0.02
        self.prompts = nn.Parameter(torch.cat([blank_tokens[None], deeper.to(blank_tokens.dtype)]))
        self.blank: torch.Tensor | None = None  # (B, P) of the current batch; None when no region is given

    def replace(self, tokens: torch.Tensor, layer: int) -> torch.Tensor:
        """Tokens (B, 1 + P, d) with the blank patch tokens replaced by this layer's prompts (CLS kept)."""
        if self.blank is None:
            return tokens
        patches = torch.where(self.blank[..., None], self.prompts[layer].to(tokens.dtype), tokens[:, 1:])
        return torch.cat([tokens[:, :1], patches], dim=1)


@register
class MaskPromptTuning(Method):
    name = "mask_prompt_tuning"
    category = "prompt"
    foundation_models = ("VLM",)
    papers = ("ovseg",)
    summary = "Learned prompt tokens take the place of the blank patches of a masked image in frozen CLIP."
    update_rule = "t_i = P_i for blank patches i, E(x)_i otherwise (at the input, and in deep layers)"
    trainable = "one prompt token per patch position and prompted layer (depth × P × d)"
    identity_at_init = True
    model_types = ("clip_region",)
    Options = MaskPromptOptions

    def inject(self, model: nn.Module, options: MaskPromptOptions) -> None:
        if not hasattr(model, "clip") or getattr(model, "dense", True):
            raise RefimplError("mask_prompt_tuning needs CLIP as a region classifier (clip_region)")
        vision = model.clip.vision_model
        if options.depth > len(vision.encoder.layers):
            raise RefimplError(f"option 'depth': the image encoder has {len(vision.encoder.layers)} layers")
        embeddings = vision.embeddings
        with torch.no_grad():
            blank_image = torch.zeros(
                1,
                3,
                embeddings.image_size,
                embeddings.image_size,
                device=embeddings.patch_embedding.weight.device,
            )
            blank_tokens = embeddings(blank_image.to(embeddings.patch_embedding.weight.dtype))[0, 1:]
        prompts = attach_module(model, "mask_prompts", MaskPrompts(blank_tokens, options.depth))

        def read_region(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
            region = kwargs.get("region_mask", args[2] if len(args) > 2 else None)
            prompts.blank = None if region is None else region.flatten(1) == 0

        def at_input(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
            return prompts.replace(output, 0)

        add_hook(model, model.register_forward_pre_hook(read_region, with_kwargs=True))
        add_hook(model, embeddings.register_forward_hook(at_input))
        for layer in range(1, options.depth):

            def deep(module: nn.Module, args: tuple, kwargs: dict[str, Any], layer: int = layer) -> tuple:
                if args:
                    return (prompts.replace(args[0], layer), *args[1:]), kwargs
                return args, {**kwargs, "hidden_states": prompts.replace(kwargs["hidden_states"], layer)}

            add_hook(model, vision.encoder.layers[layer].register_forward_pre_hook(deep, with_kwargs=True))

    def expected_trainable(self, model: nn.Module, options: MaskPromptOptions) -> int:
        vision = model.config.vision_config
        patches = (vision.image_size // vision.patch_size) ** 2
        return options.depth * patches * vision.hidden_size
