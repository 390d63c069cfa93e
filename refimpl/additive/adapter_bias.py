"""AdapterBias — Fu, Chen, Lee and Lee, "AdapterBias: Parameter-efficient Token-dependent Representation Shift
for Adapters in NLP Tasks", Findings of NAACL 2022 (catalogue: adapterbias).

    h ← h + α(h) · v,  α(h) = w_α·h + b_α ∈ R (one weight per token),  v ∈ R^d  (after the FFN of every block)

Trainable: L·(2d + 1) adapter parameters, the blocks' layer norms and the task head. With the layer norms the
count for BERT-base is 12·1537 + 12·4·768 = 55,308 (0.05 %) and for BERT-large 0.04 %, the share the survey's
Table 1 reports (checked in tests/refimpl/test_adapter_bias.py), so they are trained by default. Our
initialisation: v = 1 and α = 0, so the adapted model starts exactly at the base model and the first step
already moves α.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from ..core.architectures import hidden_size, transformer_blocks
from ..core.registry import Method, MethodOptions, register
from .adapter_common import norms_and_head_count
from .bottleneck_adapter import insert_adapters, unfreeze_norms_and_head


class TokenShift(nn.Module):
    """α(h) · v: one shared direction v per layer, scaled per token by a linear score α."""

    def __init__(self, hidden: int, like: torch.Tensor) -> None:
        super().__init__()
        self.alpha = nn.Linear(hidden, 1, dtype=like.dtype, device=like.device)
        nn.init.zeros_(self.alpha.weight)
        nn.init.zeros_(self.alpha.bias)
        self.v = nn.Parameter(torch.ones(hidden, dtype=like.dtype, device=like.device))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.alpha(h) * self.v


class AdapterBiasOptions(MethodOptions):
    train_layer_norms: bool = Field(True, description="also train the blocks' layer norms")
    train_head: bool = Field(True, description="also train the task head")


@register
class AdapterBias(Method):
    name = "adapter_bias"
    category = "additive"
    foundation_models = ("LLM",)
    papers = ("adapterbias",)
    summary = "Add a token-dependent shift α(h)·v after every FFN: one vector and one linear score per layer."
    update_rule = "h ← h + (w_α·h + b_α) v  (after the FFN),  v ∈ R^d"
    trainable = "α (d + 1) and v (d) per block, the blocks' layer norms and the task head"
    identity_at_init = True
    Options = AdapterBiasOptions

    def inject(self, model: nn.Module, options: AdapterBiasOptions) -> None:
        like = next(model.parameters())
        insert_adapters(model, ("ffn_output",), lambda: TokenShift(hidden_size(model), like))
        unfreeze_norms_and_head(model, options.train_layer_norms, options.train_head)

    def expected_trainable(self, model: nn.Module, options: AdapterBiasOptions) -> int:
        shifts = len(transformer_blocks(model)) * (2 * hidden_size(model) + 1)
        return shifts + norms_and_head_count(model, options.train_layer_norms, options.train_head)
