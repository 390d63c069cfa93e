"""VPT — Jia, Tang, Chen, Cardie, Belongie, Hariharan and Lim, "Visual Prompt Tuning", ECCV 2022
(catalogue: vpt).

    shallow: [x_1, Z_1, E_1] = L_1([x_0, P, E_0]),            then the frozen layers as they are
    deep:    [x_i, _, E_i]   = L_i([x_{i-1}, P_{i-1}, E_{i-1}])  with fresh prompts P_{i-1} at every layer

x is the [CLS] token, E the patch tokens, P ∈ R^{p×d} learned prompt tokens placed right after [CLS]. In the
deep variant each layer's prompt outputs are dropped and replaced by that layer's own prompts. Trainable: the
prompts (1 or L layers × p × d) and the classification head, as in the paper. Prompts start
uniform in ±√(6 / (3·k² + d)) (Xavier-uniform with a k×k patch's fan-in); the paper's prompt dropout is left
out. The classifier reads [CLS] only, so the prompt positions stay in the last hidden state. The paper's main
variant is deep; p = 10 is one of the lengths it sweeps (1 to 200).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from ..core.api import add_hook, attach_module
from ..core.architectures import hidden_size, named_blocks
from ..core.registry import Method, MethodOptions, register
from ..core.vision import classifier_parameters, patch_grid

LayerPrompt = Callable[[], torch.Tensor]  # -> (tokens, hidden) prompt for one layer's input


def insert_layer_prompts(model: nn.Module, prompts: dict[int, LayerPrompt]) -> None:
    """Before block i (for each i in `prompts`), drop whatever prompt tokens follow [CLS] and put block i's
    own there: [CLS, old prompts, patches] -> [CLS, P_i, patches]. Other blocks keep their input."""
    rows, columns = patch_grid(model)
    patches = rows * columns

    def hook_for(prompt: LayerPrompt) -> Callable[[nn.Module, tuple], tuple]:
        def before(module: nn.Module, args: tuple) -> tuple:
            hidden = args[0]
            tokens = prompt().to(hidden).unsqueeze(0).expand(hidden.shape[0], -1, -1)
            return (torch.cat([hidden[:, :1], tokens, hidden[:, -patches:]], dim=1), *args[1:])

        return before

    blocks = named_blocks(model)[1]
    for index, prompt in prompts.items():
        add_hook(model, blocks[index].register_forward_pre_hook(hook_for(prompt)))


def prompt_init_bound(model: nn.Module) -> float:
    patch = model.config.patch_size
    return math.sqrt(6.0 / (3 * patch * patch + hidden_size(model)))


class VisualPromptTokens(nn.Module):
    """Prompt tokens for `layers` layers: (layers, tokens, hidden), uniform in ±bound."""

    def __init__(self, layers: int, tokens: int, hidden: int, bound: float, like: torch.Tensor) -> None:
        super().__init__()
        values = torch.empty(layers, tokens, hidden, dtype=like.dtype).uniform_(-bound, bound)
        self.tokens = nn.Parameter(values.to(like.device))


class VPTOptions(MethodOptions):
    variant: Literal["shallow", "deep"] = Field(
        "deep", description="prompts at the first layer's input only, or at every layer's"
    )
    num_tokens: int = Field(10, gt=0, description="prompt length p (tokens per prompted layer)")
    train_head: bool = Field(True, description="also train the classification head (as the paper does)")


def prompted_layers(model: nn.Module, options: VPTOptions) -> int:
    return len(named_blocks(model)[1]) if options.variant == "deep" else 1


@register
class VPT(Method):
    name = "vpt"
    category = "prompt"
    foundation_models = ("VFM",)
    papers = ("vpt",)
    summary = (
        "Learned prompt tokens after [CLS] at the first layer's input (shallow) or at every layer's (deep)."
    )
    update_rule = "[x_i, _, E_i] = L_i([x_{i-1}, P_{i-1}, E_{i-1}]),  P learned (deep: one P per layer)"
    trainable = "the prompt tokens (1 or L × p × d) and the classification head"
    model_types = ("vit",)
    Options = VPTOptions

    def inject(self, model: nn.Module, options: VPTOptions) -> None:
        prompts = VisualPromptTokens(
            prompted_layers(model, options),
            options.num_tokens,
            hidden_size(model),
            prompt_init_bound(model),
            next(model.parameters()),
        )
        attach_module(model, "visual_prompt_tokens", prompts)
        insert_layer_prompts(model, {i: lambda i=i: prompts.tokens[i] for i in range(len(prompts.tokens))})
        for parameter in classifier_parameters(model) if options.train_head else []:
            parameter.requires_grad_(True)

    def expected_trainable(self, model: nn.Module, options: VPTOptions) -> int:
        head = sum(p.numel() for p in classifier_parameters(model)) if options.train_head else 0
        return prompted_layers(model, options) * options.num_tokens * hidden_size(model) + head
