"""Head mask — the attention-head disabling studied by Kovaleva et al., "Revealing the Dark Secrets of BERT",
EMNLP-IJCNLP 2019 (catalogue: dark-secrets-bert; an analysis paper, not a PEFT method).

    head_h^l ← g_{l,h} · m_{l,h} · head_h^l,   m_{l,h} = 0 for the disabled heads, 1 otherwise;  g initialised to 1

The paper disables chosen attention heads of fine-tuned BERT and finds that some models even improve. We turn
that experiment into a selective method: a fixed binary mask switches the listed heads (`disabled_heads`, as
[layer, head] pairs) off, and a learnable scalar gate per remaining head is the only thing trained. The gate
multiplies each head's output before the attention output projection (BERT's attention.output.dense, GPT-2's
c_proj, LLaMA's o_proj). With no heads disabled the gates start at 1, so the model starts unchanged.

Not mergeable: a gate could be folded into the projection's input columns, but a disabled head's columns become
zero and could not be restored by `unmerge`, so we keep the gates as a separate multiplication.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import nn

from ..core.api import add_hook, attach_module
from ..core.architectures import block_sublayers, named_blocks
from ..core.errors import RefimplError
from ..core.layers import new_parameter
from ..core.registry import Method, MethodOptions, register


class HeadMaskOptions(MethodOptions):
    disabled_heads: list[tuple[int, int]] = Field(
        default_factory=list, description="[layer, head] pairs whose output is fixed at zero"
    )


def head_count(model: nn.Module) -> int:
    config = model.config
    return getattr(config, "num_attention_heads", None) or config.n_head


class HeadGates(nn.Module):
    """One gate per (layer, head); `enabled` (re-derived from the options, so not saved) zeroes disabled heads."""

    def __init__(self, layers: int, heads: int, disabled: list[tuple[int, int]], like: torch.Tensor) -> None:
        super().__init__()
        self.gate = new_parameter(layers, heads, like=like, init="ones")
        enabled = torch.ones(layers, heads, device=like.device)
        for layer, head in disabled:
            if not (0 <= layer < layers and 0 <= head < heads):
                raise RefimplError(
                    f"option 'disabled_heads': [{layer}, {head}] is outside {layers} layers × {heads} heads"
                )
            enabled[layer, head] = 0
        self.register_buffer("enabled", enabled, persistent=False)

    def scale(self, layer: int, heads_output: torch.Tensor) -> torch.Tensor:
        """Multiply each head's slice of the concatenated head outputs (…, heads · head_dim) by its gate."""
        heads = self.gate.shape[1]
        factor = (self.gate[layer] * self.enabled[layer]).to(heads_output.dtype)
        split = heads_output.unflatten(-1, (heads, -1))
        return (split * factor.unsqueeze(-1)).flatten(-2)


@register
class HeadMask(Method):
    name = "head_mask"
    category = "selective"
    foundation_models = ("LLM",)
    papers = ("dark-secrets-bert",)
    summary = (
        "Switch chosen attention heads off with a fixed mask and learn one scalar gate per remaining head."
    )
    update_rule = "head_h^l ← g_{l,h} · m_{l,h} · head_h^l  (m fixed: 0 for disabled heads; g = 1 at init)"
    trainable = "one gate per enabled attention head"
    identity_at_init = True
    Options = HeadMaskOptions

    def inject(self, model: nn.Module, options: HeadMaskOptions) -> None:
        layers = len(named_blocks(model)[1])
        gates = HeadGates(layers, head_count(model), options.disabled_heads, like=next(model.parameters()))
        attach_module(model, "head_gates", gates)
        for layer, (_, projection) in enumerate(block_sublayers(model, "attention_output")):
            add_hook(model, projection.register_forward_pre_hook(_gate_heads(gates, layer)))

    def expected_trainable(self, model: nn.Module, options: HeadMaskOptions) -> int:
        return len(named_blocks(model)[1]) * head_count(model) - len(set(options.disabled_heads))

    def trainable_count(self, model: nn.Module) -> int:
        return int(model.head_gates.enabled.sum().item())


def _gate_heads(gates: HeadGates, layer: int):
    def hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return (gates.scale(layer, args[0]), *args[1:])

    return hook
