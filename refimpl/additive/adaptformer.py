"""AdaptFormer — Chen, Ge, Tong, Wang, Song, Wang and Luo, "AdaptFormer: Adapting Vision Transformers for
Scalable Visual Recognition", NeurIPS 2022 (catalogue: adaptformer).

    x_l = MLP(LN(x'_l)) + s · W_up ReLU(W_down LN(x'_l)) + x'_l,   W_up = 0 at init,   s = 0.1

AdaptMLP is a bottleneck branch beside the FFN of every block, reading the FFN's (normalised) input and added to
its output with a fixed scale s. Trainable: the AdaptMLP branches and the task head. The up-projection starts at
zero, so the adapted ViT starts exactly at the base model. The paper's bottleneck is 64 for ViT-B (d = 768); the
default keeps that number, which is wider than the tiny test model (d = 32) but changes nothing in the mechanism.
The down-projection starts from N(0, 10⁻²) (the shared Bottleneck's init) rather than the authors' Kaiming draw.
"""

from __future__ import annotations

from pydantic import Field
from torch import nn

from ..core.api import replace_module
from ..core.architectures import architecture_of, hidden_size, named_blocks
from ..core.layers import ParallelAdapter
from ..core.registry import Method, MethodOptions, register
from ..core.vision import classifier_parameters
from .bottleneck_adapter import Bottleneck


class AdaptFormerOptions(MethodOptions):
    bottleneck: int = Field(64, gt=0, description="middle dimension d̂ of AdaptMLP (64 in the paper)")
    scale: float = Field(0.1, description="s: the fixed scale of the AdaptMLP branch")
    train_head: bool = Field(True, description="also train the task head")


def ffn_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(full name, module) of each block's whole feed-forward network: the parent of its output projection."""
    ffn = architecture_of(model).ffn_output.rpartition(".")[0]
    blocks_name, blocks = named_blocks(model)
    return [(f"{blocks_name}.{index}.{ffn}", block.get_submodule(ffn)) for index, block in enumerate(blocks)]


@register
class AdaptFormer(Method):
    name = "adaptformer"
    category = "additive"
    foundation_models = ("VFM",)
    papers = ("adaptformer",)
    summary = "A scaled bottleneck branch (AdaptMLP) in parallel with the FFN of every ViT block."
    update_rule = "x_l = MLP(LN(x')) + s · W_up ReLU(W_down LN(x')) + x',  W_up = 0 at init"
    trainable = "the AdaptMLP branches (W_down, W_up and biases) and the task head"
    identity_at_init = True
    model_types = ("vit",)
    Options = AdaptFormerOptions

    def inject(self, model: nn.Module, options: AdaptFormerOptions) -> None:
        like = next(model.parameters())
        for name, ffn in ffn_modules(model):
            branch = Bottleneck(hidden_size(model), options.bottleneck, "relu", "zeros", like)
            replace_module(model, name, ParallelAdapter(ffn, branch, options.scale))
        for parameter in classifier_parameters(model) if options.train_head else []:
            parameter.requires_grad_(True)

    def expected_trainable(self, model: nn.Module, options: AdaptFormerOptions) -> int:
        branches = len(named_blocks(model)[1]) * Bottleneck.parameter_count(
            hidden_size(model), options.bottleneck
        )
        head = sum(p.numel() for p in classifier_parameters(model)) if options.train_head else 0
        return branches + head
