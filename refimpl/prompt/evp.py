"""EVP — Wu, Li, Wei, Wang, Yuille, Zhou and Xie, "Unleashing the Power of Visual Prompting At the Pixel
Level" (catalogue: evp; Table 1 prints TMLR 2024).

    x̃ = pad_p(resize_{H−2p}(x)) + v,   v learned on the border of width p, zero inside

Unlike VP, the prompt does not cover part of the image: the image is shrunk to leave the border free, and the
border holds only the prompt. Trainable: the border prompt v (same count as VP's). The two training helpers
the paper borrows from adversarial-example optimisation are here too: input diversity (option
`input_diversity`: with that probability per training batch, the prompted image is resized by a random factor
up to 1.1, placed at a random offset on a zero canvas and resized back) and gradient normalisation
(`normalize_prompt_gradient`, between `backward()` and the optimiser step; it is the method's training callback,
which the task loop calls). On the tiny 16-pixel images the default border p = 2 keeps about the share of prompted
pixels of VP's 30-pixel border on 224-pixel images; the prompt starts from N(0, 1) like VP's.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..core.api import attach_module
from ..core.registry import Method, MethodOptions, TrainingCallback, register
from .vp import BorderPrompt, image_shape, transform_pixels

DIVERSITY_SCALE = 1.1  # largest random enlargement of the input-diversity transform


def shrink_and_pad(images: torch.Tensor, width: int) -> torch.Tensor:
    """Resize the images to leave a free border of `width` pixels, and fill that border with zeros."""
    inner = images.shape[-1] - 2 * width
    shrunk = F.interpolate(images, size=(inner, inner), mode="bilinear", align_corners=False)
    return F.pad(shrunk, (width, width, width, width))


def diverse_input(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Input diversity: resize to a random size in [side, 1.1·side], put it at a random place on a zero canvas
    of 1.1·side, and resize back to side, so the prompt does not overfit one exact pixel alignment."""
    side = images.shape[-1]
    canvas = math.ceil(side * DIVERSITY_SCALE)
    size = int(torch.randint(side, canvas + 1, (1,), generator=generator))
    top, left = (int(torch.randint(0, canvas - size + 1, (1,), generator=generator)) for _ in range(2))
    resized = F.interpolate(images, size=(size, size), mode="nearest")
    placed = F.pad(resized, (left, canvas - size - left, top, canvas - size - top))
    return F.interpolate(placed, size=(side, side), mode="nearest")


def normalize_prompt_gradient(model: nn.Module) -> None:
    """Gradient normalisation: scale the prompt's gradient to unit L2 norm before the optimiser step."""
    gradient = model.enhanced_visual_prompt.values.grad
    if gradient is not None:
        gradient.div_(gradient.norm().clamp_min(torch.finfo(gradient.dtype).tiny))


class EVPOptions(MethodOptions):
    prompt_size: int = Field(2, gt=0, description="border width p in pixels")
    input_diversity: float = Field(
        0.0, ge=0, le=1, description="probability of the input-diversity transform per training batch"
    )


@register
class EVP(Method):
    name = "evp"
    category = "prompt"
    foundation_models = ("VFM",)
    papers = ("evp",)
    summary = "Shrink each image and fill the freed border with a learned pixel prompt (not added on top)."
    update_rule = "x̃ = pad_p(resize_{H−2p}(x)) + v,  v learned on the border"
    trainable = "the border prompt v (C × border pixels)"
    model_types = ("vit", "clip")
    Options = EVPOptions

    def inject(self, model: nn.Module, options: EVPOptions) -> None:
        channels, side = image_shape(model)
        like = next(model.parameters())
        prompt = attach_module(
            model, "enhanced_visual_prompt", BorderPrompt(1, channels, side, options.prompt_size, like)
        )

        def enhance(pixels: torch.Tensor) -> torch.Tensor:
            prompted = shrink_and_pad(pixels, options.prompt_size) + prompt().to(pixels.dtype)
            if prompt.training and float(torch.rand(())) < options.input_diversity:
                return diverse_input(prompted)
            return prompted

        transform_pixels(model, enhance)

    def training_callback(self, model: nn.Module, options: EVPOptions) -> TrainingCallback:
        return TrainingCallback(after_backward=functools.partial(normalize_prompt_gradient, model))

    def expected_trainable(self, model: nn.Module, options: EVPOptions) -> int:
        channels, side = image_shape(model)
        return BorderPrompt.parameter_count(1, channels, side, options.prompt_size)
