"""A tiny text-to-video denoiser: the image UNet of `diffusion.py` inflated over frames, as inflated video
UNets (Tune-A-Video, AnimateDiff) are built from an image model.

"unet_video": `VideoUNet(sample (B, C, F, H, W), timestep (B,), encoder_hidden_states (B, L, D)).sample` has
the sample's shape. The frames are folded into the batch for the 2-D UNet (the text conditioning and timestep
repeated per frame; a 2-D convolution per frame is exactly a 1×3×3 "pseudo-3D" convolution), and every
transformer block of the UNet is followed by a residual temporal attention over the frame axis of each spatial
position:

    x ← x + Attn_temp(LayerNorm(x)),   attention over the F frames of one position (no positional encoding)

The temporal layers belong to the "pretrained" video model. Their output projection starts at zero, as in
Tune-A-Video, so the base video model is exactly the image model applied frame by frame; methods adapt them.
Names follow Tune-A-Video: `<block>.attn_temp` (a diffusers Attention: to_q, to_k, to_v, to_out.0) and
`<block>.norm_temp`. `VideoUNet.frames` is the frame count of the forward pass under way, for layers that work
across frames (they see frames folded into the batch, frame index fastest).

"unet_i2v": the same model and batch for image-to-video, where frame 0 of `sample` stands for the given
image's clean latent (random here, like every tiny batch) and the loss covers frames 1..F-1 only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .diffusion import CROSS_ATTENTION_DIM, LATENT_CHANNELS, LATENT_SIZE, TEXT_TOKENS, TIMESTEPS, tiny_unet
from .specs import Batch, TinyModelSpec

FRAMES = 4


def by_frame(x: torch.Tensor, frames: int) -> torch.Tensor:
    """(B·F, ...) with frames folded into the batch -> (B, F, ...)."""
    return x.unflatten(0, (-1, frames))


def inflated_blocks(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """(name, block) of every transformer block that carries a temporal attention layer."""
    return ((name, m) for name, m in model.named_modules() if hasattr(m, "attn_temp"))


class VideoUNet(nn.Module):
    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        from diffusers.models.attention_processor import Attention

        self.unet = unet
        self.config = (
            unet.config
        )  # the image UNet's config describes the video model too (save files name it)
        self.frames = 1
        blocks = [m for m in unet.modules() if type(m).__name__ == "BasicTransformerBlock"]
        for block in blocks:
            dim, heads = block.attn1.to_q.in_features, block.attn1.heads
            block.norm_temp = nn.LayerNorm(dim)
            block.attn_temp = Attention(query_dim=dim, heads=heads, dim_head=dim // heads, out_bias=True)
            nn.init.zeros_(block.attn_temp.to_out[0].weight)
            nn.init.zeros_(block.attn_temp.to_out[0].bias)
            block.register_forward_hook(self._add_temporal_attention)

    def _add_temporal_attention(self, block: nn.Module, _args: tuple, hidden: torch.Tensor) -> torch.Tensor:
        # (B·F, N, C) -> (B·N, F, C): every spatial position attends over its own frames.
        batch_frames, positions, channels = hidden.shape
        per_position = by_frame(hidden, self.frames).transpose(1, 2).reshape(-1, self.frames, channels)
        per_position = per_position + block.attn_temp(block.norm_temp(per_position))
        per_position = per_position.unflatten(0, (-1, positions)).transpose(1, 2)
        return per_position.reshape(batch_frames, positions, channels)

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor
    ) -> object:
        from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

        frames = sample.shape[2]
        self.frames = frames
        images = sample.transpose(1, 2).flatten(0, 1)  # (B·F, C, H, W)
        timestep = torch.as_tensor(timestep, device=sample.device).expand(sample.shape[0])
        out = self.unet(
            images,
            timestep.repeat_interleave(frames),
            encoder_hidden_states=encoder_hidden_states.repeat_interleave(frames, dim=0),
        ).sample
        return UNet2DConditionOutput(sample=by_frame(out, frames).transpose(1, 2))


def tiny_video_unet(seed: int = 0) -> VideoUNet:
    unet = tiny_unet(seed=seed)
    torch.manual_seed(
        seed + 1
    )  # the temporal layers draw after the image weights, which stay the image UNet's
    return VideoUNet(unet).eval()


def video_denoising_batch(generator: torch.Generator, size: int, frames: int = FRAMES) -> Batch:
    shape = (size, LATENT_CHANNELS, frames, LATENT_SIZE, LATENT_SIZE)
    return {
        "sample": torch.randn(shape, generator=generator),
        "timestep": torch.randint(0, TIMESTEPS, (size,), generator=generator),
        "encoder_hidden_states": torch.randn(size, TEXT_TOKENS, CROSS_ATTENTION_DIM, generator=generator),
        "noise": torch.randn(shape, generator=generator),
    }


@dataclass(frozen=True)
class ImageToVideoSpec(TinyModelSpec):
    """Image-to-video: frame 0 of `sample` is the given image's clean latent, so the loss leaves it out."""

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        prediction = self.output(model, batch)[:, :, 1:]
        return F.mse_loss(prediction, batch[self.regression_target][:, :, 1:])


SPECS: dict[str, TinyModelSpec] = {
    "unet_video": TinyModelSpec(
        tiny_video_unet, video_denoising_batch, output_field="sample", regression_target="noise"
    ),
    "unet_i2v": ImageToVideoSpec(
        tiny_video_unet, video_denoising_batch, output_field="sample", regression_target="noise"
    ),
}
