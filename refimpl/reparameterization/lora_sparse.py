"""LoRA-Sparse — Song et al., "Low-Rank Approximation for Sparse Attention in Multi-Modal LLMs", CVPR 2024
(catalogue: lora-sparse; no arXiv version).

What the paper states (its abstract): low-rank linear projection layers approximate the self-attention so that
it can be made sparse; they are trained with an "order-mimic" objective; on LLaMA and LLaVA more than half of
the self-attention computation is removed with no loss in quality. The equations are not in our sources, so
the mechanism below is OUR INTERPRETATION of those statements:

    approximate scores   ã_ij = (x_i P_q,h)(x_j P_k,h)ᵀ / √d_h,   P_q,h, P_k,h ∈ R^{d×r}  (per head h, rank r)
    sparse attention     keep, for each query i, the ⌈ρ·n_i⌉ of its n_i visible keys with the highest ã_ij;
                         softmax(q_i k_jᵀ/√d_h) over the kept keys only, with the frozen W_q, W_k, W_v, W_o
    order mimic          L_mimic = KL(softmax(full scores) ‖ softmax(ã)) over visible keys, teacher detached:
                         a listwise loss that makes the cheap scores rank keys like the full attention does,
                         added to the task loss with weight λ while training.

Trainable: P_q and P_k of every head of every LM layer, 2·H·d·r per layer; the LLM is frozen. They start from
N(0, 1/d) (our choice), or with `init="svd"` from the best rank-r approximation (truncated SVD) of each head's
bilinear form W_q,hᵀ W_k,h, ignoring the rotary position encoding — on a trained LLM a better start; on the
random tiny models it is already nearly optimal, leaving the order-mimic objective nothing to show. ρ = 0.5
keeps half of the query-key pairs. This reference computes the full scores too (for the teacher, and for the
kept pairs); a fast kernel would compute only the kept pairs at inference. Incremental decoding with a
key-value cache is not supported.

P_q and P_k only choose which keys each query keeps (a discrete top-k), so the task loss sends them no gradient:
the order-mimic loss alone trains them. With the LLM frozen the method makes attention cheaper but does not
adapt the model to a task; on one it scores what the frozen model scores with its attention made sparse.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from ..core.api import add_hook, replace_module
from ..core.errors import RefimplError
from ..core.layers import AdapterLayer
from ..core.registry import Method, MethodOptions, register
from ..models.multimodal import language_model_layers


class LoRASparseOptions(MethodOptions):
    r: int = Field(4, gt=0, description="rank of the per-head score approximation")
    keep_ratio: float = Field(
        0.5, gt=0, le=1, description="ρ: share of each query's visible keys it attends to"
    )
    mimic_weight: float = Field(
        1.0, ge=0, description="λ: weight of the order-mimic loss in the training loss"
    )
    init: Literal["random", "svd"] = Field(
        "random", description="N(0, 1/d) factors, or the truncated SVD of each head's W_qᵀ W_k"
    )


def low_rank_factors(attention: nn.Module, rank: int, init: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(P_q, P_k), each (H, d, r): random, or the truncated SVD of every head's W_q,hᵀ W_k,h (d × d)."""
    head_dim, hidden = attention.head_dim, attention.config.hidden_size
    if init == "random":
        shape = (attention.config.num_attention_heads, hidden, rank)
        return torch.randn(shape) / math.sqrt(hidden), torch.randn(shape) / math.sqrt(hidden)
    query = attention.q_proj.weight.float().unflatten(0, (-1, head_dim))  # (H, d_h, d)
    key = attention.k_proj.weight.float().unflatten(0, (-1, head_dim))  # (H_kv, d_h, d)
    key = key.repeat_interleave(query.shape[0] // key.shape[0], dim=0)
    u, s, vh = torch.linalg.svd(query.transpose(1, 2) @ key)  # (H, d, d)
    root = s[:, :rank].sqrt().unsqueeze(1)
    return u[:, :, :rank] * root, vh[:, :rank].transpose(1, 2) * root


class LowRankSparseAttention(AdapterLayer):
    def __init__(self, base: nn.Module, options: LoRASparseOptions, mimic_losses: list[torch.Tensor]) -> None:
        super().__init__()
        self.base = base
        if options.r > base.config.hidden_size:
            raise RefimplError(f"option 'r': {options.r} exceeds the hidden size {base.config.hidden_size}")
        query_factor, key_factor = low_rank_factors(base, options.r, options.init)
        like = base.q_proj.weight  # the factors take its dtype and device
        self.query_factor = nn.Parameter(query_factor.to(like))
        self.key_factor = nn.Parameter(key_factor.to(like))
        self.keep_ratio = options.keep_ratio
        self.mimic_losses = mimic_losses

    def approximate_scores(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """ã (B, H, L, L) from the low-rank projections."""
        queries = torch.einsum("bld,hdr->bhlr", hidden_states, self.query_factor.to(hidden_states.dtype))
        keys = torch.einsum("bld,hdr->bhlr", hidden_states, self.key_factor.to(hidden_states.dtype))
        return queries @ keys.transpose(2, 3) / math.sqrt(self.base.head_dim)

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor | None = None,
        cache: Any = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, None]:
        attention = self.base
        batch, length, _ = hidden_states.shape
        shape = (batch, length, -1, attention.head_dim)
        query, key, value = (
            projection(hidden_states).view(shape).transpose(1, 2)
            for projection in (attention.q_proj, attention.k_proj, attention.v_proj)
        )
        query, key = apply_rotary_pos_emb(query, key, *position_embeddings)
        if cache is not None:
            key, value = cache.update(key, value, attention.layer_idx)
            if key.shape[2] != length:
                raise RefimplError(
                    "lora_sparse: incremental decoding with a key-value cache is not supported"
                )
        groups = query.shape[1] // key.shape[1]
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
        scores = query @ key.transpose(2, 3) * attention.scaling
        visible = torch.ones(length, length, dtype=torch.bool, device=scores.device).tril()
        if attention_mask is not None:
            visible = visible & (
                attention_mask if attention_mask.dtype == torch.bool else attention_mask == 0
            )
        approximate = self.approximate_scores(hidden_states)
        approximate = approximate.masked_fill(
            ~visible, torch.finfo(approximate.dtype).min
        )  # finite: no NaN rows
        keep_count = torch.ceil(self.keep_ratio * visible.sum(-1, keepdim=True))
        rank = approximate.argsort(dim=-1, descending=True).argsort(dim=-1)
        kept = visible & (rank < keep_count)
        has_keys = visible.any(
            -1, keepdim=True
        )  # a fully padded query row attends to nothing (output 0, no NaN)
        probabilities = F.softmax(scores.masked_fill(~kept, float("-inf")), dim=-1, dtype=torch.float32)
        probabilities = probabilities.masked_fill(~has_keys, 0.0)
        output = (probabilities.to(value.dtype) @ value).transpose(1, 2).reshape(batch, length, -1)
        if self.training:
            teacher = F.softmax(
                scores.detach().masked_fill(~visible, float("-inf")), dim=-1, dtype=torch.float32
            )
            teacher = teacher.masked_fill(~visible, 0.0)
            student = F.log_softmax(approximate.float(), dim=-1).masked_fill(~visible, 0.0)
            divergence = (teacher * (torch.log(teacher.clamp_min(1e-12)) - student)).sum(-1)
            self.mimic_losses.append(divergence[has_keys.squeeze(-1).expand_as(divergence)].mean())
        return attention.o_proj(output), None


@register
class LoRASparse(Method):
    name = "lora_sparse"
    category = "reparameterization"
    foundation_models = ("MFM",)
    papers = ("lora-sparse",)
    summary = (
        "Low-rank projections rank the keys so each query attends to a top share only, trained to mimic full"
        " attention's order."
    )
    update_rule = (
        "attend to top-⌈ρn⌉ keys by ã = (xP_q)(xP_k)ᵀ;  L = L_task + λ·KL(softmax(qkᵀ) ‖ softmax(ã))"
    )
    trainable = "the rank-r query and key projections P_q, P_k of every head in every LM layer"
    # LLaVA first: a method is measured on its first model type's task, here one of its own FM type (MFM)
    model_types = ("llava", "llama")
    Options = LoRASparseOptions

    def inject(self, model: nn.Module, options: LoRASparseOptions) -> None:
        name, layers = language_model_layers(model)
        mimic_losses: list[torch.Tensor] = []
        for index, layer in enumerate(layers):
            sparse = LowRankSparseAttention(layer.self_attn, options, mimic_losses)
            replace_module(model, f"{name}.{index}.self_attn", sparse)

        def start(module: nn.Module, args: tuple) -> None:
            mimic_losses.clear()

        def add_mimic_loss(module: nn.Module, args: tuple, output: Any) -> Any:
            if getattr(output, "loss", None) is not None and mimic_losses:
                mimic = torch.stack(mimic_losses).mean()
                output.loss = output.loss + options.mimic_weight * mimic.to(output.loss.dtype)
            mimic_losses.clear()
            return output

        add_hook(model, model.register_forward_pre_hook(start))
        add_hook(model, model.register_forward_hook(add_mimic_loss))

    def expected_trainable(self, model: nn.Module, options: LoRASparseOptions) -> int:
        """2 · H · d · r per layer."""
        text = model.config.get_text_config()
        return text.num_hidden_layers * 2 * text.num_attention_heads * text.hidden_size * options.r
