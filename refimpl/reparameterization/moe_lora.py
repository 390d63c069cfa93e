"""MoE-LoRA with Riemannian preconditioning — Sun, Wang, Feng, Zhang, Zhu, Tang, "A Stronger Mixture of Low-Rank
Experts for Fine-Tuning Foundation Models", ICML 2025 (catalogue: moe-lora-riemannian).

    h = W0 x + Σ_i g_i(x) · (alpha / r) B_i A_i x,   g = renormalised top-k of softmax(W_g x)
    before each optimiser step:  ∇A_i ← (B_iᵀB_i + δI)⁻¹ ∇A_i,   ∇B_i ← ∇B_i (A_iA_iᵀ + δI)⁻¹

Trainable: per targeted linear layer, `num_experts` LoRA experts (A_i r × in, B_i out × r; B_i = 0 at init, so the
output starts at the base model's) and the router W_g (num_experts × in, no bias).

The paper's two ingredients:
- the Riemannian (scaled-GD) preconditioner of each expert's factors, applied to the gradients by the method's
  training callback (`refimpl.training_callback(model)`, which the task loop calls: a
  `RiemannianPreconditioner(model, delta)` whose `step()` runs between `loss.backward()` and `optimizer.step()`);
  it works with any optimiser, as the paper does with SGD and AdamW;
- gate rescaling: the gate g_i also scales the gradient reaching expert i, which distorts the preconditioned step,
  so the backward pass sends √g_i instead of g_i to the expert (the forward value stays g_i · E_i, and the router
  still gets E_i). Option `gate_rescaled_backward` (on by default) turns it on.

Choices: 4 experts with top-2 routing by default (ours); all experts are computed densely and masked, which is exact
but does not show the saving of sparse dispatch. Not mergeable: the mixture depends on the input through the router.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from ..core.api import replace_module
from ..core.errors import RefimplError
from ..core.layers import AdapterLayer, new_parameter
from ..core.registry import Method, TrainingCallback, register
from ..core.targeting import linear_dims
from .lora import LoRALinear, LoRAOptions, lora_targets


class MoELoRAOptions(LoRAOptions):  # r, alpha, dropout and target_modules apply to each expert
    num_experts: int = Field(4, gt=0, description="LoRA experts per layer")
    top_k: int = Field(2, gt=0, description="experts mixed per token (gates renormalised over them)")
    gate_rescaled_backward: bool = Field(True, description="send √g instead of g to the experts' gradients")
    preconditioner_delta: float | None = Field(
        1e-2, gt=0, description="δ of the Riemannian preconditioner (ours); None trains without it"
    )

    @model_validator(mode="after")
    def _top_k_fits(self) -> MoELoRAOptions:
        if self.top_k > self.num_experts:
            raise ValueError(f"top_k ({self.top_k}) must not exceed num_experts ({self.num_experts})")
        return self


class MoELoRALinear(AdapterLayer):
    def __init__(self, base: nn.Module, options: MoELoRAOptions) -> None:
        super().__init__()
        self.base = base
        self.in_features, self.out_features = linear_dims(base)
        experts, r = options.num_experts, options.r
        self.scaling = options.alpha / r
        self.top_k = options.top_k
        self.gate_rescaled_backward = options.gate_rescaled_backward
        # Each expert's A initialised like a LoRA A (fan-in = in_features), then stacked.
        stacked = new_parameter(experts * r, self.in_features, like=base.weight, init="kaiming")
        self.lora_A = nn.Parameter(stacked.detach().view(experts, r, self.in_features))
        self.lora_B = new_parameter(experts, self.out_features, r, like=base.weight, init="zeros")
        self.router = new_parameter(experts, self.in_features, like=base.weight, init="kaiming")
        self.dropout = nn.Dropout(options.dropout) if options.dropout > 0 else nn.Identity()

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        """(..., num_experts): softmax router probabilities kept for the top-k experts and renormalised."""
        probabilities = F.softmax(F.linear(x, self.router.to(x.dtype)), dim=-1)
        kept = torch.zeros_like(probabilities).scatter_(
            -1, probabilities.topk(self.top_k, dim=-1).indices, 1.0
        )
        selected = probabilities * kept
        return selected / selected.sum(dim=-1, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gates = self.gates(x).unsqueeze(-1)  # (..., E, 1)
        down = torch.einsum("...i,eri->...er", self.dropout(x), self.lora_A.to(x.dtype))
        experts = torch.einsum("...er,eor->...eo", down, self.lora_B.to(x.dtype)) * self.scaling
        if self.gate_rescaled_backward:
            # value g·E; gradient √g to the expert and E to the gate
            root = gates.detach().sqrt()
            mixed = root * experts + (gates - root) * experts.detach()
        else:
            mixed = gates * experts
        return self.base(x) + mixed.sum(dim=-2)


class RiemannianPreconditioner:
    """Rescales the gradients of every low-rank pair (A, B) in place; call `step()` after `loss.backward()` and
    before `optimizer.step()`. Works on MoE-LoRA experts (batched over experts) and on plain LoRA layers.

    ∇A ← (BᵀB + δI)⁻¹ ∇A,   ∇B ← ∇B (AAᵀ + δI)⁻¹   (δ > 0 keeps the r × r systems solvable while B = 0)."""

    def __init__(self, model: nn.Module, delta: float = 1e-2) -> None:
        if delta <= 0:
            raise RefimplError(f"RiemannianPreconditioner: delta must be > 0, got {delta}")
        self.delta = delta
        self.pairs = [
            (m.lora_A, m.lora_B)
            for m in model.modules()
            if isinstance(m, MoELoRALinear | LoRALinear) and m.lora_A.requires_grad and m.lora_B.requires_grad
        ]
        if not self.pairs:
            raise RefimplError(
                "RiemannianPreconditioner: the model has no trainable LoRA or MoE-LoRA factors"
            )

    @torch.no_grad()
    def step(self) -> None:
        for a, b in self.pairs:
            if a.grad is None or b.grad is None:
                continue
            a32, b32 = a.detach().float(), b.detach().float()
            identity = torch.eye(a.shape[-2], device=a.device)
            b_gram = b32.transpose(-1, -2) @ b32 + self.delta * identity  # (…, r, r)
            a_gram = a32 @ a32.transpose(-1, -2) + self.delta * identity
            grad_a = torch.linalg.solve(b_gram, a.grad.float())
            grad_b = torch.linalg.solve(a_gram, b.grad.float().transpose(-1, -2)).transpose(
                -1, -2
            )  # grams symmetric
            a.grad.copy_(grad_a)
            b.grad.copy_(grad_b)


@register
class MoELoRA(Method):
    name = "moe_lora"
    category = "reparameterization"
    foundation_models = ("LLM",)
    papers = ("moe-lora-riemannian",)
    summary = (
        "A routed mixture of LoRA experts per layer, trained with gate-rescaled Riemannian preconditioning."
    )
    update_rule = (
        "h = W0 x + Σ_i g_i(x) (alpha/r) B_i A_i x;  ∇A_i ← (B_iᵀB_i+δI)⁻¹∇A_i,  ∇B_i ← ∇B_i(A_iA_iᵀ+δI)⁻¹"
    )
    trainable = (
        "lora_A (E × r × in), lora_B (E × out × r) and the router (E × in) of each targeted linear layer"
    )
    identity_at_init = True
    Options = MoELoRAOptions

    def inject(self, model: nn.Module, options: MoELoRAOptions) -> None:
        for name, module in lora_targets(model, options):
            replace_module(model, name, MoELoRALinear(module, options))

    def training_callback(self, model: nn.Module, options: MoELoRAOptions) -> TrainingCallback | None:
        if options.preconditioner_delta is None:
            return None
        preconditioner = RiemannianPreconditioner(model, options.preconditioner_delta)
        return TrainingCallback(after_backward=preconditioner.step)

    def expected_trainable(self, model: nn.Module, options: MoELoRAOptions) -> int:
        return sum(
            options.num_experts * (options.r * (in_features + out_features) + in_features)
            for in_features, out_features in (linear_dims(m) for _, m in lora_targets(model, options))
        )
