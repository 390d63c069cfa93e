"""LLaMA-Adapter — Zhang et al., "LLaMA-Adapter: Efficient Fine-tuning of Language Models with Zero-init
Attention", ICLR 2024 (catalogue: llama-adapter).

In each of the top L decoder layers, K learned adaption-prompt tokens P_l ∈ R^{K×d} are projected by the
layer's frozen key and value projections and attended to by the layer's (rotary-encoded) queries, with their
own softmax, scaled by a gate g_l that starts at zero:

    out_l = Attn_l(x) + W_o (g_l · softmax(q K_pᵀ / √d_h) V_p),  K_p = P_l W_kᵀ,  V_p = P_l W_vᵀ,  g_l(0) = 0

so training starts from the unchanged model (zero-init attention). Trainable: L·(K·d + 1) parameters. The
paper uses K = 10 prompts in the top L = 30 of LLaMA-7B's 32 layers; the tiny models have 2 layers, so L
defaults to 2. The prompts start from N(0, 1), as in huggingface peft's AdaptionPrompt (which follows the
official code's embedding table), so that both give the same outputs with the same weights. Applies to the
Llama LM alone and to the LM inside the LLaVA model.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from transformers.models.llama.modeling_llama import rotate_half

from ..core.api import replace_module
from ..core.errors import RefimplError
from ..core.layers import AdapterLayer
from ..core.registry import Method, MethodOptions, register
from ..models.multimodal import language_model_layers

# Returns a per-example addition to a layer's prompt (B, 1 or K, d), or None; LLaMA-Adapter V2's early fusion.
PromptOffset = Callable[[], torch.Tensor | None]


class AdaptionPromptAttention(AdapterLayer):
    """A frozen Llama attention plus gated attention over K learned prompt tokens."""

    def __init__(self, base: nn.Module, prompt_length: int, offset: PromptOffset | None = None) -> None:
        super().__init__()
        self.base = base
        weight = base.q_proj.weight
        hidden = base.config.hidden_size
        self.adaption_prompt = nn.Parameter(
            torch.randn(1, prompt_length, hidden, device=weight.device).to(weight.dtype)
        )
        self.adaption_gate = nn.Parameter(torch.zeros(1, device=weight.device, dtype=weight.dtype))
        self.offset = offset

    def forward(
        self, hidden_states: torch.Tensor, position_embeddings: tuple[torch.Tensor, torch.Tensor], **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        output, weights = self.base(
            hidden_states=hidden_states, position_embeddings=position_embeddings, **kwargs
        )
        return output + self.prompt_attention(hidden_states, position_embeddings), weights

    def prompt_attention(
        self, hidden_states: torch.Tensor, position_embeddings: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        attention, head_dim = self.base, self.base.head_dim
        batch, length, _ = hidden_states.shape
        query = attention.q_proj(hidden_states).view(batch, length, -1, head_dim).transpose(1, 2)
        cos, sin = (t.unsqueeze(1) for t in position_embeddings)
        query = query * cos + rotate_half(query) * sin  # the prompt keys carry no position
        prompt = self.adaption_prompt
        if self.offset is not None and (offset := self.offset()) is not None:
            prompt = prompt + offset.to(prompt.dtype)
        heads, prompt_length = query.shape[1], prompt.shape[1]

        def per_head(projection: nn.Module) -> torch.Tensor:
            states = projection(prompt).view(prompt.shape[0], prompt_length, -1, head_dim).transpose(1, 2)
            return states.repeat_interleave(heads // states.shape[1], dim=1)  # grouped-query attention

        scores = query @ per_head(attention.k_proj).transpose(2, 3).to(query.dtype) / math.sqrt(head_dim)
        probabilities = F.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
        mixed = (self.adaption_gate * probabilities) @ per_head(attention.v_proj).to(query.dtype)
        return attention.o_proj(mixed.transpose(1, 2).reshape(batch, length, -1))


class LlamaAdapterOptions(MethodOptions):
    adapter_len: int = Field(10, gt=0, description="adaption prompt tokens K per layer (paper: 10)")
    adapter_layers: int = Field(
        2, gt=0, description="number of top layers L that get prompts (paper: 30 of LLaMA-7B's 32)"
    )


def top_layers(model: nn.Module, count: int, option: str = "adapter_layers") -> list[tuple[str, nn.Module]]:
    """(name, decoder layer) of the top `count` layers of the language model."""
    name, layers = language_model_layers(model)
    if count > len(layers):
        raise RefimplError(f"option {option!r}: {count} layers asked, the language model has {len(layers)}")
    return [(f"{name}.{index}", layers[index]) for index in range(len(layers) - count, len(layers))]


def insert_adaption_prompts(
    model: nn.Module, layers: list[tuple[str, nn.Module]], length: int, offset: PromptOffset | None = None
) -> list[AdaptionPromptAttention]:
    wrapped = []
    for name, layer in layers:
        wrapped.append(AdaptionPromptAttention(layer.self_attn, length, offset))
        replace_module(model, f"{name}.self_attn", wrapped[-1])
    return wrapped


def adaption_prompt_count(model: nn.Module, layers: int, length: int) -> int:
    """K·d prompt entries and one gate per adapted layer."""
    return layers * (length * model.config.get_text_config().hidden_size + 1)


@register
class LlamaAdapter(Method):
    name = "llama_adapter"
    category = "additive"
    foundation_models = ("LLM", "VLM")
    papers = ("llama-adapter",)
    summary = (
        "Learned prompts in the top layers, attended through a zero-initialised gate: training starts at the"
        " base model."
    )
    update_rule = "out_l = Attn_l(x) + W_o(g_l · softmax(q (P_l W_k)ᵀ/√d_h) P_l W_v),  g_l = 0 at init"
    trainable = "the adaption prompts (K × d) and gate of each of the top L layers"
    identity_at_init = True
    model_types = ("llama", "llava")
    Options = LlamaAdapterOptions

    def inject(self, model: nn.Module, options: LlamaAdapterOptions) -> None:
        insert_adaption_prompts(model, top_layers(model, options.adapter_layers), options.adapter_len)

    def expected_trainable(self, model: nn.Module, options: LlamaAdapterOptions) -> int:
        return adaption_prompt_count(model, options.adapter_layers, options.adapter_len)
