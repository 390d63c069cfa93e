"""DiffFit — Xie et al., "DiffFit: Unlocking Transferability of Large Diffusion Models via Simple Parameter-Efficient
Fine-Tuning", ICCV 2023 (catalogue: difffit).

    x ← x + γ_a ⊙ Attn(Norm(x)),   x ← x + γ_f ⊙ FFN(Norm(x)),   γ = 1 at init;  b = b0 + Δb

Trainable: every bias term (as BitFit), the affine weights of the normalisation layers (LayerNorm, GroupNorm), the
class embedding where the denoiser has one, and new scale factors γ (initialised to 1, so the model starts exactly
as the base; one per channel, as in the diffusers port the catalogue links to) after the self-attention,
cross-attention and feed-forward branch of every transformer block. The paper fine-tunes DiT; here the blocks are
those of diffusers' UNet (the tiny UNet has no class embedding; one built with `num_class_embeds` trains its table
too).

Mergeable: yes. Each scaled branch ends in a linear projection (to_out.0 of the attention, ff.net.2 of the FFN)
before the residual add, so γ ⊙ (W h + b) = (diag(γ) W) h + γ ⊙ b: merging scales that projection's rows and bias
in place and unmerging divides them back (refused while some γ is 0, which division could not undo). The trained
biases and norms are base tensors changed in place, so they need no merging.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..core.api import replace_module
from ..core.errors import RefimplError
from ..core.layers import AdapterLayer, new_parameter
from ..core.registry import Method, MethodOptions, register
from ..core.targeting import find_targets, linear_dims

# The last projection of each residual branch of a diffusers transformer block.
BRANCH_OUTPUTS = ["attn1.to_out.0", "attn2.to_out.0", "ff.net.2"]
NORMS = (nn.LayerNorm, nn.GroupNorm)


class ScaledBranchOutput(AdapterLayer):
    """A branch's last linear layer with a learned per-channel scale on its output: γ ⊙ (W h + b)."""

    def __init__(self, base: nn.Linear) -> None:
        super().__init__()
        self.base = base
        self.gamma = new_parameter(base.out_features, like=base.weight, init="ones")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        return out if self.merged else out * self.gamma.to(out.dtype)

    @torch.no_grad()
    def merge(self) -> None:
        if self.merged:
            raise RefimplError("the adapter is already merged")
        if not torch.all(self.gamma != 0):
            raise RefimplError("difffit: a scale factor γ is 0, so merging it could not be undone")
        self._rescale(self.gamma)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if not self.merged:
            raise RefimplError("the adapter is not merged")
        self._rescale(1 / self.gamma)
        self.merged = False

    def _rescale(self, factor: torch.Tensor) -> None:
        self.base.weight.mul_(factor[:, None].to(self.base.weight.dtype))
        if self.base.bias is not None:
            self.base.bias.mul_(factor.to(self.base.bias.dtype))


def _class_embedding(model: nn.Module) -> nn.Module | None:
    table = getattr(model, "class_embedding", None)
    if table is not None and not isinstance(table, nn.Embedding):
        raise RefimplError(
            f"difffit: a {type(table).__name__} class embedding is not supported (only a table)"
        )
    return table


def _bias_size(module: nn.Module) -> int:
    if isinstance(module, nn.Linear):
        return module.out_features
    if isinstance(module, nn.Conv2d):
        return module.out_channels
    if isinstance(module, nn.GroupNorm):
        return module.num_channels
    if isinstance(module, nn.LayerNorm):
        return math.prod(module.normalized_shape)
    raise RefimplError(f"difffit: cannot size the bias of a {type(module).__name__}")


def _norm_weight_size(module: nn.Module) -> int:
    if module.weight is None:
        return 0
    return _bias_size(module)  # a norm's affine weight has its bias's shape


@register
class DiffFit(Method):
    name = "difffit"
    category = "hybrid"
    foundation_models = ("VGM",)
    papers = ("difffit",)
    summary = (
        "Train biases, norms and the class embedding, plus scale factors γ on each attention and FFN branch."
    )
    update_rule = "x ← x + γ ⊙ f(Norm(x)) for f = attention, FFN;  γ = 1 at init;  b = b0 + Δb"
    trainable = (
        "all biases, norm weights, the class embedding, and γ per channel after each attention and FFN"
    )
    mergeable = True
    identity_at_init = True
    model_types = ("unet",)
    Options = MethodOptions

    def inject(self, model: nn.Module, options: MethodOptions) -> None:
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.requires_grad_(True)
        for module in model.modules():
            if isinstance(module, NORMS) and module.weight is not None:
                module.weight.requires_grad_(True)
        if (table := _class_embedding(model)) is not None:
            table.weight.requires_grad_(True)
        for name, module in find_targets(model, BRANCH_OUTPUTS, types=(nn.Linear,)):
            replace_module(model, name, ScaledBranchOutput(module))

    def expected_trainable(self, model: nn.Module, options: MethodOptions) -> int:
        """Σ bias sizes + Σ norm widths + class table (classes × width) + Σ output width of each scaled branch."""
        biases = sum(_bias_size(m) for m in model.modules() if getattr(m, "bias", None) is not None)
        norms = sum(_norm_weight_size(m) for m in model.modules() if isinstance(m, NORMS))
        table = _class_embedding(model)
        classes = table.num_embeddings * table.embedding_dim if table is not None else 0
        scales = sum(linear_dims(m)[1] for _, m in find_targets(model, BRANCH_OUTPUTS, types=(nn.Linear,)))
        return biases + norms + classes + scales
