"""AdapterFusion: two stages, and an attention over the task adapters that sums to 1."""

from __future__ import annotations

import pytest
import torch

import refimpl
from refimpl.additive.adapter_common import activate
from refimpl.additive.adapter_fusion import FusedAdapters

from .conftest import train_steps


def _captured_fusion_inputs(model, batch) -> list[tuple[FusedAdapters, torch.Tensor, torch.Tensor]]:
    """(layer, sub-layer output h, fused output) of every fused block in one forward pass."""
    seen = []
    handles = [
        module.register_forward_hook(lambda m, a, out: seen.append((m, m.base(*a), out)))
        for module in model.modules()
        if isinstance(module, FusedAdapters)
    ]
    with torch.no_grad():
        model(input_ids=batch["input_ids"])
    for handle in handles:
        handle.remove()
    return seen


def test_fusion_weights_are_a_softmax_and_the_identity_value_fuses_convexly(fresh, batch_for):
    model = refimpl.apply(fresh("bert"), "adapter_fusion", tasks=["a", "b", "c"])
    for layer, h, fused in _captured_fusion_inputs(model, batch_for("bert")):
        z = layer.adapter_outputs(h)
        weights = layer.fusion.weights(h, z)
        assert weights.shape == (*h.shape[:-1], 3) and (weights >= 0).all()
        torch.testing.assert_close(weights.sum(-1), torch.ones(h.shape[:-1]))
        torch.testing.assert_close(fused, (weights.unsqueeze(-1) * z).sum(-2))
        assert (fused >= z.amin(-2) - 1e-6).all() and (fused <= z.amax(-2) + 1e-6).all()


def test_only_the_fusion_and_the_head_train_the_task_adapters_stay_frozen(fresh):
    model = refimpl.apply(fresh("gpt2"), "adapter_fusion")
    trained = {name.rsplit(".", 2)[-2] for name, p in model.named_parameters() if p.requires_grad}
    assert trained == {"query", "key", "value"}  # GPT-2's head is tied to the frozen embeddings


def test_stage_one_trains_each_task_adapter_alone_then_stage_two_freezes_them(fresh, batch_for):
    batch = batch_for("bert")
    model = refimpl.apply(
        fresh("bert"), "adapter_fusion", tasks=["a", "b"], train="adapters", active_task="a"
    )
    layer = next(m for m in model.modules() if isinstance(m, FusedAdapters))
    assert {n for n, p in layer.named_parameters() if p.requires_grad} == {
        "adapters.a.down.weight",
        "adapters.a.down.bias",
        "adapters.a.up.weight",
        "adapters.a.up.bias",
    }
    train_steps(model, batch, steps=2)
    activate(model, train="fusion")
    trained_a = layer.adapters["a"].up.weight.clone()
    train_steps(model, batch, steps=2)
    assert torch.equal(layer.adapters["a"].up.weight, trained_a)
    assert not any(p.requires_grad for p in layer.adapters.parameters())
    with pytest.raises(refimpl.RefimplError, match="'tasks' shapes the adapter"):
        activate(model, tasks=["a"])
