"""QLoRA — Dettmers, Pagnoni, Holtzman, Zettlemoyer, "QLoRA: Efficient Finetuning of Quantized LLMs", NeurIPS 2023
(catalogue: qlora).

    h = dequant(NF4(W0)) x + (alpha / r) · B A x,   dequant(q) = NF4_LEVELS[q] · absmax(block of 64 weights)

Trainable: the LoRA factors A and B of every linear layer (all of them by default, as the paper does); the frozen
base weights of all linear layers except the task heads are stored as 4-bit NormalFloat codes and dequantised for
each matmul.

Choices:
- NF4 levels: the sixteen normal-quantile code values published with the paper and shipped in bitsandbytes
  (`NF4_LEVELS`). Weights are quantised block-wise (64 weights per block) against the block's absolute maximum.
- Double quantisation: the fp32 absmax constants are shifted by their mean and re-quantised to 8 bits in blocks of
  256, each block with one fp32 scale. The paper uses an 8-bit float code here; we use symmetric linear int8 codes,
  which cost the same byte and keep the code simple (the round-trip error is tested).
- Storage: two 4-bit codes per uint8 in non-persistent buffers, re-derived from the base at load, so an adapter file
  holds only A and B. The fp weight Parameter leaves the module tree (`total_count` still counts the quantised
  weights). `remove` must restore the exact base, so the original Parameter is kept by the undo record; on an
  accelerator it is parked in host memory meanwhile, which is where QLoRA's saving is felt.
- Merge: folding BA into 4-bit codes would lose it to rounding, so `merge` materialises W = dequant(W0) + (alpha/r)BA
  as a full-precision weight of the layer (what one exports after QLoRA training); `unmerge` drops it again.
- Not implemented: paged optimisers (a memory-manager feature of CUDA, not part of the model).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..core.api import add_undo, replace_module
from ..core.errors import RefimplError
from ..core.layers import weight_out_in
from ..core.registry import Method, register
from ..core.targeting import Targets, find_targets, linear_dims
from .lora import LoRALinear, LoRAOptions, inject_lora_layers, lora_parameter_count, lora_targets

# NormalFloat-4 code values as published with QLoRA (paper appendix; bitsandbytes NF4 code table); test_qlora.py
# rebuilds them from the paper's normal-quantile construction.
NF4_LEVELS = torch.tensor(
    [
        -1.0,
        -0.6961928009986877,
        -0.5250730514526367,
        -0.39491748809814453,
        -0.28444138169288635,
        -0.18477343022823334,
        -0.09105003625154495,
        0.0,
        0.07958029955625534,
        0.16093020141124725,
        0.24611230194568634,
        0.33791524171829224,
        0.44070982933044434,
        0.5626170039176941,
        0.7229568362236023,
        1.0,
    ]
)
_NF4_BOUNDARIES = (NF4_LEVELS[1:] + NF4_LEVELS[:-1]) / 2  # a value is coded by the nearest level
_INT8_MAX = 127


def _blocks(flat: torch.Tensor, block_size: int) -> torch.Tensor:
    """(n_blocks, block_size) view of a 1-d tensor, zero-padded at the end."""
    padding = -flat.numel() % block_size
    return F.pad(flat, (0, padding)).view(-1, block_size)


def nf4_quantize(weight: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes 0..15 (uint8, padded to whole blocks) and the fp32 absmax of each block."""
    blocks = _blocks(weight.detach().float().flatten(), block_size)
    absmax = blocks.abs().amax(dim=1)
    normalised = blocks / absmax.clamp_min(torch.finfo(torch.float32).tiny)[:, None]
    codes = torch.bucketize(normalised, _NF4_BOUNDARIES.to(blocks.device))
    return codes.to(torch.uint8).flatten(), absmax


def nf4_dequantize(
    codes: torch.Tensor, absmax: torch.Tensor, shape: torch.Size | tuple[int, ...]
) -> torch.Tensor:
    levels = NF4_LEVELS.to(absmax.device)[codes.long()].view(absmax.numel(), -1)
    numel = torch.Size(shape).numel()
    return (levels * absmax.float()[:, None]).flatten()[:numel].view(shape)


def pack_nibbles(codes: torch.Tensor) -> torch.Tensor:
    """Two 4-bit codes per byte: the even-indexed code in the high nibble."""
    return (codes[0::2] << 4) | codes[1::2]


def unpack_nibbles(packed: torch.Tensor) -> torch.Tensor:
    return torch.stack((packed >> 4, packed & 0xF), dim=1).flatten()


def quantize_constants(
    absmax: torch.Tensor, block_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Double quantisation: int8 codes of (absmax - mean) per block, one fp32 scale per block, and the mean."""
    offset = absmax.mean()
    blocks = _blocks(absmax - offset, block_size)
    scales = blocks.abs().amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny)
    codes = torch.round(blocks / scales[:, None] * _INT8_MAX).to(torch.int8)
    return codes.flatten()[: absmax.numel()], scales, offset


def dequantize_constants(
    codes: torch.Tensor, scales: torch.Tensor, offset: torch.Tensor, block_size: int
) -> torch.Tensor:
    blocks = _blocks(codes.float(), block_size) / _INT8_MAX * scales.float()[:, None]
    return blocks.flatten()[: codes.numel()] + offset.float()


class NF4Linear(nn.Module):
    """A frozen linear layer whose weight is held as packed NF4 codes plus (double-quantised) block constants."""

    def __init__(
        self, linear: nn.Module, block_size: int, double_quant: bool, constants_block_size: int
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = linear_dims(linear)
        self.block_size = block_size
        self.constants_block_size = constants_block_size if double_quant else None
        self.bias = linear.bias  # the base's own bias Parameter, still frozen and still a base tensor
        codes, absmax = nf4_quantize(weight_out_in(linear), block_size)
        self.register_buffer("packed_codes", pack_nibbles(codes), persistent=False)
        if double_quant:
            absmax_codes, scales, offset = quantize_constants(absmax, constants_block_size)
            self.register_buffer("absmax_codes", absmax_codes, persistent=False)
            self.register_buffer("absmax_scales", scales, persistent=False)
            self.register_buffer("absmax_offset", offset, persistent=False)
        else:
            self.register_buffer("absmax_fp32", absmax, persistent=False)

    @property
    def quantized_numel(self) -> int:
        return self.in_features * self.out_features

    def absmax(self) -> torch.Tensor:
        if self.constants_block_size is None:
            return self.absmax_fp32.float()
        return dequantize_constants(
            self.absmax_codes, self.absmax_scales, self.absmax_offset, self.constants_block_size
        )

    def dequantized_weight(self) -> torch.Tensor:
        """W0 as (out, in) in fp32, rebuilt from the 4-bit codes."""
        codes = unpack_nibbles(self.packed_codes)
        return nf4_dequantize(codes, self.absmax(), (self.out_features, self.in_features))

    def storage_bytes(self) -> int:
        """Bytes that hold the weight: codes and quantisation constants (the bias is not counted)."""
        return sum(buffer.numel() * buffer.element_size() for buffer in self.buffers())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.dequantized_weight().to(x.dtype), self.bias)


class QLoRALinear(LoRALinear):
    """LoRA beside an NF4-quantised frozen layer; merging materialises the dequantised weight plus the update."""

    def __init__(self, base: nn.Module, r: int, alpha: float, dropout: float, **quantization: Any) -> None:
        super().__init__(base, r, alpha, dropout)  # A and B take the dtype and device of the fp base weight
        self.base = NF4Linear(base, **quantization)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return F.linear(x, self.merged_weight.to(x.dtype), self.base.bias)
        return self.base(x) + self.adapter_output(x)

    @torch.no_grad()
    def merge(self) -> None:
        if self.merged:
            raise RefimplError("the adapter is already merged")
        merged = self.base.dequantized_weight() + self.delta_weight().float()
        self.register_buffer("merged_weight", merged.to(self.lora_A.dtype), persistent=False)
        self.merged = True

    def unmerge(self) -> None:
        if not self.merged:
            raise RefimplError("the adapter is not merged")
        del self.merged_weight
        self.merged = False


class QLoRAOptions(LoRAOptions):
    r: int = Field(64, gt=0, description="rank of the update (the paper uses 64)")
    alpha: float = Field(16.0, gt=0, description="scaling numerator: the update is multiplied by alpha / r")
    dropout: float = Field(
        0.1, ge=0, lt=1, description="dropout on the LoRA branch (0.1 up to 13B in the paper)"
    )
    target_modules: Targets | None = Field(
        "all-linear", description='layers that get LoRA: suffixes, a regex, or "all-linear" (the paper)'
    )
    block_size: int = Field(64, gt=0, multiple_of=2, description="weights per NF4 quantisation block")
    double_quant: bool = Field(True, description="quantise the block absmax constants again to 8 bits")
    constants_block_size: int = Field(256, gt=0, description="absmax constants per second-level block")


def _park_off_accelerator(model: nn.Module, linear: nn.Module) -> None:
    """Keep the fp weight (needed only by `remove`) in host memory while the 4-bit copy does the work."""
    weight = linear.weight
    device = weight.device
    if device.type != "cpu":
        weight.data = weight.data.to("cpu")
        add_undo(model, lambda: setattr(weight, "data", weight.data.to(device)))


@register
class QLoRA(Method):
    name = "qlora"
    category = "reparameterization"
    foundation_models = ("LLM",)
    papers = ("qlora",)
    summary = (
        "LoRA on a frozen base whose linear weights are stored in 4-bit NormalFloat with double quantisation."
    )
    update_rule = "h = dequant(NF4(W0)) x + (alpha/r) B A x,  B = 0 at init"
    trainable = "lora_A (r × in) and lora_B (out × r) of each targeted linear layer (all linear by default)"
    mergeable = True
    identity_at_init = False  # the output starts at the quantised model's, not the fp base model's
    Options = QLoRAOptions
    slower_than_full_fine_tuning = (
        "trades compute for memory: every frozen weight is stored in 4 bits and de-quantised on each forward and "
        "backward, so that a large model fits in little memory"
    )

    def inject(self, model: nn.Module, options: QLoRAOptions) -> None:
        linears = dict(find_targets(model, "all-linear"))
        originals = list(linears.values()) + [module for _, module in lora_targets(model, options)]
        quantization = options.model_dump(include={"block_size", "double_quant", "constants_block_size"})
        inject_lora_layers(model, options, QLoRALinear, **quantization)
        for name, linear in linears.items():  # the layers without LoRA are quantised too
            if not isinstance(model.get_submodule(name), QLoRALinear):
                replace_module(model, name, NF4Linear(linear, **quantization))
        for linear in dict.fromkeys(originals):
            _park_off_accelerator(model, linear)

    def expected_trainable(self, model: nn.Module, options: QLoRAOptions) -> int:
        return lora_parameter_count(model, options)

    def total_count(self, model: nn.Module, parameters: int) -> int:
        return parameters + sum(m.quantized_numel for m in model.modules() if isinstance(m, NF4Linear))
