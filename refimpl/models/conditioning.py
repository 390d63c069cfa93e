"""Tiny conditioned diffusion UNets for the control and image-prompt methods (ControlNet, T2I-Adapter, ControlNeXt,
IP-Adapter): the tiny UNet of `diffusion.py`, fed batches with one extra input.

- "unet_control": the batch adds `controlnet_cond`, a 3-channel condition image (an edge or depth map in the
  papers) at pixel resolution, CONDITION_SCALE times the latent side (Stable Diffusion's VAE downsamples by 8).
- "unet_image_prompt": the batch adds `image_embeds`, one global image embedding per sample (CLIP's projected
  image embedding in IP-Adapter), of width IMAGE_EMBED_DIM.

The base model runs on such a batch and ignores the extra input (a forward pre-hook drops it): without an adapter
the UNet is the unconditioned text-to-image model. A method's own pre-hook, registered in front, pops the input
and turns it into UNet inputs (residuals for the encoder, tokens for the cross-attention).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .diffusion import LATENT_SIZE, denoising_batch, tiny_unet
from .specs import Batch, TinyModelSpec

CONDITION_KEY = "controlnet_cond"
IMAGE_EMBEDS_KEY = "image_embeds"
CONDITION_CHANNELS = 3
CONDITION_SCALE = 8
IMAGE_EMBED_DIM = 24


def _ignore_conditions(
    _module: nn.Module, args: tuple, kwargs: dict[str, Any]
) -> tuple[tuple, dict[str, Any]]:
    return args, {k: v for k, v in kwargs.items() if k not in (CONDITION_KEY, IMAGE_EMBEDS_KEY)}


def conditioned_unet(seed: int = 0) -> nn.Module:
    """The tiny UNet, callable with a condition keyword that it ignores until a method reads it."""
    unet = tiny_unet(seed)
    unet.register_forward_pre_hook(_ignore_conditions, with_kwargs=True)
    return unet


def control_batch(generator: torch.Generator, size: int) -> Batch:
    side = LATENT_SIZE * CONDITION_SCALE
    batch = denoising_batch(generator, size)
    batch[CONDITION_KEY] = torch.rand(size, CONDITION_CHANNELS, side, side, generator=generator)
    return batch


def image_prompt_batch(generator: torch.Generator, size: int) -> Batch:
    batch = denoising_batch(generator, size)
    batch[IMAGE_EMBEDS_KEY] = torch.randn(size, IMAGE_EMBED_DIM, generator=generator)
    return batch


def unet_call_inputs(args: tuple, kwargs: dict[str, Any]) -> tuple[torch.Tensor, Any, torch.Tensor]:
    """(sample, timestep, encoder_hidden_states) of a UNet call, given by position or by keyword."""
    names = ("sample", "timestep", "encoder_hidden_states")
    return tuple(args[i] if i < len(args) else kwargs[name] for i, name in enumerate(names))  # type: ignore[return-value]


SPECS = {
    "unet_control": TinyModelSpec(
        conditioned_unet, control_batch, output_field="sample", regression_target="noise"
    ),
    "unet_image_prompt": TinyModelSpec(
        conditioned_unet, image_prompt_batch, output_field="sample", regression_target="noise"
    ),
}
