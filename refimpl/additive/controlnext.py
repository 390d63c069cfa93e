"""ControlNeXt — Peng et al., "ControlNeXt: Powerful and Efficient Control for Image and Video Generation", arXiv
2024 (catalogue: controlnext).

    x_c = M(c),   x̂_c = (x_c − μ_c) / σ_c · σ_m + μ_m,   x_m ← x_m + s · x̂_c     (at one UNet block)

Instead of ControlNet's copy of the encoder, a light convolutional module M (ResNet-style blocks) turns the
condition image into a single feature x_c, which is added to the UNet's feature x_m after one chosen down block.
Zero convolutions are replaced by cross normalisation: x_c is standardised with its own mean and standard deviation
and rescaled with those of x_m (over channels and positions, per sample), so the two are on the same scale from the
first step. Hence the output is NOT the base output at initialisation.

Trainable: M; optionally a small subset of the UNet's own parameters (`unet_trainable`, names containing any of
the given strings), which the paper also fine-tunes; they are trained in place, like BitFit's biases.

M here: a 3×3 stem, then one stride-2 convolution and one residual block per halving (three: pixel to latent
resolution), a 1×1 convolution to the block's width, and adaptive average pooling to the block's side. The block
after which the control is added (`block_index`, default the first down block) and the widths are our choices for
the tiny UNet.

Call signature: the UNet's, plus `controlnet_cond` (B, 3, 8h, 8w) of the "unet_control" batch. A forward pre-hook
on the UNet pops it; a forward hook on the chosen down block adds the control to the hidden state it passes on
(its skip features are left as they are).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..core.api import add_hook, attach_module
from ..core.errors import RefimplError
from ..core.registry import Method, MethodOptions, register
from ..models.conditioning import CONDITION_CHANNELS, CONDITION_KEY, CONDITION_SCALE
from .t2i_adapter import ResidualBlock

STD_EPSILON = 1e-12


class ControlNeXtOptions(MethodOptions):
    # Half the first UNet block's width: the module works at pixel resolution (8× the latent side), and at the
    # block's full width it alone would cost more than the tiny UNet, against the paper's "lightweight" module.
    width: int = Field(16, gt=0, description="width of the control module's convolutions")
    block_index: int = Field(0, ge=0, description="index of the down block whose output receives the control")
    scale: float = Field(1.0, description="s: the weight of the cross-normalised control feature")
    unet_trainable: list[str] = Field(
        [], description="UNet parameters to fine-tune as well: those whose name contains one of these strings"
    )


class ControlModule(nn.Module):
    def __init__(self, width: int, out_channels: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(CONDITION_CHANNELS, width, 3, padding=1), nn.SiLU()]
        for _ in range(int(math.log2(CONDITION_SCALE))):
            layers += [nn.Conv2d(width, width, 3, padding=1, stride=2), nn.SiLU(), ResidualBlock(width)]
        layers.append(nn.Conv2d(width, out_channels, 1))
        self.net = nn.Sequential(*layers)
        self.condition: torch.Tensor | None = None  # set by the UNet's pre-hook for one forward pass

    def forward(self, condition: torch.Tensor) -> torch.Tensor:
        return self.net(condition)


def cross_normalise(control: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
    """Standardise `control` per sample, then give it `feature`'s per-sample mean and standard deviation."""
    dims = tuple(range(1, feature.dim()))
    mean_c, std_c = control.mean(dims, keepdim=True), control.std(dims, keepdim=True)
    mean_m, std_m = feature.mean(dims, keepdim=True), feature.std(dims, keepdim=True)
    return (control - mean_c) * (std_m / (std_c + STD_EPSILON)) + mean_m


def _take_condition(module: ControlModule, _unet: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple:
    module.condition = kwargs.pop(CONDITION_KEY, None)
    if module.condition is None:
        raise RefimplError(
            f"controlnext: the UNet was called without {CONDITION_KEY!r} (the condition image)"
        )
    return args, kwargs


def _add_control(
    module: ControlModule, scale: float, _block: nn.Module, _args: tuple, output: tuple
) -> tuple[torch.Tensor, tuple]:
    hidden, skips = output
    control = module(module.condition.to(hidden.dtype))
    module.condition = None
    control = F.adaptive_avg_pool2d(control, hidden.shape[-2:])
    return hidden + scale * cross_normalise(control, hidden), skips


def _block_width(model: nn.Module, options: ControlNeXtOptions) -> int:
    widths = model.config.block_out_channels
    if options.block_index >= len(widths):
        raise RefimplError(
            f"option 'block_index': {options.block_index} but the UNet has {len(widths)} down blocks"
        )
    return widths[options.block_index]


def _unet_subset(model: nn.Module, options: ControlNeXtOptions) -> list[nn.Parameter]:
    return [p for name, p in model.named_parameters() if any(part in name for part in options.unet_trainable)]


@register
class ControlNeXt(Method):
    name = "controlnext"
    category = "additive"
    foundation_models = ("VGM",)
    papers = ("controlnext",)
    summary = "A light conv module's control feature, cross-normalised to a UNet feature, added at one block."
    update_rule = "x_m ← x_m + s · ((M(c) − μ_c) / σ_c · σ_m + μ_m)"
    trainable = "the control module M, and optionally a chosen subset of the UNet's parameters"
    model_types = ("unet_control",)
    Options = ControlNeXtOptions

    def inject(self, model: nn.Module, options: ControlNeXtOptions) -> None:
        like = model.conv_in.weight
        width = _block_width(model, options)
        subset = _unet_subset(model, options)
        control = ControlModule(options.width, width).to(device=like.device, dtype=like.dtype)
        module = attach_module(model, "controlnext", control)
        take = model.register_forward_pre_hook(
            partial(_take_condition, module), with_kwargs=True, prepend=True
        )
        add_hook(model, take)
        block = model.down_blocks[options.block_index]
        add_hook(model, block.register_forward_hook(partial(_add_control, module, options.scale)))
        for parameter in subset:
            parameter.requires_grad_(True)

    def expected_trainable(self, model: nn.Module, options: ControlNeXtOptions) -> int:
        """Stem (3×3) + per halving a 3×3 stride-2 conv and a residual block (3×3, 1×1) + the 1×1 output conv,
        plus the sizes of the chosen UNet parameters."""
        w, halvings = options.width, int(math.log2(CONDITION_SCALE))
        stem = 9 * CONDITION_CHANNELS * w + w
        per_halving = (9 * w * w + w) + (9 * w * w + w) + (w * w + w)
        out = w * _block_width(model, options) + _block_width(model, options)
        return stem + halvings * per_halving + out + sum(p.numel() for p in _unet_subset(model, options))
