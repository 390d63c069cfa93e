"""ControlNet — Zhang, Rao and Agrawala, "Adding Conditional Control to Text-to-Image Diffusion Models", ICCV 2023
(catalogue: controlnet).

    y = F(x; Θ) + Z(F(x + Z(E(c); Θ_z1); Θ_c); Θ_z2)

F is the frozen UNet's encoder (down blocks and mid block), F(·; Θ_c) a trainable copy initialised from it, E a
small conv network that brings the condition image c to latent resolution, and Z 1×1 convolutions with zero weight
and bias. The copy's output at every resolution goes through its own zero convolution and is added to the frozen
UNet's matching skip feature (and to its mid-block output), so at initialisation y is exactly the base output.

Trainable: the copy (conv_in, time embedding, down blocks, mid block, as in the authors' code), the conditioning
embedding E and the zero convolutions. E follows the authors' code (3×3 convolutions with SiLU, widths 16, 32, 96,
256, three stride-2 steps for the VAE's factor 8, last convolution zero-initialised); the paper's text describes
four 4×4 stride-2 layers instead.

Call signature: the UNet's, plus the keyword `controlnet_cond` (B, 3, 8h, 8w) of the "unet_control" batch. A
forward pre-hook on the UNet pops it, runs the copy and passes the residuals through diffusers' own arguments
`down_block_additional_residuals` and `mid_block_additional_residual`. Not mergeable: the copy is a second network.
"""

from __future__ import annotations

import copy
from functools import partial
from itertools import pairwise
from typing import Any

import torch
from pydantic import Field
from torch import nn

from ..core.api import add_hook, attach_module
from ..core.errors import RefimplError
from ..core.registry import Method, MethodOptions, register
from ..models.conditioning import CONDITION_CHANNELS, CONDITION_KEY, unet_call_inputs

ENCODER_PARTS = ("conv_in", "time_embedding", "down_blocks", "mid_block")


class ControlNetOptions(MethodOptions):
    embedding_channels: list[int] = Field(
        [16, 32, 96, 256],
        min_length=1,
        description="widths of the conditioning embedding's stages; each stage after the first halves the side",
    )


def zero_conv(channels_in: int, channels_out: int, kernel_size: int = 1, padding: int = 0) -> nn.Conv2d:
    conv = nn.Conv2d(channels_in, channels_out, kernel_size, padding=padding)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class ConditioningEmbedding(nn.Module):
    """E: condition image → latent-resolution feature of the UNet's first width, zero at initialisation."""

    def __init__(self, widths: list[int], out_channels: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(CONDITION_CHANNELS, widths[0], 3, padding=1), nn.SiLU()]
        for width, wider in pairwise(widths):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.SiLU()]
            layers += [nn.Conv2d(width, wider, 3, padding=1, stride=2), nn.SiLU()]
        layers.append(zero_conv(widths[-1], out_channels, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, condition: torch.Tensor) -> torch.Tensor:
        return self.net(condition)


def skip_channels(unet: nn.Module) -> list[int]:
    """Widths of the UNet's skip features in order: conv_in, then each down block's layers and downsampler."""
    config = unet.config
    widths = [config.block_out_channels[0]]
    for index, width in enumerate(config.block_out_channels):
        widths += [width] * config.layers_per_block
        if index < len(config.block_out_channels) - 1:
            widths.append(width)  # every block but the last ends in a downsampler
    return widths


class ControlBranch(nn.Module):
    def __init__(self, unet: nn.Module, options: ControlNetOptions) -> None:
        super().__init__()
        for part in ENCODER_PARTS:
            self.add_module(part, copy.deepcopy(getattr(unet, part)))
        self.requires_grad_(True)
        like = unet.conv_in.weight
        first_width = unet.config.block_out_channels[0]
        self.embedding = ConditioningEmbedding(options.embedding_channels, first_width)
        self.zero_convs = nn.ModuleList(zero_conv(c, c) for c in skip_channels(unet))
        self.mid_zero_conv = zero_conv(unet.config.block_out_channels[-1], unet.config.block_out_channels[-1])
        self.to(device=like.device, dtype=like.dtype)

    def forward(
        self,
        unet: nn.Module,
        sample: torch.Tensor,
        timestep: Any,
        states: torch.Tensor,
        condition: torch.Tensor,
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        embedding = self.time_embedding(unet.get_time_embed(sample=sample, timestep=timestep))
        hidden = self.conv_in(sample) + self.embedding(condition.to(sample.dtype))
        skips = [hidden]
        for block in self.down_blocks:
            if getattr(block, "has_cross_attention", False):
                hidden, features = block(hidden_states=hidden, temb=embedding, encoder_hidden_states=states)
            else:
                hidden, features = block(hidden_states=hidden, temb=embedding)
            skips += features
        hidden = self.mid_block(hidden, embedding, encoder_hidden_states=states)
        return [conv(skip) for conv, skip in zip(self.zero_convs, skips, strict=True)], self.mid_zero_conv(
            hidden
        )


def _add_control(
    branch: ControlBranch, unet: nn.Module, args: tuple, kwargs: dict[str, Any]
) -> tuple[tuple, dict[str, Any]]:
    condition = kwargs.pop(CONDITION_KEY, None)
    if condition is None:
        raise RefimplError(f"controlnet: the UNet was called without {CONDITION_KEY!r} (the condition image)")
    down, mid = branch(unet, *unet_call_inputs(args, kwargs), condition)
    return args, {**kwargs, "down_block_additional_residuals": down, "mid_block_additional_residual": mid}


@register
class ControlNet(Method):
    name = "controlnet"
    category = "additive"
    foundation_models = ("VGM",)
    papers = ("controlnet",)
    summary = (
        "A trainable copy of the UNet encoder reads a condition image; zero convolutions add it to the skips."
    )
    update_rule = "y = F(x; Θ) + Z(F(x + Z(E(c)); Θ_c)),  Θ_c ← Θ,  Z zero-initialised 1×1 convolutions"
    trainable = "a copy of the UNet encoder and mid block, the condition embedding and the zero convolutions"
    identity_at_init = True
    model_types = ("unet_control",)
    Options = ControlNetOptions
    trains_pretrained_weights = True
    slower_than_full_fine_tuning = (
        "a trainable copy of the encoder runs beside the locked UNet; the paper reports about 34% more time "
        "(and 23% more GPU memory) per training iteration than optimising Stable Diffusion without ControlNet"
    )

    def inject(self, model: nn.Module, options: ControlNetOptions) -> None:
        branch = attach_module(model, "controlnet", ControlBranch(model, options))
        add_hook(
            model,
            model.register_forward_pre_hook(partial(_add_control, branch), with_kwargs=True, prepend=True),
        )

    def expected_trainable(self, model: nn.Module, options: ControlNetOptions) -> int:
        """The encoder parts' sizes + E's convolutions (3×3, with bias) + c² + c per zero convolution."""
        copied = sum(p.numel() for part in ENCODER_PARTS for p in getattr(model, part).parameters())
        widths = options.embedding_channels
        first_width = model.config.block_out_channels[0]
        embedding = 9 * CONDITION_CHANNELS * widths[0] + widths[0]
        embedding += sum(9 * w * w + w + 9 * w * v + v for w, v in pairwise(widths))
        embedding += 9 * widths[-1] * first_width + first_width
        widths_out = [*skip_channels(model), model.config.block_out_channels[-1]]
        return copied + embedding + sum(c * c + c for c in widths_out)
