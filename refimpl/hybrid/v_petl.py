"""V-PETL — Yu, Chang, Liu, Tian and Chen, "Towards a Unified View on Visual Parameter-Efficient Transfer
Learning", arXiv 2022 (catalogue: v-petl; filed VGM upstream, but it adapts video/vision recognition models).

    PATT:    attn(x) ← attn(x) + s · W_o Attn(x W_q, x A_k B_k, x A_v B_v)     (parallel attention, per head)
    adapter: h ← h + W_up ReLU(W_down h)                                      (after the FFN)

The paper views prompts, prefixes, adapters and LoRA as modifications of a frozen transformer and proposes
parallel attention (PATT), a prefix-tuning variant for vision in which the prefix keys and values are
generated from the input instead of being free vectors; its best scheme is named Swin-BAPAT, which we read as
bottleneck adapters with PATT. Our reading, from the catalogue's facts and the abstract (the paper's equations
were not available to us): beside each block's frozen self-attention, the frozen query projection attends to
keys and values made from the same (normed) block input by rank-l projections A ∈ R^{d×l}, B ∈ R^{l×d}; the
result goes through the frozen output projection W_o (as a prefix's contribution does) and is added with scale
s; and a serial bottleneck adapter follows each FFN. On a ViT rather than a video Swin. Trainable: A_k, B_k,
A_v, B_v per block, the adapters and the classification head. B_v and W_up start at zero, so the model starts
at the base model. Defaults l = 8, s = 0.8 and adapter size 16 are ours.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..additive.bottleneck_adapter import Bottleneck, insert_adapters
from ..core.api import replace_module
from ..core.architectures import architecture_of, hidden_size, named_blocks
from ..core.layers import AdapterLayer, new_parameter
from ..core.registry import Method, MethodOptions, register
from ..core.vision import classifier_parameters


class ParallelAttention(AdapterLayer):
    """A frozen ViT attention plus PATT: its own queries attend to input-generated keys and values."""

    def __init__(self, base: nn.Module, rank: int, scale: float) -> None:
        super().__init__()
        self.base = base
        self.scale = scale
        hidden, like = base.q_proj.in_features, base.q_proj.weight
        self.key_down = new_parameter(rank, hidden, like=like, init="kaiming")
        self.key_up = new_parameter(hidden, rank, like=like, init="kaiming")
        self.value_down = new_parameter(rank, hidden, like=like, init="kaiming")
        self.value_up = new_parameter(hidden, rank, like=like)  # zero: PATT adds nothing at the start

    def parallel_attention(self, hidden: torch.Tensor) -> torch.Tensor:
        heads = (*hidden.shape[:-1], -1, self.base.head_dim)
        query = self.base.q_proj(hidden).view(heads).transpose(1, 2)
        key = F.linear(F.linear(hidden, self.key_down), self.key_up).view(heads).transpose(1, 2)
        value = F.linear(F.linear(hidden, self.value_down), self.value_up).view(heads).transpose(1, 2)
        attended = F.scaled_dot_product_attention(query, key, value).transpose(1, 2).flatten(2)
        return F.linear(attended, self.base.o_proj.weight)  # through W_o, without its bias (counted once)

    def forward(self, hidden: torch.Tensor, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, Any]:
        output, weights = self.base(hidden, *args, **kwargs)
        return output + self.scale * self.parallel_attention(hidden), weights

    @staticmethod
    def parameter_count(hidden: int, rank: int) -> int:
        return 4 * hidden * rank


class VPETLOptions(MethodOptions):
    patt_rank: int = Field(8, gt=0, description="rank l of PATT's key and value generators")
    patt_scale: float = Field(0.8, description="s: scale of the parallel attention branch")
    adapter_size: int = Field(16, gt=0, description="bottleneck dimension of the FFN adapters")
    train_head: bool = Field(True, description="also train the classification head")


@register
class VPETL(Method):
    name = "v_petl"
    category = "hybrid"
    foundation_models = ("VFM",)
    papers = ("v-petl",)
    summary = (
        "Parallel attention over input-generated prefix keys and values (PATT) beside each attention, "
        "with bottleneck adapters after the FFNs (BAPAT)."
    )
    update_rule = "attn ← attn + s W_o Attn(x W_q, x A_k B_k, x A_v B_v);  h ← h + W_up ReLU(W_down h)"
    trainable = "PATT's low-rank key/value generators, the FFN adapters and the head"
    identity_at_init = True
    model_types = ("vit",)
    Options = VPETLOptions

    def inject(self, model: nn.Module, options: VPETLOptions) -> None:
        attention = architecture_of(model).query.rpartition(".")[0]
        blocks_name, blocks = named_blocks(model)
        for index, block in enumerate(blocks):
            wrapped = ParallelAttention(block.get_submodule(attention), options.patt_rank, options.patt_scale)
            replace_module(model, f"{blocks_name}.{index}.{attention}", wrapped)
        like = next(model.parameters())
        insert_adapters(
            model,
            ("ffn_output",),
            lambda: Bottleneck(hidden_size(model), options.adapter_size, "relu", "zeros", like),
        )
        for parameter in classifier_parameters(model) if options.train_head else []:
            parameter.requires_grad_(True)

    def expected_trainable(self, model: nn.Module, options: VPETLOptions) -> int:
        d, blocks = hidden_size(model), len(named_blocks(model)[1])
        per_block = ParallelAttention.parameter_count(d, options.patt_rank) + Bottleneck.parameter_count(
            d, options.adapter_size
        )
        head = sum(p.numel() for p in classifier_parameters(model)) if options.train_head else 0
        return blocks * per_block + head
