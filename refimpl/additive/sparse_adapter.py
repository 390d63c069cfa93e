"""SparseAdapter — He, Ding, Dong, Zhang and Tao, "SparseAdapter: An Easy Approach for Improving the
Parameter-Efficiency of Adapters", Findings of EMNLP 2022 (catalogue: sparseadapter).

    h ← h + (M_up ⊙ W_up) σ((M_down ⊙ W_down) h),   masks M ∈ {0,1} fixed at initialisation

Adapters at the Houlsby positions are pruned once, before training, and the masks never change. `inject`
prunes each projection by magnitude (the smallest `sparsity` share of its entries); `prune_with_snip(model,
batch)` re-selects them by the SNIP saliency |w · ∂L/∂w| on one batch, to be called before training. The masks
are persistent buffers, so adapter files carry them. Trainable, as the paper counts it: the unmasked
projection entries, the biases, and (as for the Houlsby adapter) the blocks' layer norms and the task head.
"Large-Sparse": a wider `adapter_size` with a higher `sparsity` keeps the count of a small dense adapter. Our
choices: pruning is per projection matrix (so the count is a closed form); default sparsity 0.4.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..core.architectures import hidden_size, transformer_blocks
from ..core.registry import Method, register
from .adapter_common import norms_and_head_count
from .bottleneck_adapter import Bottleneck, BottleneckOptions, insert_adapters, unfreeze_norms_and_head


def pruned_count(entries: int, sparsity: float) -> int:
    return int(entries * sparsity)


def top_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """1 for the highest-scoring entries, 0 for the `sparsity` share with the lowest scores."""
    keep = scores.numel() - pruned_count(scores.numel(), sparsity)
    mask = torch.zeros(scores.numel(), dtype=scores.dtype, device=scores.device)
    mask[scores.flatten().float().topk(keep).indices] = 1
    return mask.view_as(scores)


class SparseAdapterOptions(BottleneckOptions):
    sparsity: float = Field(0.4, ge=0, lt=1, description="share of each projection's entries pruned at init")


class SparseBottleneck(Bottleneck):
    def __init__(self, hidden: int, options: SparseAdapterOptions, like: torch.Tensor) -> None:
        super().__init__(hidden, options.adapter_size, options.activation, options.init, like)
        self.sparsity = options.sparsity
        self.register_buffer("down_mask", top_mask(self.down.weight.detach().abs(), self.sparsity))
        self.register_buffer("up_mask", top_mask(self.up.weight.detach().abs(), self.sparsity))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        hidden = self.activation(F.linear(h, self.down.weight * self.down_mask, self.down.bias))
        return F.linear(hidden, self.up.weight * self.up_mask, self.up.bias)

    def pruned_entries(self) -> int:
        return int((self.down_mask == 0).sum() + (self.up_mask == 0).sum())


def _sparse_adapters(model: nn.Module) -> list[SparseBottleneck]:
    return [module for module in model.modules() if isinstance(module, SparseBottleneck)]


def prune_with_snip(model: nn.Module, batch: dict[str, torch.Tensor]) -> None:
    """Before training, re-select every mask by SNIP: keep the largest |w · ∂L/∂w| on `batch`."""
    adapters = _sparse_adapters(model)
    masks = [mask for adapter in adapters for mask in (adapter.down_mask, adapter.up_mask)]
    with torch.no_grad():
        for mask in masks:
            mask.fill_(1)
    for mask in masks:
        mask.requires_grad_(True)  # ∂L/∂m at m = 1 is exactly w · ∂L/∂w
    try:
        model(**batch).loss.backward(inputs=masks)
        with torch.no_grad():
            for adapter in adapters:
                for mask in (adapter.down_mask, adapter.up_mask):
                    mask.copy_(top_mask(mask.grad.abs(), adapter.sparsity))
    finally:
        for mask in masks:
            mask.requires_grad_(False)
            mask.grad = None


@register
class SparseAdapter(Method):
    name = "sparse_adapter"
    category = "additive"
    foundation_models = ("LLM",)
    papers = ("sparseadapter",)
    summary = "Prune adapter weights once at initialisation and train only the remaining sparse entries."
    update_rule = "h ← h + (M_up ⊙ W_up) σ((M_down ⊙ W_down) h),  M fixed at init (magnitude or SNIP)"
    trainable = "unpruned adapter entries and biases, the blocks' layer norms and the task head"
    Options = SparseAdapterOptions

    def inject(self, model: nn.Module, options: SparseAdapterOptions) -> None:
        like = next(model.parameters())
        insert_adapters(
            model,
            ("attention_output", "ffn_output"),
            lambda: SparseBottleneck(hidden_size(model), options, like),
        )
        unfreeze_norms_and_head(model, options.train_layer_norms, options.train_head)

    def trainable_count(self, model: nn.Module) -> int:
        return super().trainable_count(model) - sum(a.pruned_entries() for a in _sparse_adapters(model))

    def expected_trainable(self, model: nn.Module, options: SparseAdapterOptions) -> int:
        d, m = hidden_size(model), options.adapter_size
        adapter = Bottleneck.parameter_count(d, m) - 2 * pruned_count(d * m, options.sparsity)
        adapters = 2 * len(transformer_blocks(model)) * adapter
        return adapters + norms_and_head_count(model, options.train_layer_norms, options.train_head)
