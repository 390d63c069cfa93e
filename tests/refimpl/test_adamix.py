"""AdaMix: random routes while training, a single averaged adapter at inference."""

from __future__ import annotations

import torch

import refimpl
from refimpl.additive.adamix import AdapterMixture, consistency_loss
from refimpl.core.layers import SerialAdapter

from .conftest import train_steps


def _logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def test_inference_equals_one_adapter_with_the_experts_averaged_weights(fresh, batch_for):
    batch = batch_for("gpt2")
    model = refimpl.apply(fresh("gpt2"), "adamix", num_experts=3)
    train_steps(model, batch, steps=3)  # the experts drift apart
    mixed = _logits(model, batch)
    for layer in [m for m in model.modules() if isinstance(m, SerialAdapter)]:
        assert isinstance(layer.adapter, AdapterMixture) and layer.adapter.down_weight.std(0).max() > 0
        layer.adapter = layer.adapter.averaged()
    torch.testing.assert_close(_logits(model, batch), mixed, rtol=0, atol=1e-6)


def test_training_routes_are_random_and_the_consistency_loss_compares_two_of_them(fresh, batch_for):
    batch = batch_for("bert")
    model = refimpl.apply(fresh("bert"), "adamix")
    torch.manual_seed(0)
    model.train()
    loss = consistency_loss(model, batch)
    assert loss > 0 and loss.requires_grad
    model.eval()
    assert consistency_loss(model, batch) == 0  # inference is deterministic
