"""FC-CLIP — Yu et al., "Convolutions Die Hard: Open-Vocabulary Segmentation with Single Frozen Convolutional
CLIP", NeurIPS 2023 (catalogue: fc-clip).

One frozen CLIP serves as the whole backbone; only a light decoder on top of its dense features is trained:

    pixel decoder  F = MLP(CLIP patch states)                       (P × e)
    mask decoder   Z = LN(Q + CrossAttn(Q, F)),  m_q = (W_m z_q) · F_pᵀ  (N learned queries → N masks)
    in-vocabulary  p_in(q)  = softmax(s · norm(W_c z_q) · T̂ᵀ)       (T̂: frozen class-name text features)
    out-of-vocab.  p_out(q) = softmax(s · norm(Σ_p σ(m_qp) v_p / Σ_p σ(m_qp)) · T̂ᵀ)  (v_p: frozen dense CLIP)
    inference      p(q)_c ∝ p_in(q)_c^(1−α) · p_out(q)_c^α for seen classes, exponent β for unseen ones
    semantic map   S_c,p = Σ_q p(q)_c σ(m_qp);  logits = log S

Training uses the in-vocabulary classifier only (the out-of-vocabulary branch has no trainable part); the
geometric ensemble runs in eval mode. Defaults α = 0.4, β = 0.8, as in the authors' config; classes listed in
`unseen_classes` get β. Trainable: the pixel decoder, queries, mask decoder and the two embedding heads; CLIP
is frozen.

Tiny honest version, stated: the backbone is the tiny ViT CLIP (FC-CLIP's point is a convolutional CLIP, whose
dense features transfer to high resolutions); one feature scale instead of a multi-scale pixel decoder; one
cross-attention layer instead of a stack of mask-decoder layers; no void class; and instead of
Hungarian-matched mask and class losses, the loss is the cross-entropy of the per-patch semantic map against
patch labels (batches of "clip_dense").
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..core.api import add_hook, attach_module
from ..core.errors import RefimplError
from ..core.registry import Method, MethodOptions, register


class FCCLIPOptions(MethodOptions):
    num_queries: int = Field(8, gt=0, description="N: learned mask queries")
    decoder_dim: int = Field(32, gt=0, description="e: width of the pixel and mask decoders")
    num_heads: int = Field(4, gt=0, description="heads of the mask decoder's cross-attention")
    alpha: float = Field(0.4, ge=0, le=1, description="α: out-of-vocabulary weight for seen classes")
    beta: float = Field(0.8, ge=0, le=1, description="β: out-of-vocabulary weight for unseen classes")
    unseen_classes: tuple[int, ...] = Field(
        (), description="class indices not seen in training (weighted by β)"
    )


class MaskDecoderHead(nn.Module):
    def __init__(self, vision: int, joint: int, options: FCCLIPOptions, like: torch.Tensor) -> None:
        super().__init__()
        e = options.decoder_dim
        factory = {"dtype": like.dtype, "device": like.device}
        self.pixel_decoder = nn.Sequential(
            nn.Linear(vision, e, **factory), nn.GELU(), nn.Linear(e, e, **factory)
        )
        self.queries = nn.Parameter(torch.randn(options.num_queries, e, **factory) * 0.02)
        self.cross_attention = nn.MultiheadAttention(e, options.num_heads, batch_first=True, **factory)
        self.norm = nn.LayerNorm(e, **factory)
        self.mask_embed = nn.Linear(e, e, **factory)
        self.class_embed = nn.Linear(e, joint, **factory)

    def forward(self, patch_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mask logits m (B, N, P), class embeddings (B, N, D)) from the frozen patch states (B, P, d)."""
        pixels = self.pixel_decoder(patch_states)
        queries = self.queries.expand(pixels.shape[0], -1, -1).to(pixels.dtype)
        attended, _ = self.cross_attention(queries, pixels, pixels, need_weights=False)
        decoded = self.norm(queries + attended)
        return self.mask_embed(decoded) @ pixels.transpose(1, 2), self.class_embed(decoded)

    @staticmethod
    def parameter_count(vision: int, joint: int, options: FCCLIPOptions) -> int:
        e = options.decoder_dim
        pixel_decoder = vision * e + e + e * e + e
        cross_attention = 4 * (e * e + e)
        return (
            pixel_decoder + options.num_queries * e + cross_attention + 2 * e + e * e + e + e * joint + joint
        )


def ensemble_exponents(classes: int, options: FCCLIPOptions, like: torch.Tensor) -> torch.Tensor:
    exponents = torch.full((classes,), options.alpha, dtype=like.dtype, device=like.device)
    exponents[list(options.unseen_classes)] = options.beta
    return exponents


@register
class FCCLIP(Method):
    name = "fc_clip"
    category = "selective"
    foundation_models = ("VFM",)
    papers = ("fc-clip",)
    summary = (
        "Freeze all of CLIP; train a light mask decoder and in-vocabulary classifier on its dense features."
    )
    update_rule = "p ∝ p_in^(1−α) · p_out^α (seen; β for unseen);  S_c = Σ_q p(q)_c σ(m_q)"
    trainable = "pixel decoder, mask queries, mask decoder and the mask/class embedding heads"
    model_types = ("clip_dense",)
    Options = FCCLIPOptions

    def inject(self, model: nn.Module, options: FCCLIPOptions) -> None:
        if not getattr(model, "dense", False):
            raise RefimplError("fc_clip needs CLIP as a per-patch class-prompt classifier (clip_dense)")
        classes = model.class_name_ids.shape[0]
        if bad := [c for c in options.unseen_classes if not 0 <= c < classes]:
            raise RefimplError(f"option 'unseen_classes': {bad} outside 0..{classes - 1}")
        config = model.config
        like = model.clip.visual_projection.weight
        head = MaskDecoderHead(config.vision_config.hidden_size, config.projection_dim, options, like)
        attach_module(model, "fc_clip_head", head)

        def segment(module: nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> Any:
            masks, class_embeds = head(output.patch_states)
            text, scale = output.text_embeds, model.clip.logit_scale.exp()
            p_in = F.softmax(scale * F.normalize(class_embeds, dim=-1) @ text.T, dim=-1)
            if module.training:
                probabilities = p_in
            else:
                weights = torch.sigmoid(masks)
                pooled = weights @ output.image_embeds / weights.sum(-1, keepdim=True)
                p_out = F.softmax(scale * F.normalize(pooled, dim=-1) @ text.T, dim=-1)
                exponents = ensemble_exponents(classes, options, p_in)
                probabilities = p_in ** (1 - exponents) * p_out**exponents
            semantic = probabilities.transpose(1, 2) @ torch.sigmoid(masks)  # (B, C, P)
            output.logits = torch.log(semantic + 1e-6).unflatten(2, output.logits.shape[-2:])
            labels = kwargs.get("labels", args[1] if len(args) > 1 else None)
            if labels is not None:
                output.loss = F.cross_entropy(output.logits.float(), labels)
            return output

        add_hook(model, model.register_forward_hook(segment, with_kwargs=True))

    def expected_trainable(self, model: nn.Module, options: FCCLIPOptions) -> int:
        config = model.config
        return MaskDecoderHead.parameter_count(
            config.vision_config.hidden_size, config.projection_dim, options
        )
