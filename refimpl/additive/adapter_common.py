"""Closed-form counts shared by the adapter variants that, like Houlsby's adapter, also train norms and
head.
"""

from __future__ import annotations

from torch import nn

from ..core.architectures import block_sublayers
from ..core.targeting import task_head_parameters


def norms_and_head_count(model: nn.Module, norms: bool, head: bool) -> int:
    """Parameters `unfreeze_norms_and_head` will unfreeze, read off the unadapted model's layer shapes."""
    norm_count = sum(p.numel() for _, m in block_sublayers(model, "layer_norms") for p in m.parameters())
    head_count = sum(p.numel() for p in task_head_parameters(model))
    return (norm_count if norms else 0) + (head_count if head else 0)
