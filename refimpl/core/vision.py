"""What methods on vision transformers share: the classifier's parameters and the patch-token grid.

`targeting.task_head_parameters` compares the head with `get_input_embeddings().weight`, which a ViT's patch
embedding module does not have; vision models never tie their head to the input, so the head is simply the
named head module's parameters here.
"""

from __future__ import annotations

import torch
from torch import nn

from .targeting import HEAD_NAMES


def classifier_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters of the task head (`classifier`, ...) of a vision model."""
    return [p for name, child in model.named_children() if name in HEAD_NAMES for p in child.parameters()]


def patch_grid(model: nn.Module) -> tuple[int, int]:
    """(rows, columns) of patch tokens for the configured image size (a CLIP model: its image tower's)."""
    config = getattr(model.config, "vision_config", model.config)
    side = config.image_size // config.patch_size
    return side, side


def tokens_to_grid(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, rows·columns, C) patch tokens -> (B, C, rows, columns) feature map."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid)


def grid_to_tokens(feature_map: torch.Tensor) -> torch.Tensor:
    """(B, C, rows, columns) feature map -> (B, rows·columns, C) tokens."""
    return feature_map.flatten(2).transpose(1, 2)
