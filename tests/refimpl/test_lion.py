"""LION: equilibrium layers at the input and output of the frozen ViT."""

from __future__ import annotations

import torch

import refimpl
from refimpl.prompt.lion import PRUNABLE, ImplicitLayer, prune_implicit_layers


def test_the_state_is_a_fixed_point_of_the_implicit_equation_even_for_a_large_weight():
    layer = ImplicitLayer(hidden=32, state=8, iterations=60, like=torch.zeros(1))
    with torch.no_grad():
        layer.recurrent.mul_(1000)
        x = torch.randn(4, 5, 32)
        z = layer.equilibrium(x)
        weight = layer.contractive_weight()
        assert torch.linalg.matrix_norm(weight, ord=2) <= 0.9 + 1e-6
        residual = z - torch.tanh(z @ weight.T + x @ layer.injection.T + layer.bias)
    assert residual.abs().max() < 1e-4


def test_the_layers_sit_on_the_input_tokens_and_the_output_features(fresh, batch_for):
    pixels = batch_for("vit")["pixel_values"]
    model = refimpl.apply(fresh("vit"), "lion")
    torch.nn.init.normal_(model.implicit_prompts["output"].readout)
    with torch.no_grad():
        base = fresh("vit")
        hidden = base.vit(pixel_values=pixels).last_hidden_state
        expected = base.classifier(model.implicit_prompts["output"](hidden)[:, 0])
        torch.testing.assert_close(model(pixel_values=pixels).logits, expected)
        torch.nn.init.normal_(model.implicit_prompts["input"].readout)
        assert not torch.allclose(model(pixel_values=pixels).logits, expected)


def test_pruning_keeps_the_largest_weights_and_the_pruned_ones_stop_mattering(fresh, batch_for):
    pixels = batch_for("vit")["pixel_values"]
    model = refimpl.apply(fresh("vit"), "lion")
    before = refimpl.trainable_parameters(model)[0]
    layer = model.implicit_prompts["input"]
    torch.nn.init.normal_(layer.readout)
    pruned = prune_implicit_layers(model, sparsity=0.5)
    assert pruned == sum(round(getattr(layer, name).numel() * 0.5) for name in PRUNABLE) * 2
    assert refimpl.trainable_parameters(model)[0] == before - pruned
    kept = layer.injection.abs()[layer.injection_mask]
    assert kept.min() >= layer.injection.abs()[~layer.injection_mask].max()
    with torch.no_grad():
        output = model(pixel_values=pixels).logits
        layer.injection.masked_fill_(~layer.injection_mask, 100.0)
        torch.testing.assert_close(model(pixel_values=pixels).logits, output)
