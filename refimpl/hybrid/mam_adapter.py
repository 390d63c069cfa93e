"""Mix-And-Match adapter — He, Zhou, Ma, Berg-Kirkpatrick and Neubig, "Towards a Unified View of
Parameter-Efficient Transfer Learning", ICLR (catalogue: mam).

    attention:  Attn(x W_q, [P_k; x W_k], [P_v; x W_v])                 (prefix tuning, l = 30 prefix vectors)
    FFN:        h ← FFN(x) + s · W_up ReLU(W_down x),   s = 4           (scaled parallel adapter, bottleneck 512)

The paper's unified view reads adapters, prefix tuning and LoRA as learned modifications of hidden states; its
best combination spends a small budget on a prefix in the attention and most of it on a scaled parallel adapter
beside the feed-forward block. Trainable: the prefix (with the prefix-tuning MLP reparameterisation while
training), the parallel adapters and the task head.

Choices: prefix length 30, bottleneck 512 and s = 4 are the paper's MAM setting (chosen for 1024-wide models; the
bottleneck may exceed a small model's width). W_up starts at zero, so the adapter begins silent; W_down keeps the
adapter family's N(0, 10⁻²) init, not the LoRA init (Kaiming-uniform W_down) the paper found beneficial for the
scaled parallel adapter (App. A.3), whose ~3× larger W_down would make the adapter's steps ~3× larger. The
parallel adapter reads the FFN's input x (captured by a pre-hook on the FFN's first module) and adds to the output
of the FFN's last projection, before the block's dropout, residual and norm — BERT has no single FFN module to
wrap.

Learning rate: the paper trains at 1e-4 on MNLI/SST2 and 5e-5 on XSum and en-ro (App. A.2, Table 8), with a linear
warm-up over the first 6 % of steps for classification. Both parts are sized for that: one Adam step at the
sentiment task's 2e-3 (20 × the paper's) takes the silent r = 512, s = 4 adapter to about half the FFN's output in
the first block of MiniLM (3 % at 1e-4), and the prefix moves as in prefix tuning (see there); either part alone
collapses the encoder's output to an input-independent vector within a few steps. So the method declares the
paper's classification rate, 1e-4, for all its parameters (`learning_rates`); a new task head keeps the task's rate.
The warm-up is left out.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from pydantic import Field
from torch import nn

from ..additive.bottleneck_adapter import Bottleneck, unfreeze_norms_and_head
from ..core.api import add_hook, replace_module
from ..core.architectures import architecture_of, hidden_size, named_blocks
from ..core.layers import AdapterLayer
from ..core.registry import Method, register
from ..core.targeting import task_head_parameters
from ..prompt.prefix_tuning import PrefixTuning, PrefixTuningOptions

# The module whose input is the FFN's input x, per architecture.
FFN_INPUT = {"bert": "intermediate", "vit": "intermediate", "gpt2": "mlp", "llama": "mlp"}


class FFNParallelAdapter(AdapterLayer):
    """Wraps the FFN's last projection: out = W_out(·) + s · adapter(x), with x the FFN's input."""

    def __init__(self, base: nn.Module, adapter: nn.Module, scale: float) -> None:
        super().__init__()
        self.base = base
        self.adapter = adapter
        self.scale = scale
        self.ffn_input: torch.Tensor | None = None  # set by the pre-hook of the FFN's first module

    def capture(self, module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        self.ffn_input = args[0]  # every supported block calls its FFN with the hidden states positionally

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x, self.ffn_input = self.ffn_input, None
        return self.base(hidden) + self.scale * self.adapter(x)


def add_parallel_ffn_adapters(model: nn.Module, make: Callable[[], nn.Module], scale: float) -> None:
    """Put `make()` beside the FFN of every block: FFN(x) + scale · adapter(x)."""
    architecture = architecture_of(model)
    blocks_name, blocks = named_blocks(model)
    for index, block in enumerate(blocks):
        wrapper = FFNParallelAdapter(block.get_submodule(architecture.ffn_output), make(), scale)
        replace_module(model, f"{blocks_name}.{index}.{architecture.ffn_output}", wrapper)
        entry = block.get_submodule(FFN_INPUT[model.config.model_type])
        add_hook(model, entry.register_forward_pre_hook(wrapper.capture))


class MAMOptions(PrefixTuningOptions):
    """Prefix tuning's options (prefix_length, reparameterization, mid_dim) and these."""

    prefix_length: int = Field(30, gt=0, description="number of prefix vectors l in every attention layer")
    adapter_size: int = Field(512, gt=0, description="bottleneck dimension r of the parallel adapter")
    scaling: float = Field(4.0, gt=0, description="scale s on the parallel adapter's output")
    activation: str = Field("relu", description="adapter non-linearity (a transformers ACT2FN name)")
    train_head: bool = Field(True, description="also train the task head")


def _prefix_options(options: MAMOptions) -> PrefixTuningOptions:
    return PrefixTuningOptions(**options.model_dump(include=set(PrefixTuningOptions.model_fields)))


@register
class MAMAdapter(Method):
    name = "mam_adapter"
    category = "hybrid"
    foundation_models = ("LLM",)
    papers = ("mam",)
    summary = "A small attention prefix plus a scaled parallel adapter beside every feed-forward block."
    update_rule = "Attn(xW_q, [P_k; xW_k], [P_v; xW_v]);  FFN(x) + s · W_up ReLU(W_down x)"
    trainable = "the prefix (and its reparameterisation MLP), the parallel FFN adapters and the task head"
    Options = MAMOptions
    learning_rates = (("", 1e-4),)  # see the docstring

    def inject(self, model: nn.Module, options: MAMOptions) -> None:
        like = next(model.parameters())
        d = hidden_size(model)
        add_parallel_ffn_adapters(
            model,
            lambda: Bottleneck(d, options.adapter_size, options.activation, init="zeros", like=like),
            options.scaling,
        )
        PrefixTuning().inject(model, _prefix_options(options))  # the prefix mechanism, reused whole
        unfreeze_norms_and_head(model, norms=False, head=options.train_head)

    def expected_trainable(self, model: nn.Module, options: MAMOptions) -> int:
        """prefix tuning's count (P' and MLP, or n·L·2·d_kv) + L · (2dr + r + d) parallel adapters + head"""
        prefix = PrefixTuning().expected_trainable(model, _prefix_options(options))
        adapters = model.config.num_hidden_layers * Bottleneck.parameter_count(
            hidden_size(model), options.adapter_size
        )
        head = sum(p.numel() for p in task_head_parameters(model)) if options.train_head else 0
        return prefix + adapters + head
