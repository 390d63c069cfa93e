"""IP-Adapter — Ye et al., "IP-Adapter: Text Compatible Image Prompt Adapter for Text-to-Image Diffusion Models",
arXiv 2023 (catalogue: ip-adapter).

    Z_new = Attention(Q, K, V) + λ · Attention(Q, K', V'),   K' = c_i W'_k,  V' = c_i W'_v,  Q = Z W_q

Decoupled cross-attention: every cross-attention layer of the frozen UNet keeps its text attention (K, V from the
text features) and gets a second attention over image-prompt tokens c_i with new projections W'_k, W'_v; both
results are summed (image weighted by λ) before the layer's output projection. The tokens come from a small
projection network: a linear layer from the global image embedding to N tokens of the text width, then LayerNorm.

Trainable: the projection network and W'_k, W'_v of every cross-attention layer. Defaults from the paper: N = 4
tokens, λ = 1, and W'_k, W'_v initialised from the layer's W_k, W_v (to speed up convergence), so the output is NOT
the base output at initialisation; with `scale` (λ) 0 it is, exactly.

Call signature: the UNet's, plus `image_embeds` (B, IMAGE_EMBED_DIM) of the "unet_image_prompt" batch (the image
encoder, CLIP's in the paper, is outside the model as its embedding is an input). A forward pre-hook on the UNet pops
it and projects it to tokens; a forward hook on each cross-attention layer adds λ W_o Attention(Q, K', V'), which
equals adding the image attention before the output projection W_o (W_o is linear; its bias is already in the
text path).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..core.api import add_hook, attach_module
from ..core.errors import RefimplError
from ..core.registry import Method, MethodOptions, register
from ..models.conditioning import IMAGE_EMBED_DIM, IMAGE_EMBEDS_KEY


class IPAdapterOptions(MethodOptions):
    num_tokens: int = Field(4, gt=0, description="N: image-prompt tokens made from the image embedding")
    scale: float = Field(1.0, ge=0, description="λ: the weight of the image attention")


def cross_attention_layers(model: nn.Module) -> list[nn.Module]:
    found = [m for m in model.modules() if getattr(m, "is_cross_attention", False) is True]
    if not found:
        raise RefimplError(f"ip_adapter: {type(model).__name__} has no cross-attention layer")
    return found


class ImageKeyValue(nn.Module):
    """W'_k and W'_v of one cross-attention layer, initialised from its W_k and W_v."""

    def __init__(self, attention: nn.Module) -> None:
        super().__init__()
        self.to_k_ip = nn.Linear(attention.to_k.in_features, attention.to_k.out_features, bias=False)
        self.to_v_ip = nn.Linear(attention.to_v.in_features, attention.to_v.out_features, bias=False)
        with torch.no_grad():
            self.to_k_ip.weight.copy_(attention.to_k.weight)
            self.to_v_ip.weight.copy_(attention.to_v.weight)


class IPAdapterModules(nn.Module):
    def __init__(self, model: nn.Module, image_dim: int, options: IPAdapterOptions) -> None:
        super().__init__()
        width = model.config.cross_attention_dim
        self.num_tokens = options.num_tokens
        self.projection = nn.Linear(image_dim, options.num_tokens * width)
        self.norm = nn.LayerNorm(width)
        self.layers = nn.ModuleList(ImageKeyValue(a) for a in cross_attention_layers(model))
        self.tokens: torch.Tensor | None = None  # c_i of the current forward pass, set by the UNet's pre-hook

    def image_tokens(self, image_embeds: torch.Tensor) -> torch.Tensor:
        projected = self.projection(image_embeds.to(self.projection.weight.dtype))
        return self.norm(projected.reshape(image_embeds.shape[0], self.num_tokens, -1))


def image_attention(
    attention: nn.Module, kv: ImageKeyValue, hidden: torch.Tensor, tokens: torch.Tensor
) -> torch.Tensor:
    """Attention(Q, K', V') with the layer's heads and scale, as (batch, positions, inner width)."""

    def heads(x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (attention.heads, -1)).transpose(1, 2)

    query, key, value = heads(attention.to_q(hidden)), heads(kv.to_k_ip(tokens)), heads(kv.to_v_ip(tokens))
    return F.scaled_dot_product_attention(query, key, value, scale=attention.scale).transpose(1, 2).flatten(2)


def _project_image(modules: IPAdapterModules, _unet: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple:
    image_embeds = kwargs.pop(IMAGE_EMBEDS_KEY, None)
    if image_embeds is None:
        raise RefimplError(
            f"ip_adapter: the UNet was called without {IMAGE_EMBEDS_KEY!r} (the image embedding)"
        )
    modules.tokens = modules.image_tokens(image_embeds)
    return args, kwargs


def _forget_tokens(modules: IPAdapterModules, *_: object) -> None:
    modules.tokens = None  # the tokens belong to one call; do not keep its graph alive


def _add_image_attention(
    modules: IPAdapterModules,
    kv: ImageKeyValue,
    scale: float,
    attention: nn.Module,
    args: tuple,
    kwargs: dict,
    output: torch.Tensor,
) -> torch.Tensor:
    if modules.tokens is None:
        raise RefimplError("ip_adapter: a cross-attention layer ran outside a UNet call (no image tokens)")
    hidden = args[0] if args else kwargs["hidden_states"]
    tokens = modules.tokens.to(hidden.dtype)
    attended = F.linear(image_attention(attention, kv, hidden, tokens), attention.to_out[0].weight)
    return output + scale * attended / attention.rescale_output_factor


@register
class IPAdapter(Method):
    name = "ip_adapter"
    category = "additive"
    foundation_models = ("VGM",)
    papers = ("ip-adapter",)
    summary = (
        "Decoupled cross-attention: new key/value projections attend to image-prompt tokens beside the text."
    )
    update_rule = "Z = Attention(Q, K, V) + λ · Attention(Q, c_i W'_k, c_i W'_v),  c_i = LN(W_p e_image)"
    trainable = "the image projection (linear + LayerNorm) and W'_k, W'_v of every cross-attention layer"
    model_types = ("unet_image_prompt",)
    Options = IPAdapterOptions

    def inject(self, model: nn.Module, options: IPAdapterOptions) -> None:
        like = model.conv_in.weight
        modules = IPAdapterModules(model, IMAGE_EMBED_DIM, options).to(device=like.device, dtype=like.dtype)
        modules = attach_module(model, "ip_adapter", modules)
        add_hook(
            model,
            model.register_forward_pre_hook(partial(_project_image, modules), with_kwargs=True, prepend=True),
        )
        add_hook(model, model.register_forward_hook(partial(_forget_tokens, modules)))
        for attention, kv in zip(cross_attention_layers(model), modules.layers, strict=True):
            hook = partial(_add_image_attention, modules, kv, options.scale)
            add_hook(model, attention.register_forward_hook(hook, with_kwargs=True))

    def expected_trainable(self, model: nn.Module, options: IPAdapterOptions) -> int:
        """Projection E·N·D + N·D, LayerNorm 2·D, and per cross-attention layer D·inner for W'_k and for W'_v."""
        width, tokens = model.config.cross_attention_dim, options.num_tokens
        projection = IMAGE_EMBED_DIM * tokens * width + tokens * width + 2 * width
        layers = sum(a.to_k.weight.numel() + a.to_v.weight.numel() for a in cross_attention_layers(model))
        return projection + layers
