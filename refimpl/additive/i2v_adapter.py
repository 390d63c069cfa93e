"""I2V-Adapter — Guo et al., "I2V-Adapter: A General Image-to-Video Adapter for Diffusion Models",
SIGGRAPH 2024 (catalogue: i2v-adapter).

Image-to-video on a frozen text-to-video UNet (refimpl.models.video): the given image is the first frame, and
beside every spatial self-attention a cross-frame branch lets each frame's queries read the first frame's keys
and values, made by the frozen spatial projections:

    z_i ← SelfAttn(z_i) + W'_o · Attn(W'_q z_i, W_K z_0, W_V z_0),   W'_o = 0 at init

Trainable: the branch's query projection W'_q and output projection W'_o (with its bias) per spatial
self-attention; everything else, the temporal layers included, is frozen. W'_q starts as a copy of the frozen
W_Q (our choice: the zero W'_o already makes the start exact). Calling convention (the "unet_i2v" spec): frame
0 of `sample` is the image's clean latent, not a noised frame, so the loss leaves that frame out (our reading
of the paper's setting). Out of scope: the paper's Frame Similarity Prior (a blurred, masked noisy copy of the
image as the starting latent of later frames at sampling time), an inference-time choice.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..core.api import add_hook, attach_module
from ..core.errors import RefimplError
from ..core.layers import new_parameter
from ..core.registry import Method, MethodOptions, register
from ..core.targeting import linear_dims
from ..models.video import by_frame, inflated_blocks


class FirstFrameAttention(nn.Module):
    """The cross-frame branch of one spatial self-attention: every frame's queries, frame 0's keys/values."""

    def __init__(self, attention: nn.Module) -> None:
        super().__init__()
        query, output = attention.to_q, attention.to_out[0]
        self.heads = attention.heads
        self.query_weight = new_parameter(*query.weight.shape, like=query.weight)
        self.query_bias = None if query.bias is None else new_parameter(*query.bias.shape, like=query.bias)
        with torch.no_grad():
            self.query_weight.copy_(query.weight)
            if query.bias is not None:
                self.query_bias.copy_(query.bias)
        self.out_weight = new_parameter(*output.weight.shape, like=output.weight, init="zeros")
        self.out_bias = new_parameter(output.out_features, like=output.weight, init="zeros")

    def forward(self, attention: nn.Module, hidden: torch.Tensor, frames: int) -> torch.Tensor:
        first = by_frame(hidden, frames)[:, 0]  # (B, N, C): the image's tokens
        keys = attention.to_k(first).repeat_interleave(frames, dim=0)
        values = attention.to_v(first).repeat_interleave(frames, dim=0)
        queries = F.linear(hidden, self.query_weight, self.query_bias)
        heads = [t.unflatten(-1, (self.heads, -1)).transpose(1, 2) for t in (queries, keys, values)]
        mixed = F.scaled_dot_product_attention(*heads).transpose(1, 2).flatten(2)
        return F.linear(mixed, self.out_weight, self.out_bias)


def spatial_self_attentions(model: nn.Module) -> list[nn.Module]:
    attentions = [block.attn1 for _, block in inflated_blocks(model)]
    if not attentions:
        raise RefimplError(f"i2v_adapter: {type(model).__name__} has no inflated (video) transformer blocks")
    return attentions


def _add_branch(
    video: nn.Module,
    branch: FirstFrameAttention,
    attention: nn.Module,
    args: tuple,
    kwargs: dict[str, Any],
    output: torch.Tensor,
) -> torch.Tensor:
    hidden = args[0] if args else kwargs["hidden_states"]
    return output + branch(attention, hidden, video.frames)


@register
class I2VAdapter(Method):
    name = "i2v_adapter"
    category = "additive"
    foundation_models = ("VGM",)
    papers = ("i2v-adapter",)
    summary = "Beside each spatial self-attention, every frame attends to the first frame (the given image)."
    update_rule = "z_i ← SelfAttn(z_i) + W'_o Attn(W'_q z_i, W_K z_0, W_V z_0),  W'_o = 0 at init"
    trainable = (
        "a query projection W'_q and a zero-initialised output projection W'_o per spatial self-attention"
    )
    identity_at_init = True
    model_types = ("unet_i2v",)
    Options = MethodOptions

    def inject(self, model: nn.Module, options: MethodOptions) -> None:
        attentions = spatial_self_attentions(model)
        branches = attach_module(model, "i2v_adapter", nn.ModuleList(map(FirstFrameAttention, attentions)))
        for attention, branch in zip(attentions, branches, strict=True):
            hook = partial(_add_branch, model, branch)
            add_hook(model, attention.register_forward_hook(hook, with_kwargs=True))

    def expected_trainable(self, model: nn.Module, options: MethodOptions) -> int:
        """Per spatial self-attention: W'_q (in·out, + bias where W_Q has one) and W'_o (inner·out + out)."""
        total = 0
        for attention in spatial_self_attentions(model):
            query_in, query_out = linear_dims(attention.to_q)
            out_in, out_out = linear_dims(attention.to_out[0])
            query_bias = query_out if attention.to_q.bias is not None else 0
            total += query_in * query_out + query_bias + out_in * out_out + out_out
        return total
