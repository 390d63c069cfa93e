"""Building blocks shared by many methods: the adapter-layer marker, weight-delta linears, and serial wrappers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.pytorch_utils import Conv1D

from .errors import RefimplError
from .targeting import linear_dims


class AdapterLayer(nn.Module):
    """Marks a module that a method added. Mergeable layers override `merge` / `unmerge`."""

    merged: bool = False

    def merge(self) -> None:
        raise RefimplError(f"{type(self).__name__} does not fold into the base weights")

    def unmerge(self) -> None:
        raise RefimplError(f"{type(self).__name__} does not fold into the base weights")


def weight_out_in(linear: nn.Module) -> torch.Tensor:
    """The weight as (out_features, in_features), whatever the layer's storage (Conv1D stores in x out)."""
    return linear.weight.T if isinstance(linear, Conv1D) else linear.weight


class DeltaLinear(AdapterLayer):
    """A frozen linear layer plus a learned weight update: h = W0 x + ΔW x, with ΔW from `delta_weight()`.

    Subclasses define the factorisation of ΔW (low-rank, Kronecker, Hadamard, ...). A dense ΔW runs as one matmul
    with W0 + ΔW: a weight-sized add instead of a second token-sized product forward and backward. Merging adds ΔW
    into W0 in place, so inference after `merge` costs exactly the base layer; `unmerge` subtracts it again.
    """

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base = base
        self.in_features, self.out_features = linear_dims(base)

    def delta_weight(self) -> torch.Tensor:
        """ΔW as (out_features, in_features): what `merge` folds in."""
        raise NotImplementedError

    def training_delta_weight(self) -> torch.Tensor:
        """ΔW in a training forward pass; a method that samples its update (diff pruning's gates) overrides it."""
        return self.delta_weight()

    def adapter_output(self, x: torch.Tensor) -> torch.Tensor | None:
        """ΔW x where it is better not to form W0 + ΔW: a cheaper factored product (LoRA's two thin matmuls) or an
        input of its own (dropout on the update's branch). None: the layer runs once with W0 + ΔW."""
        return None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base(x)
        update = self.adapter_output(x)
        if update is not None:
            return self.base(x) + update
        weight = weight_out_in(self.base)
        delta = self.training_delta_weight() if self.training else self.delta_weight()
        return F.linear(x, weight + delta.to(weight.dtype), self.base.bias)

    @torch.no_grad()
    def merge(self) -> None:
        if self.merged:
            raise RefimplError("the adapter is already merged")
        weight_out_in(self.base).add_(self.delta_weight().to(self.base.weight.dtype))
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if not self.merged:
            raise RefimplError("the adapter is not merged")
        weight_out_in(self.base).sub_(self.delta_weight().to(self.base.weight.dtype))
        self.merged = False


class SerialAdapter(AdapterLayer):
    """Runs a sub-layer, then an adapter on its output with a skip connection: h = f(x) + adapter(f(x)).

    This is the placement of Houlsby et al.: after a projection and before the block's residual add and norm.
    """

    def __init__(self, base: nn.Module, adapter: nn.Module) -> None:
        super().__init__()
        self.base = base
        self.adapter = adapter

    def forward(self, *args: object, **kwargs: object) -> torch.Tensor:
        out = self.base(*args, **kwargs)
        return out + self.adapter(out)


class ParallelAdapter(AdapterLayer):
    """Runs an adapter beside a sub-layer on the same input: h = f(x) + s · adapter(x) (He et al.'s parallel form)."""

    def __init__(self, base: nn.Module, adapter: nn.Module, scale: float = 1.0) -> None:
        super().__init__()
        self.base = base
        self.adapter = adapter
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * self.adapter(x)


def new_parameter(*shape: int, like: torch.Tensor, init: str = "zeros") -> nn.Parameter:
    """A trainable parameter on the device and in the floating dtype of an existing base tensor."""
    tensor = torch.empty(
        *shape, device=like.device, dtype=like.dtype if like.is_floating_point() else torch.float32
    )
    if init == "zeros":
        nn.init.zeros_(tensor)
    elif init == "ones":
        nn.init.ones_(tensor)
    elif init == "kaiming":
        nn.init.kaiming_uniform_(tensor, a=5**0.5)
    elif init == "normal":
        nn.init.normal_(tensor, std=0.02)
    else:
        raise ValueError(f"unknown init {init!r}")
    return nn.Parameter(tensor)
