"""MoE-LoRA's promises: top-k gates that sum to one, a gate-rescaled backward that sends √g instead of g to each
expert without changing the forward value or the router's gradient, and the Riemannian preconditioner's exact
r × r rescaling of each expert's gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import refimpl
from refimpl.reparameterization.moe_lora import MoELoRALinear, MoELoRAOptions, RiemannianPreconditioner

from .conftest import tiny_batch, train_steps


def expert_layer(seed: int = 0, **options) -> MoELoRALinear:
    torch.manual_seed(seed)
    layer = MoELoRALinear(nn.Linear(16, 8), MoELoRAOptions(r=2, num_experts=4, top_k=2, **options))
    with torch.no_grad():
        layer.lora_B.normal_()
    return layer


def test_each_token_mixes_its_top_k_experts_with_gates_summing_to_one():
    layer = expert_layer()
    x = torch.randn(3, 5, 16)
    gates = layer.gates(x)
    probabilities = torch.softmax(x @ layer.router.T, dim=-1)
    assert ((gates > 0).sum(dim=-1) == 2).all()
    torch.testing.assert_close(gates.sum(dim=-1), torch.ones(3, 5))
    chosen = gates > 0
    assert (
        probabilities[chosen].view(3, 5, 2).min(-1).values
        >= probabilities[~chosen].view(3, 5, 2).max(-1).values
    ).all()


def test_the_rescaled_backward_sends_root_g_to_the_experts_and_keeps_the_forward_and_the_router_gradient():
    x = torch.randn(1, 16)  # one token, so each expert's gradient is scaled by its own gate only
    results = {}
    for rescaled in (False, True):
        layer = expert_layer(gate_rescaled_backward=rescaled)
        out = layer(x)
        out.square().sum().backward()
        results[rescaled] = (
            out.detach(),
            layer.lora_B.grad.clone(),
            layer.router.grad.clone(),
            layer.gates(x)[0],
        )
    (plain_out, plain_b, plain_router, gates), (out, grad_b, grad_router, _) = results[False], results[True]
    torch.testing.assert_close(out, plain_out)
    torch.testing.assert_close(grad_router, plain_router)
    for expert, gate in enumerate(gates):
        if gate > 0:
            torch.testing.assert_close(grad_b[expert], plain_b[expert] / gate.sqrt(), rtol=1e-4, atol=1e-6)
        else:
            assert torch.count_nonzero(grad_b[expert]) == 0


def test_the_preconditioner_applies_the_damped_gram_inverses_per_expert(fresh):
    model = refimpl.apply(fresh("llama"), "moe_lora")
    model(**tiny_batch("llama")).loss.backward()
    layer = next(m for m in model.modules() if isinstance(m, MoELoRALinear))
    with torch.no_grad():
        layer.lora_B.add_(torch.randn_like(layer.lora_B))  # B = 0 at init would make one Gram trivially δI
    model.zero_grad()
    model(**tiny_batch("llama")).loss.backward()
    raw_a, raw_b = layer.lora_A.grad.clone(), layer.lora_B.grad.clone()
    RiemannianPreconditioner(model, delta=0.1).step()
    for e in range(layer.lora_A.shape[0]):
        a, b = layer.lora_A[e].detach().double(), layer.lora_B[e].detach().double()
        eye = torch.eye(a.shape[0], dtype=torch.float64)
        expected_a = torch.linalg.inv(b.T @ b + 0.1 * eye) @ raw_a[e].double()
        expected_b = raw_b[e].double() @ torch.linalg.inv(a @ a.T + 0.1 * eye)
        torch.testing.assert_close(layer.lora_A.grad[e].double(), expected_a, rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(layer.lora_B.grad[e].double(), expected_b, rtol=1e-4, atol=1e-7)


def test_the_preconditioner_needs_low_rank_factors_and_a_positive_delta(fresh):
    with pytest.raises(refimpl.RefimplError, match="LoRA"):
        RiemannianPreconditioner(refimpl.apply(fresh("bert"), "bitfit"))
    with pytest.raises(refimpl.RefimplError, match="delta"):
        RiemannianPreconditioner(refimpl.apply(fresh("bert"), "moe_lora"), delta=0)


def test_top_k_above_the_number_of_experts_is_refused(fresh):
    with pytest.raises(refimpl.RefimplError, match="top_k"):
        refimpl.apply(fresh("gpt2"), "moe_lora", num_experts=2, top_k=3)


def test_the_training_loop_preconditions_through_the_methods_callback(fresh):
    batch = tiny_batch("bert")
    trained = {}
    for delta in (1e-2, None):
        torch.manual_seed(0)
        model = refimpl.apply(fresh("bert"), "moe_lora", preconditioner_delta=delta)
        assert (refimpl.training_callback(model) is None) == (delta is None)
        train_steps(model, batch, steps=2)
        trained[delta] = torch.cat([p.detach().flatten() for p in model.parameters() if p.requires_grad])
    assert not torch.allclose(trained[1e-2], trained[None])
