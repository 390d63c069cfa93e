"""ViT-Adapter — Chen, Duan, Wang, He, Lu, Dai and Qiao, "Vision Transformer Adapter for Dense Predictions",
ICLR 2023 (catalogue: vit-adapter).

    F_sp = SPM(image)                                         (multi-scale convolutional features, as tokens)
    for each group g of blocks:
        F_vit ← F_vit + γ_g ⊙ Attn(LN(F_vit), LN(F_sp))      (injector, γ_g = 0 at init)
        F_vit ← blocks_g(F_vit)
        F_sp ← F_sp + Attn(LN(F_sp), LN(F_vit));  F_sp ← F_sp + FFN(LN(F_sp))   (extractor)

A plain ViT gets image-specific spatial priors: a small convolutional stem (the spatial prior module, SPM) makes
feature maps at three scales, flattened into one token set F_sp; before each group of blocks an injector lets the
ViT tokens cross-attend to F_sp, and after it an extractor lets F_sp cross-attend back to the ViT tokens.
Trainable: the SPM, injectors, extractors and the task head; the ViT stays frozen. γ starts at zero, so the
classification output starts at the base model's.

A tiny but honest version: the three scales are 1/4, 1/8 and 1/16 of the (16-pixel) image instead of the paper's
1/8, 1/16 and 1/32; the stem is two plain stride-2 convolutions with ReLU (no batch norm or max-pool); the
attention is dense multi-head attention instead of the paper's deformable attention; the extractor's FFN has
no depth-wise convolution and the level embeddings are left out. The last extractor, which feeds only the
dense-prediction head, is left out because the tiny model classifies from the ViT's [CLS] token.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from ..core.api import add_hook, attach_module
from ..core.architectures import hidden_size, named_blocks
from ..core.errors import RefimplError
from ..core.registry import Method, MethodOptions, register
from ..core.vision import classifier_parameters, grid_to_tokens

PAPER_INTERACTIONS = 4


class ViTAdapterOptions(MethodOptions):
    interactions: int | None = Field(
        None,
        gt=0,
        description="groups of blocks, each with an injector (default: 4 as in the paper, at most one per block)",
    )
    spm_channels: int = Field(16, gt=0, description="channels of the spatial prior module's convolutions")
    ffn_ratio: float = Field(0.25, gt=0, description="extractor FFN width as a fraction of the hidden size")
    train_head: bool = Field(True, description="also train the task head")


class SpatialPriorModule(nn.Module):
    """A convolutional stem giving feature maps at 1/4, 1/8 and 1/16 resolution, projected to the ViT width."""

    def __init__(self, channels: int, hidden: int, **factory: object) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, channels, 3, stride=2, padding=1, **factory),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=2, padding=1, **factory),
            nn.ReLU(),
        )
        self.downs = nn.ModuleList(
            nn.Conv2d(channels, channels, 3, stride=2, padding=1, **factory) for _ in range(2)
        )
        self.projections = nn.ModuleList(nn.Conv2d(channels, hidden, 1, **factory) for _ in range(3))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        maps = [self.stem(pixels)]
        for down in self.downs:
            maps.append(F.relu(down(maps[-1])))
        return torch.cat([grid_to_tokens(project(m)) for project, m in zip(self.projections, maps)], dim=1)

    @staticmethod
    def parameter_count(channels: int, hidden: int) -> int:
        stem = (27 * channels + channels) + 3 * (9 * channels * channels + channels)
        return stem + 3 * (channels * hidden + hidden)


def _attention_count(hidden: int) -> int:
    return 4 * hidden * hidden + 4 * hidden  # nn.MultiheadAttention: q, k, v, out projections with biases


class CrossAttention(nn.Module):
    """Attn(LN(queries), LN(keys and values))."""

    def __init__(self, hidden: int, heads: int, **factory: object) -> None:
        super().__init__()
        self.query_norm = nn.LayerNorm(hidden, **factory)
        self.context_norm = nn.LayerNorm(hidden, **factory)
        self.attention = nn.MultiheadAttention(hidden, heads, batch_first=True, **factory)

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        context = self.context_norm(context)
        return self.attention(self.query_norm(queries), context, context, need_weights=False)[0]


class Injector(nn.Module):
    def __init__(self, hidden: int, heads: int, **factory: object) -> None:
        super().__init__()
        self.attend = CrossAttention(hidden, heads, **factory)
        self.gamma = nn.Parameter(torch.zeros(hidden, **factory))

    def forward(self, vit_tokens: torch.Tensor, spatial: torch.Tensor) -> torch.Tensor:
        return vit_tokens + self.gamma * self.attend(vit_tokens, spatial)


class Extractor(nn.Module):
    def __init__(self, hidden: int, heads: int, ffn: int, **factory: object) -> None:
        super().__init__()
        self.attend = CrossAttention(hidden, heads, **factory)
        self.ffn_norm = nn.LayerNorm(hidden, **factory)
        self.ffn = nn.Sequential(
            nn.Linear(hidden, ffn, **factory), nn.GELU(), nn.Linear(ffn, hidden, **factory)
        )

    def forward(self, spatial: torch.Tensor, vit_tokens: torch.Tensor) -> torch.Tensor:
        spatial = spatial + self.attend(spatial, vit_tokens)
        return spatial + self.ffn(self.ffn_norm(spatial))


class ViTAdapterModules(nn.Module):
    def __init__(
        self, hidden: int, heads: int, groups: int, options: ViTAdapterOptions, like: torch.Tensor
    ) -> None:
        super().__init__()
        factory = {"dtype": like.dtype, "device": like.device}
        ffn = max(1, int(hidden * options.ffn_ratio))
        self.spatial_prior = SpatialPriorModule(options.spm_channels, hidden, **factory)
        self.injectors = nn.ModuleList(Injector(hidden, heads, **factory) for _ in range(groups))
        self.extractors = nn.ModuleList(Extractor(hidden, heads, ffn, **factory) for _ in range(groups - 1))
        self.spatial: torch.Tensor | None = None  # F_sp of the forward pass in progress


def interaction_groups(model: nn.Module, options: ViTAdapterOptions) -> int:
    blocks = len(named_blocks(model)[1])
    groups = options.interactions or min(PAPER_INTERACTIONS, blocks)
    if blocks % groups:
        raise RefimplError(
            f"vit_adapter: option 'interactions' is {groups}, which does not divide {blocks} blocks"
        )
    return groups


@register
class ViTAdapter(Method):
    name = "vit_adapter"
    category = "additive"
    foundation_models = ("VFM",)
    papers = ("vit-adapter",)
    summary = "A convolutional spatial prior exchanged with a plain ViT through cross-attention injectors and extractors."
    update_rule = "F_vit ← F_vit + γ ⊙ Attn(F_vit, F_sp) before each block group;  F_sp ← F_sp + Attn(F_sp, F_vit) after"
    trainable = "the spatial prior module, the injectors (with γ), the extractors and the task head"
    identity_at_init = True
    model_types = ("vit",)
    Options = ViTAdapterOptions

    def inject(self, model: nn.Module, options: ViTAdapterOptions) -> None:
        blocks = named_blocks(model)[1]
        groups = interaction_groups(model, options)
        heads = model.config.num_attention_heads
        adapter = ViTAdapterModules(hidden_size(model), heads, groups, options, next(model.parameters()))
        attach_module(model, "vit_adapter", adapter)

        def spatial_prior(module: nn.Module, args: tuple, kwargs: dict) -> None:
            pixels = args[0] if args else kwargs["pixel_values"]
            adapter.spatial = adapter.spatial_prior(pixels.to(adapter.injectors[0].gamma.dtype))

        add_hook(model, model.register_forward_pre_hook(spatial_prior, with_kwargs=True))
        per_group = len(blocks) // groups
        for g in range(groups):

            def inject(module: nn.Module, args: tuple, g: int = g) -> tuple:
                return (adapter.injectors[g](args[0], adapter.spatial), *args[1:])

            add_hook(model, blocks[g * per_group].register_forward_pre_hook(inject))
            if g < groups - 1:

                def extract(module: nn.Module, args: tuple, output: torch.Tensor, g: int = g) -> None:
                    adapter.spatial = adapter.extractors[g](adapter.spatial, output)

                add_hook(model, blocks[(g + 1) * per_group - 1].register_forward_hook(extract))
        for parameter in classifier_parameters(model) if options.train_head else []:
            parameter.requires_grad_(True)

    def expected_trainable(self, model: nn.Module, options: ViTAdapterOptions) -> int:
        d, groups = hidden_size(model), interaction_groups(model, options)
        ffn = max(1, int(d * options.ffn_ratio))
        injector = 4 * d + _attention_count(d) + d
        extractor = 4 * d + _attention_count(d) + 2 * d + (d * ffn + ffn) + (ffn * d + d)
        spatial = SpatialPriorModule.parameter_count(options.spm_channels, d)
        head = sum(p.numel() for p in classifier_parameters(model)) if options.train_head else 0
        return spatial + groups * injector + (groups - 1) * extractor + head
