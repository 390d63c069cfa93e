"""Convpass — Jie and Deng, "Convolutional Bypasses Are Better Vision Transformer Adapters", arXiv 2022
(catalogue: convpass).

    x ← x + MHSA(LN(x)) + s · Convpass(LN(x));   x ← x + MLP(LN(x)) + s · Convpass(LN(x))
    Convpass(z) = W_up σ(Conv3×3(σ(W_down z)))   (σ = QuickGELU)

A convolutional bypass beside both sub-layers of every block: the tokens are projected down to a few channels,
the patch tokens are put back on their 2-D grid for a 3×3 convolution, and the [CLS] token goes through the same
convolution on its own, as a 1×1 image (so only the kernel's centre reaches it). The convolution starts as the
identity (centre tap = I, the rest 0), W_down is Xavier-initialised and W_up is zero, so the model starts at the
base model. Trainable: the bypasses and the task head. Defaults: 8 channels as in the paper; s is tuned per task
in the paper, and the default 1 is ours. The paper's dropout inside the bypass is left out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..core.api import replace_module
from ..core.architectures import architecture_of, hidden_size, named_blocks
from ..core.errors import RefimplError
from ..core.layers import AdapterLayer
from ..core.registry import Method, MethodOptions, register
from ..core.vision import classifier_parameters, grid_to_tokens, patch_grid, tokens_to_grid
from .adaptformer import ffn_modules


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


class ConvBypass(nn.Module):
    def __init__(self, hidden: int, channels: int, grid: tuple[int, int], like: torch.Tensor) -> None:
        super().__init__()
        factory = {"dtype": like.dtype, "device": like.device}
        self.grid = grid
        self.down = nn.Linear(hidden, channels, **factory)
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, **factory)
        self.up = nn.Linear(channels, hidden, **factory)
        nn.init.xavier_uniform_(self.down.weight)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[:, :, 1, 1] = torch.eye(channels)
        for tensor in (self.down.bias, self.conv.bias, self.up.weight, self.up.bias):
            nn.init.zeros_(tensor)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        patches = self.grid[0] * self.grid[1]
        if tokens.shape[1] != patches + 1:
            raise RefimplError(
                f"convpass: expected [CLS] + {patches} patch tokens, got {tokens.shape[1]} tokens"
            )
        z = quick_gelu(self.down(tokens))
        # [CLS] as a 1×1 image meets only the kernel's centre tap: the same map as a linear layer, and cheaper.
        cls = F.linear(z[:, :1], self.conv.weight[:, :, 1, 1], self.conv.bias)
        grid = grid_to_tokens(self.conv(tokens_to_grid(z[:, 1:], self.grid)))
        return self.up(quick_gelu(torch.cat([cls, grid], dim=1)))


class Bypassed(AdapterLayer):
    """A sub-layer with a bypass on the same input: f(x) + s · bypass(x); for attention, whose output is a tuple,
    the bypass is added to its first element (the hidden states)."""

    def __init__(self, base: nn.Module, bypass: nn.Module, scale: float) -> None:
        super().__init__()
        self.base = base
        self.bypass = bypass
        self.scale = scale

    def forward(self, *args: object, **kwargs: object) -> object:
        x = args[0] if args else kwargs["hidden_states"]
        out = self.base(*args, **kwargs)
        if isinstance(out, tuple):
            return (out[0] + self.scale * self.bypass(x), *out[1:])
        return out + self.scale * self.bypass(x)


class ConvpassOptions(MethodOptions):
    channels: int = Field(8, gt=0, description="hidden channels of the bypass (8 in the paper)")
    scale: float = Field(1.0, description="s: the scale of each bypass's output")
    train_head: bool = Field(True, description="also train the task head")


def attention_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(full name, module) of each block's whole attention module: the parent of its query projection."""
    attention = architecture_of(model).query.rpartition(".")[0]
    blocks_name, blocks = named_blocks(model)
    return [
        (f"{blocks_name}.{i}.{attention}", block.get_submodule(attention)) for i, block in enumerate(blocks)
    ]


@register
class Convpass(Method):
    name = "convpass"
    category = "additive"
    foundation_models = ("VFM",)
    papers = ("convpass",)
    summary = "A bottleneck with a 3×3 convolution over the patch grid, beside the attention and the FFN."
    update_rule = "x ← x + f(LN x) + s · W_up σ(Conv3×3(σ(W_down LN x))),  f ∈ {MHSA, MLP},  W_up = 0 at init"
    trainable = "the convolutional bypasses (W_down, 3×3 conv, W_up with biases) and the task head"
    identity_at_init = True
    model_types = ("vit",)
    Options = ConvpassOptions

    def inject(self, model: nn.Module, options: ConvpassOptions) -> None:
        like, grid = next(model.parameters()), patch_grid(model)
        for name, module in attention_modules(model) + ffn_modules(model):
            bypass = ConvBypass(hidden_size(model), options.channels, grid, like)
            replace_module(model, name, Bypassed(module, bypass, options.scale))
        for parameter in classifier_parameters(model) if options.train_head else []:
            parameter.requires_grad_(True)

    def expected_trainable(self, model: nn.Module, options: ConvpassOptions) -> int:
        d, c = hidden_size(model), options.channels
        bypass = (d * c + c) + (9 * c * c + c) + (c * d + d)
        head = sum(p.numel() for p in classifier_parameters(model)) if options.train_head else 0
        return 2 * len(named_blocks(model)[1]) * bypass + head
