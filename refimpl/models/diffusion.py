"""A tiny text-conditioned diffusion UNet (diffusers' UNet2DConditionModel with cross-attention), trained with the
noise-prediction objective: the target of a batch is the noise added to the latents."""

from __future__ import annotations

import torch
from torch import nn

from .specs import Batch, TinyModelSpec

LATENT_CHANNELS = 4
LATENT_SIZE = 8
CROSS_ATTENTION_DIM = 32
TEXT_TOKENS = 6
TIMESTEPS = 1000


def tiny_unet(seed: int = 0) -> nn.Module:
    from diffusers import UNet2DConditionModel  # imported on demand: diffusers is slow to import

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=LATENT_SIZE,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=CROSS_ATTENTION_DIM,
        attention_head_dim=8,
        norm_num_groups=8,
    ).eval()


def denoising_batch(generator: torch.Generator, size: int) -> Batch:
    shape = (size, LATENT_CHANNELS, LATENT_SIZE, LATENT_SIZE)
    return {
        "sample": torch.randn(shape, generator=generator),
        "timestep": torch.randint(0, TIMESTEPS, (size,), generator=generator),
        "encoder_hidden_states": torch.randn(size, TEXT_TOKENS, CROSS_ATTENTION_DIM, generator=generator),
        "noise": torch.randn(shape, generator=generator),
    }


SPECS = {"unet": TinyModelSpec(tiny_unet, denoising_batch, output_field="sample", regression_target="noise")}
