"""DTL — Fu, Zhu and Wu, "DTL: Disentangled Transfer Learning for Visual Recognition", AAAI 2024
(catalogue: dtl).

    h_i = h_{i−1} + B_i A_i sg(x_i)        (the compact side network, CSN; sg = stop-gradient)
    x_{i+1} = block_i(x_i) + swish_β(h_i)   for the blocks i ≥ M;   x_{i+1} = block_i(x_i) before M

The CSN is a chain of low-rank linear maps (A_i ∈ R^{r×d}, B_i ∈ R^{d×r}) beside the frozen ViT: it reads each
block's input feature, detached from the backbone, accumulates their low-rank projections, and from block M on
adds swish_β(h) = h · sigmoid(β h) to the backbone's features. Because the CSN's reads are detached, its
gradients never enter the backbone; the backbone's blocks before M run without any backward pass (the
memory saving). Trainable: the CSN and the task head. Defaults follow the authors' ViT scripts: r = 2, β = 100,
a CSN read at every block and the add-back in the second half of the blocks; B starts at zero (the authors'
LoRA-style init), so the adapted model starts at the base model. DTL+'s depth-wise fusion convolution is not
included.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import Field
from torch import nn

from ..core.api import add_hook, attach_module
from ..core.architectures import hidden_size, named_blocks
from ..core.errors import RefimplError
from ..core.registry import Method, MethodOptions, register
from ..core.vision import classifier_parameters


class DTLOptions(MethodOptions):
    r: int = Field(2, gt=0, description="rank of each low-rank map of the compact side network")
    beta: float = Field(100.0, gt=0, description="β of the swish applied to the side output")
    add_from: int | None = Field(
        None, ge=0, description="M: the first block after which the side output is added (default: half-way)"
    )
    train_head: bool = Field(True, description="also train the task head")


class CompactSideNetwork(nn.Module):
    def __init__(self, hidden: int, blocks: int, options: DTLOptions, like: torch.Tensor) -> None:
        super().__init__()
        factory = {"dtype": like.dtype, "device": like.device}
        self.A = nn.Parameter(torch.empty(blocks, options.r, hidden, **factory))
        self.B = nn.Parameter(torch.zeros(blocks, hidden, options.r, **factory))
        for a in self.A:
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))
        self.beta = options.beta
        self.running: torch.Tensor | float = 0.0  # h_i of the forward pass in progress

    def read(self, index: int, features: torch.Tensor) -> None:
        if index == 0:
            self.running = 0.0
        self.running = self.running + features.detach() @ self.A[index].T @ self.B[index].T

    def output(self) -> torch.Tensor | float:
        h = self.running
        return h * torch.sigmoid(self.beta * h)


def _first(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def _replace_first(output: Any, hidden: torch.Tensor) -> Any:
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


@register
class DTL(Method):
    name = "dtl"
    category = "additive"
    foundation_models = ("VFM",)
    papers = ("dtl",)
    summary = "A compact side network of low-rank maps reads detached backbone features and adds back late."
    update_rule = "h_i = h_{i−1} + B_i A_i sg(x_i);  x_{i+1} = block_i(x_i) + swish_β(h_i) for i ≥ M"
    trainable = "the compact side network (A_i, B_i of every block) and the task head"
    identity_at_init = True
    model_types = ("vit",)
    Options = DTLOptions

    def inject(self, model: nn.Module, options: DTLOptions) -> None:
        blocks = named_blocks(model)[1]
        add_from = len(blocks) // 2 if options.add_from is None else options.add_from
        if add_from >= len(blocks):
            raise RefimplError(
                f"dtl: option 'add_from' is {add_from}, but the model has {len(blocks)} blocks"
            )
        side = CompactSideNetwork(hidden_size(model), len(blocks), options, next(model.parameters()))
        attach_module(model, "dtl_side_network", side)
        for index, block in enumerate(blocks):

            def read(module: nn.Module, args: tuple, kwargs: dict, index: int = index) -> None:
                side.read(index, args[0] if args else kwargs["hidden_states"])

            add_hook(model, block.register_forward_pre_hook(read, with_kwargs=True))
            if index >= add_from:

                def add_back(module: nn.Module, args: tuple, output: Any) -> Any:
                    return _replace_first(output, _first(output) + side.output())

                add_hook(model, block.register_forward_hook(add_back))
        for parameter in classifier_parameters(model) if options.train_head else []:
            parameter.requires_grad_(True)

    def expected_trainable(self, model: nn.Module, options: DTLOptions) -> int:
        maps = len(named_blocks(model)[1]) * 2 * hidden_size(model) * options.r
        head = sum(p.numel() for p in classifier_parameters(model)) if options.train_head else 0
        return maps + head
