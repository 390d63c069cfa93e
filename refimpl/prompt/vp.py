"""VP — Bahng et al., "Exploring Visual Prompts for Adapting Large-Scale Models", arXiv 2022 (catalogue: vp;
the off-topic kindergarten-visual-prompts entry links here as related).

    x̃ = x + v,   v ∈ R^{C×H×W} zero inside the image, learned on a border of width p

Trainable: the border pixels of v only (C · (H·W − (H−2p)·(W−2p)) values); the model and its label space stay
frozen, the task's labels map to the first model outputs (CLIP: to the class prompts of the batch). The paper
pads 224-pixel images with p = 30; the default p = 2 on the tiny 16-pixel images keeps about the same share of
prompted pixels (44 % vs 46 %). The prompt starts from N(0, 1) (our choice), so the output does not start at
the base model's.

The pixel-space machinery (a border prompt, a transform applied to `pixel_values` where they enter the patch
embedding) is shared with EVP, ILM-VP and DAM-VP.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from pydantic import Field
from torch import nn

from ..core.api import add_hook, attach_module
from ..core.errors import RefimplError
from ..core.registry import Method, MethodOptions, register

PixelTransform = Callable[[torch.Tensor], torch.Tensor]  # (B, C, H, W) images -> prompted images


def vision_config(model: nn.Module) -> Any:
    return getattr(model.config, "vision_config", model.config)


def image_shape(model: nn.Module) -> tuple[int, int]:
    """(channels, side) of the square images the model's vision tower takes."""
    config = vision_config(model)
    return config.num_channels, config.image_size


def pixel_embedding(model: nn.Module) -> nn.Module:
    """The module turning pixel_values into patch tokens (ViT's `embeddings`, CLIP's vision `embeddings`)."""
    for module in model.modules():
        if hasattr(module, "patch_embeddings") or hasattr(module, "patch_embedding"):
            return module
    raise RefimplError(f"{type(model).__name__} has no patch embedding to prompt")


def transform_pixels(model: nn.Module, transform: PixelTransform) -> None:
    """Apply `transform` to the images where they enter the patch embedding, however the model is called
    (positionally or by keyword, a ViT or the image tower inside CLIP); undone by `refimpl.remove`."""

    def before(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict]:
        if args:
            return (transform(args[0]), *args[1:]), kwargs
        return args, {**kwargs, "pixel_values": transform(kwargs["pixel_values"])}

    add_hook(model, pixel_embedding(model).register_forward_pre_hook(before, with_kwargs=True))


def border_mask(side: int, width: int) -> torch.Tensor:
    """(side, side) booleans: True on the outer `width` pixels of every edge."""
    if not 0 < 2 * width < side:
        raise RefimplError(
            f"a border of {width} pixels does not fit a {side}-pixel image (need 0 < 2p < side)"
        )
    mask = torch.ones(side, side, dtype=torch.bool)
    mask[width : side - width, width : side - width] = False
    return mask


class BorderPrompt(nn.Module):
    """`count` learned images that are non-zero only on a border of `width` pixels: (count, C, side, side).

    Only the border values are stored, so the parameter count is exactly what the papers count."""

    def __init__(
        self, count: int, channels: int, side: int, width: int, like: torch.Tensor, std: float = 1.0
    ) -> None:
        super().__init__()
        self.channels, self.side = channels, side
        index = border_mask(side, width).flatten().nonzero().squeeze(1)
        self.register_buffer("index", index.to(like.device), persistent=False)  # re-derived from the options
        values = torch.randn(count, channels, len(index), dtype=like.dtype) * std
        self.values = nn.Parameter(values.to(like.device))

    def forward(self) -> torch.Tensor:
        count = self.values.shape[0]
        flat = self.values.new_zeros(count, self.channels, self.side * self.side)
        return flat.index_copy(2, self.index, self.values).view(count, self.channels, self.side, self.side)

    @staticmethod
    def parameter_count(count: int, channels: int, side: int, width: int) -> int:
        return count * channels * int(border_mask(side, width).sum())


class VPOptions(MethodOptions):
    prompt_size: int = Field(
        2, gt=0, description="border width p in pixels (30 on 224-pixel images in the paper)"
    )


@register
class VP(Method):
    name = "vp"
    category = "prompt"
    foundation_models = ("VFM", "VLM")
    papers = ("vp",)
    summary = "Add one learned border of pixels to every input image of a frozen vision model or CLIP."
    update_rule = "x̃ = x + v,  v learned on a border of width p, zero inside"
    trainable = "the border prompt v (C × border pixels)"
    model_types = ("vit", "clip")
    Options = VPOptions

    def inject(self, model: nn.Module, options: VPOptions) -> None:
        channels, side = image_shape(model)
        like = next(model.parameters())
        prompt = attach_module(
            model, "visual_prompt", BorderPrompt(1, channels, side, options.prompt_size, like)
        )
        transform_pixels(model, lambda pixels: pixels + prompt().to(pixels.dtype))

    def expected_trainable(self, model: nn.Module, options: VPOptions) -> int:
        channels, side = image_shape(model)
        return channels * (side * side - (side - 2 * options.prompt_size) ** 2)
