"""Tune-A-Video — Wu et al., "Tune-A-Video: One-Shot Tuning of Image Diffusion Models for Text-to-Video
Generation", ICCV 2023 (catalogue: tune-a-video).

One-shot video tuning of an image diffusion model inflated over frames (refimpl.models.video). The spatial
self-attention becomes sparse-causal: frame i's queries attend to the keys and values of the first frame and
of the previous frame (frame 0 to itself, twice), with the frozen projections:

    SC-Attn(z_i) = softmax(Q_i [K_0; K_{i-1}]ᵀ / √d) [V_0; V_{i-1}],  Q = W_Q z, K = W_K z, V = W_V z

Trainable, selected in place as in the paper: the query projection W_Q of every spatial self-attention and
cross-attention, and the whole temporal attention layer (q, k, v and output projections) of every inflated
block; everything else is frozen. Not mergeable (the tuned tensors are the base's own, trained in place, and
the sparse-causal attention is a change of computation, not of weights); not identity at init, since frames
1..F-1 attend to other frames from the start. The paper's DDIM-inversion sampling is inference-time and out of
scope.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from ..core.api import add_hook
from ..core.errors import RefimplError
from ..core.registry import Method, MethodOptions, register
from ..core.targeting import linear_dims
from ..models.video import by_frame, inflated_blocks


def _linear_size(linear: nn.Module) -> int:
    fan_in, fan_out = linear_dims(linear)
    return fan_in * fan_out + (fan_out if linear.bias is not None else 0)


def tuned_layers(model: nn.Module) -> list[nn.Module]:
    """The linear layers Tune-A-Video trains: self- and cross-attention queries, all temporal projections."""
    blocks = [block for _, block in inflated_blocks(model)]
    if not blocks:
        raise RefimplError(
            f"tune_a_video: {type(model).__name__} has no inflated (temporal) transformer blocks"
        )
    layers = []
    for block in blocks:
        temporal = block.attn_temp
        layers += [block.attn1.to_q, block.attn2.to_q, temporal.to_q, temporal.to_k, temporal.to_v]
        layers.append(temporal.to_out[0])
    return layers


def first_and_previous_frame(
    video: nn.Module, _module: nn.Module, _args: tuple, out: torch.Tensor
) -> torch.Tensor:
    """Keys (or values) of frame i -> those of frames 0 and i-1 side by side: (B·F, N, C) -> (B·F, 2N, C)."""
    frames = video.frames
    per_frame = by_frame(out, frames)
    previous = (torch.arange(frames, device=out.device) - 1).clamp(min=0)
    first = per_frame[:, :1].expand_as(per_frame)
    return torch.cat([first, per_frame[:, previous]], dim=2).flatten(0, 1)


@register
class TuneAVideo(Method):
    name = "tune_a_video"
    category = "selective"
    foundation_models = ("VGM",)
    papers = ("tune-a-video",)
    summary = "Sparse-causal self-attention (first + previous frame); tune queries and temporal attention."
    update_rule = "SC-Attn(z_i) = softmax(Q_i [K_0; K_{i-1}]ᵀ/√d) [V_0; V_{i-1}];  train W_Q, attn_temp"
    trainable = "to_q of every spatial self- and cross-attention, and every temporal attention layer"
    model_types = ("unet_video",)
    Options = MethodOptions

    def inject(self, model: nn.Module, options: MethodOptions) -> None:
        for layer in tuned_layers(model):
            layer.requires_grad_(True)
        for _, block in inflated_blocks(model):
            for projection in (block.attn1.to_k, block.attn1.to_v):
                add_hook(model, projection.register_forward_hook(partial(first_and_previous_frame, model)))

    def expected_trainable(self, model: nn.Module, options: MethodOptions) -> int:
        """Σ (in·out + bias) over the self- and cross-attention queries and the four temporal projections."""
        return sum(_linear_size(layer) for layer in tuned_layers(model))
