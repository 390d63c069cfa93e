"""T2I-Adapter — Mou et al., "T2I-Adapter: Learning Adapters to Dig Out More Controllable Ability for Text-to-Image
Diffusion Models", AAAI 2024 (catalogue: t2i-adapter).

    F_c = Adapter(PixelUnshuffle(c)),   F̂_enc^i = F_enc^i + F_c^i   (i = 1..number of UNet scales)

A light convolutional network, with no copy of the UNet, turns the condition image c into one feature per encoder
scale of the frozen UNet: pixel unshuffle (factor 8, the VAE's) brings c to latent resolution, a 3×3 convolution
widens it, then each scale (halving the side with average pooling after the first, a 1×1 convolution where the
width changes) runs residual blocks (3×3 conv, ReLU, 1×1 conv, skip). Feature i has the width of the UNet's down
block i and is added to that block's output; the adapter's widths follow the UNet's, as in the paper.

Trainable: the adapter only. Choice of ours: each scale's feature passes a zero-initialised 1×1 convolution
(`zero_output_convs`, default on) so the adapted UNet starts exactly at the base model; the paper trains the
adapter from a random initialisation and says nothing of the starting output (set the option off for that).

Call signature: the UNet's, plus `controlnet_cond` (B, 3, 8h, 8w) of the "unet_control" batch. A forward pre-hook
pops it and passes the features through diffusers' own `down_intrablock_additional_residuals` (added inside each
down block after its last layer, before its downsampler). Feature i is made at 1/2^i of the latent side, which
matches UNets whose down blocks with a downsampler all have cross-attention (Stable Diffusion's, the tiny one).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from pydantic import Field
from torch import nn

from ..core.api import add_hook, attach_module
from ..core.errors import RefimplError
from ..core.registry import Method, MethodOptions, register
from ..models.conditioning import CONDITION_CHANNELS, CONDITION_KEY, CONDITION_SCALE
from .controlnet import zero_conv


class T2IAdapterOptions(MethodOptions):
    num_res_blocks: int = Field(2, gt=0, description="residual blocks per scale (two in the paper)")
    zero_output_convs: bool = Field(
        True,
        description="end each scale in a zero-initialised 1×1 convolution, so the output starts at the base",
    )


class ResidualBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(torch.relu(self.conv1(x)))


class AdapterScale(nn.Module):
    def __init__(self, width_in: int, width: int, downsample: bool, options: T2IAdapterOptions) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.AvgPool2d(2)] if downsample else []
        if width_in != width:
            layers.append(nn.Conv2d(width_in, width, 1))
        layers += [ResidualBlock(width) for _ in range(options.num_res_blocks)]
        self.body = nn.Sequential(*layers)
        self.out = zero_conv(width, width) if options.zero_output_convs else nn.Identity()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the feature passed on to the next scale, the feature added to the UNet)."""
        hidden = self.body(x)
        return hidden, self.out(hidden)


class T2IAdapterNetwork(nn.Module):
    def __init__(self, widths: list[int], options: T2IAdapterOptions) -> None:
        super().__init__()
        self.unshuffle = nn.PixelUnshuffle(CONDITION_SCALE)
        self.conv_in = nn.Conv2d(CONDITION_CHANNELS * CONDITION_SCALE**2, widths[0], 3, padding=1)
        self.scales = nn.ModuleList(
            AdapterScale(widths[max(i - 1, 0)], width, i > 0, options) for i, width in enumerate(widths)
        )

    def forward(self, condition: torch.Tensor) -> list[torch.Tensor]:
        hidden = self.conv_in(self.unshuffle(condition))
        features = []
        for scale in self.scales:
            hidden, feature = scale(hidden)
            features.append(feature)
        return features


def _add_features(
    adapter: T2IAdapterNetwork, _unet: nn.Module, args: tuple, kwargs: dict[str, Any]
) -> tuple[tuple, dict[str, Any]]:
    condition = kwargs.pop(CONDITION_KEY, None)
    if condition is None:
        raise RefimplError(
            f"t2i_adapter: the UNet was called without {CONDITION_KEY!r} (the condition image)"
        )
    features = adapter(condition.to(adapter.conv_in.weight.dtype))
    return args, {**kwargs, "down_intrablock_additional_residuals": features}  # a new list: diffusers pops it


def _scale_sizes(width_in: int, width: int, options: T2IAdapterOptions) -> int:
    widen = width_in * width + width if width_in != width else 0
    blocks = options.num_res_blocks * (9 * width * width + width + width * width + width)
    return widen + blocks + (width * width + width if options.zero_output_convs else 0)


@register
class T2IAdapter(Method):
    name = "t2i_adapter"
    category = "additive"
    foundation_models = ("VGM",)
    papers = ("t2i-adapter",)
    summary = (
        "A light conv network maps a condition image to one feature per UNet scale, added to the encoder."
    )
    update_rule = "F_c = Adapter(PixelUnshuffle(c));  F_enc^i ← F_enc^i + F_c^i"
    trainable = "the adapter (pixel unshuffle, a conv, residual blocks per scale, zero 1×1 output convs)"
    identity_at_init = True
    model_types = ("unet_control",)
    Options = T2IAdapterOptions

    def inject(self, model: nn.Module, options: T2IAdapterOptions) -> None:
        like = model.conv_in.weight
        network = T2IAdapterNetwork(list(model.config.block_out_channels), options)
        adapter = attach_module(model, "t2i_adapter", network.to(device=like.device, dtype=like.dtype))
        hook = model.register_forward_pre_hook(
            partial(_add_features, adapter), with_kwargs=True, prepend=True
        )
        add_hook(model, hook)

    def expected_trainable(self, model: nn.Module, options: T2IAdapterOptions) -> int:
        """conv_in (3·8² → w_0, 3×3) + per scale: optional 1×1 widening, residual blocks, optional zero conv."""
        widths = list(model.config.block_out_channels)
        conv_in = 9 * CONDITION_CHANNELS * CONDITION_SCALE**2 * widths[0] + widths[0]
        return conv_in + sum(_scale_sizes(widths[max(i - 1, 0)], w, options) for i, w in enumerate(widths))
