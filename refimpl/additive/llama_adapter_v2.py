"""LLaMA-Adapter V2 — Gao et al., "LLaMA-Adapter V2: Parameter-Efficient Visual Instruction Model", 2023
(catalogue: llama-adapter-v2).

    linear layers:  y = s ⊙ (W x + b),   b = 0, s = 1 at init ("unlocked" bias and scale)
    norms:          every RMSNorm scale of the LLM is trained
    early fusion:   layers 1..V attend to prompts P_l + v(x) (v(x): the global visual feature),
                    the top L layers to plain adaption prompts P_l, both through zero-init gates

Trainable: a bias and a scale per output of every linear layer in the LLM's blocks, all LLM norms, and (K·d +
1) per prompted layer. Visual knowledge enters only the early layers and instruction knowledge the top ones,
so the two do not interfere. Every addition starts at the identity, so the output starts at the base model's.

On the tiny LLaVA (2 LM layers): V = 1 early layer and L = 1 top layer by default; v(x) is the mean over
patches of the frozen LLaVA connector's output (V2 trains its own visual projection; LLaVA's connector already
maps CLIP features into the LM space). LLaVA keeps its image tokens in the sequence too — the base model's
design, which V2 adds to rather than replaces. V2's separate training stages (image-text data for the early
prompts, instruction data for the rest) are a data schedule; this file provides the structure they train.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import nn

from ..core.api import add_hook, replace_module
from ..core.errors import RefimplError
from ..core.layers import AdapterLayer, new_parameter
from ..core.registry import Method, MethodOptions, register
from ..models.multimodal import language_model_layers
from .llama_adapter import adaption_prompt_count, insert_adaption_prompts


class BiasScaleLinear(AdapterLayer):
    """A frozen linear layer with a learned output bias and scale: y = s ⊙ (W x + b)."""

    def __init__(self, base: nn.Linear) -> None:
        super().__init__()
        self.base = base
        self.bias = new_parameter(base.out_features, like=base.weight, init="zeros")
        self.scale = new_parameter(base.out_features, like=base.weight, init="ones")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * (self.base(x) + self.bias)


class LlamaAdapterV2Options(MethodOptions):
    adapter_len: int = Field(10, gt=0, description="prompt tokens K per prompted layer")
    visual_layers: int = Field(1, ge=0, description="V: early layers whose prompts carry the visual feature")
    adapter_layers: int = Field(1, ge=0, description="L: top layers with plain adaption prompts")


class VisualFeature:
    """The mean of the connector's output for the current batch (B, 1, d); None for a text-only call."""

    def __init__(self) -> None:
        self.value: torch.Tensor | None = None

    def __call__(self) -> torch.Tensor | None:
        return self.value


def _linears(layers: nn.ModuleList) -> list[tuple[str, nn.Linear]]:
    return [(name, module) for name, module in layers.named_modules() if isinstance(module, nn.Linear)]


@register
class LlamaAdapterV2(Method):
    name = "llama_adapter_v2"
    category = "additive"
    foundation_models = ("VLM", "MFM")
    papers = ("llama-adapter-v2",)
    summary = (
        "LLaMA-Adapter plus bias/scale on every linear layer, trained norms, and visual features fused into"
        " early-layer prompts."
    )
    update_rule = "y = s⊙(Wx + b) per linear; early prompts P_l + v(x), top prompts P_l, zero-init gates"
    trainable = (
        "bias and scale of every LLM linear, the LLM's norms, prompts and gates of V early + L top layers"
    )
    identity_at_init = True
    model_types = ("llava",)
    Options = LlamaAdapterV2Options

    def inject(self, model: nn.Module, options: LlamaAdapterV2Options) -> None:
        layers_name, layers = language_model_layers(model)
        if options.visual_layers + options.adapter_layers > len(layers):
            raise RefimplError(
                "options 'visual_layers' + 'adapter_layers':"
                f" {options.visual_layers + options.adapter_layers}"
                f" layers asked, the language model has {len(layers)}"
            )
        named = [(f"{layers_name}.{index}", layer) for index, layer in enumerate(layers)]
        for module in model.model.language_model.modules():
            if "RMSNorm" in type(module).__name__:
                module.requires_grad_(True)
        visual = VisualFeature()
        early, top = named[: options.visual_layers], named[len(named) - options.adapter_layers :]
        insert_adaption_prompts(model, early, options.adapter_len, offset=visual)
        insert_adaption_prompts(model, top, options.adapter_len)
        # After the prompts, so their keys and values pass through the unlocked linears too.
        for name, linear in _linears(layers):
            replace_module(model, f"{layers_name}.{name}", BiasScaleLinear(linear))

        def forget(module: nn.Module, args: tuple) -> None:
            visual.value = None

        def remember(module: nn.Module, args: tuple, output: Any) -> None:
            features = output if torch.is_tensor(output) else output[0]
            visual.value = features.mean(dim=-2, keepdim=True)

        add_hook(model, model.register_forward_pre_hook(forget))
        add_hook(model, model.model.multi_modal_projector.register_forward_hook(remember))

    def expected_trainable(self, model: nn.Module, options: LlamaAdapterV2Options) -> int:
        """2·out per block linear, d per RMSNorm (2 per block, 1 final), K·d + 1 per prompted layer."""
        text = model.config.text_config
        d, inner, heads, kv_heads = (
            text.hidden_size,
            text.intermediate_size,
            text.num_attention_heads,
            text.num_key_value_heads,
        )
        head_dim = d // heads
        outputs = heads * head_dim + 2 * kv_heads * head_dim + d + 2 * inner + d  # q, k, v, o, gate, up, down
        per_block = 2 * outputs + 2 * d
        prompted = options.visual_layers + options.adapter_layers
        return (
            text.num_hidden_layers * per_block
            + d
            + adaption_prompt_count(model, prompted, options.adapter_len)
        )
