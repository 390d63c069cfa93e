"""SAN — Xu, Zhang, Wei, Hu and Bai, "Side Adapter Network for Open-Vocabulary Semantic Segmentation",
CVPR 2023 (catalogue: san).

    side tokens = [queries; patch embed(image) + pos] + proj(CLIP features of its early layers)
    mask_q = φ(q_q) · ψ(p)ᵀ,   bias_{q,head} = φ_b(q_q)_head · ψ_b(p)_headᵀ        (from the side network)
    CLIP's last k layers get one [SOS] token per query (a copy of [CLS]) whose attention logits over the patches
    get + bias_q; the patches never attend to [SOS], so CLIP's own features are unchanged
    class_q = s · norm(proj(SOS_q)) · norm(text)ᵀ;   P(c | pixel) ∝ Σ_q softmax(class_q)_c · sigmoid(mask_q)

A small side ViT beside a frozen CLIP proposes masks and the attention biases that make CLIP's last layers
pool one region embedding per proposal, which CLIP's own projection classifies against the class-name texts.
CLIP runs once: its early layers feed the side network, whose biases then steer CLIP's last layers.
Trainable: the whole side network (patch embedding, positions, queries, its layers, the fusion projection and
the mask and bias heads); CLIP stays frozen.

A tiny but honest version on the "clip_seg" model (refimpl/models/segmentation.py): the side network has
`side_layers` pre-norm transformer layers of width `side_width` on the same patch grid as CLIP; it fuses one
CLIP feature map (the output of the last unbiased layer, added after a linear projection) into its input
instead of the paper's several layers; the heads are single linear maps instead of MLPs; the same biases serve
every biased CLIP layer; [SOS] tokens attend to themselves and the patches only; and the semantic logits are the
log of the normalised mixture above, trained with cross-entropy instead of the paper's matched mask losses.
Defaults are ours, sized for the tiny CLIP (the paper uses 100 queries, an 8-layer side ViT and biases in the
last 3 of CLIP's 12 layers).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..core.api import replace_module
from ..core.errors import RefimplError
from ..core.registry import Method, MethodOptions, register
from ..core.vision import grid_to_tokens, patch_grid


class SANOptions(MethodOptions):
    queries: int = Field(4, gt=0, description="mask proposals (and [SOS] tokens) per image")
    side_width: int = Field(16, gt=0, description="hidden size of the side network")
    side_layers: int = Field(2, gt=0, description="transformer layers of the side network")
    side_heads: int = Field(2, gt=0, description="attention heads of the side network")
    bias_layers: int = Field(
        1, gt=0, description="k: CLIP's last k layers receive [SOS] tokens and the biases"
    )


class SideAdapterNetwork(nn.Module):
    def __init__(self, clip: nn.Module, options: SANOptions) -> None:
        super().__init__()
        vision = clip.config.vision_config
        like = clip.visual_projection.weight
        factory = {"dtype": like.dtype, "device": like.device}
        w, self.heads, self.grid = options.side_width, vision.num_attention_heads, patch_grid(clip)
        self.bias_layers = options.bias_layers
        self.patch_embed = nn.Conv2d(3, w, vision.patch_size, stride=vision.patch_size, **factory)
        self.positions = nn.Parameter(0.02 * torch.randn(self.grid[0] * self.grid[1], w, **factory))
        self.query_tokens = nn.Parameter(0.02 * torch.randn(options.queries, w, **factory))
        self.fusion = nn.Linear(vision.hidden_size, w, **factory)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                w, options.side_heads, 4 * w, 0.0, "gelu", batch_first=True, norm_first=True, **factory
            )
            for _ in range(options.side_layers)
        )
        self.mask_query, self.mask_patch = nn.Linear(w, w, **factory), nn.Linear(w, w, **factory)
        self.bias_query = nn.Linear(w, self.heads * w, **factory)
        self.bias_patch = nn.Linear(w, self.heads * w, **factory)

    def side(self, pixels: torch.Tensor, clip_patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask logits (B, Q, h·w) and attention biases (B, heads, Q, h·w)."""
        patches = grid_to_tokens(self.patch_embed(pixels)) + self.positions + self.fusion(clip_patches)
        queries = self.query_tokens.expand(pixels.shape[0], -1, -1)
        tokens = torch.cat([queries, patches], dim=1)
        for layer in self.layers:
            tokens = layer(tokens)
        q, p = tokens[:, : queries.shape[1]], tokens[:, queries.shape[1] :]
        masks = self.mask_query(q) @ self.mask_patch(p).transpose(1, 2)
        biases = self._per_head(self.bias_query(q)) @ self._per_head(self.bias_patch(p)).transpose(-1, -2)
        return masks, biases

    def _per_head(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, heads·w) -> (B, heads, N, w)."""
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def attention_mask(self, biases: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Additive (B, heads, T, T) mask over [CLS, patches, SOS]: CLIP's tokens ignore the [SOS] tokens; [SOS]
        q sees itself and the patches (plus its bias), not [CLS] or the other [SOS]."""
        batch, heads, queries, patches = biases.shape
        blocked = torch.finfo(dtype).min
        total = 1 + patches + queries
        mask = torch.full((batch, heads, total, total), blocked, dtype=dtype, device=biases.device)
        mask[:, :, : 1 + patches, : 1 + patches] = 0
        mask[:, :, 1 + patches :, 1 : 1 + patches] = biases.to(dtype)
        sos = torch.arange(1 + patches, total, device=biases.device)
        mask[:, :, sos, sos] = 0
        return mask

    def forward(self, clip: nn.Module, pixel_values: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        vision = clip.vision_model
        layers = vision.encoder.layers
        first_biased = len(layers) - self.bias_layers
        hidden = vision.pre_layrnorm(vision.embeddings(pixel_values))
        for layer in layers[:first_biased]:
            hidden = layer(hidden, None)
        masks, biases = self.side(pixel_values.to(hidden.dtype), hidden[:, 1:])
        sos = hidden[:, :1].expand(-1, masks.shape[1], -1)
        hidden = torch.cat([hidden, sos], dim=1)
        attention_mask = self.attention_mask(biases, hidden.dtype)
        for layer in layers[first_biased:]:
            hidden = layer(hidden, attention_mask)
        regions = vision.post_layernorm(hidden[:, -masks.shape[1] :])
        regions = F.normalize(clip.visual_projection(regions), dim=-1)
        class_logits = clip.logit_scale.exp() * regions @ text.T  # (B, Q, C)
        mixture = torch.einsum("bqc,bqp->bcp", class_logits.softmax(-1), masks.sigmoid())
        probabilities = mixture / mixture.sum(1, keepdim=True)
        return probabilities.clamp_min(1e-6).log().unflatten(2, self.grid)

    @staticmethod
    def parameter_count(clip_hidden: int, patch: int, patches: int, heads: int, options: SANOptions) -> int:
        w = options.side_width
        embed = 3 * patch * patch * w + w + patches * w + options.queries * w + clip_hidden * w + w
        layer = (4 * w * w + 4 * w) + (w * 4 * w + 4 * w) + (4 * w * w + w) + 4 * w
        heads_out = 2 * (w * w + w) + 2 * (w * heads * w + heads * w)
        return embed + options.side_layers * layer + heads_out


@register
class SAN(Method):
    name = "san"
    category = "additive"
    foundation_models = ("VFM",)
    papers = ("san",)
    summary = "A side ViT proposes masks and attention biases that make a frozen CLIP classify each region."
    update_rule = (
        "SOS_q attends to CLIP's patches with logits + bias_q;  P(c|x) ∝ Σ_q softmax(class_q)_c σ(mask_q)"
    )
    trainable = "the side adapter network (patch embedding, queries, layers, fusion and mask/bias heads)"
    model_types = ("clip_seg",)
    Options = SANOptions

    def inject(self, model: nn.Module, options: SANOptions) -> None:
        if not hasattr(model, "decoder"):
            raise RefimplError("san: needs a segmenter with a replaceable `decoder` (model type 'clip_seg')")
        if options.bias_layers >= len(model.clip.vision_model.encoder.layers):
            raise RefimplError("san: option 'bias_layers' must leave at least one unbiased CLIP layer")
        replace_module(model, "decoder", SideAdapterNetwork(model.clip, options))

    def expected_trainable(self, model: nn.Module, options: SANOptions) -> int:
        vision = model.config.vision_config
        patches = (vision.image_size // vision.patch_size) ** 2
        return SideAdapterNetwork.parameter_count(
            vision.hidden_size, vision.patch_size, patches, vision.num_attention_heads, options
        )
