"""VPT: prompt tokens after [CLS], at the first layer only (shallow) or fresh at every layer (deep)."""

from __future__ import annotations

import torch

import refimpl
from refimpl.core.vision import classifier_parameters


def layer_inputs(model, pixels):
    """The hidden states each block receives (after VPT's own pre-hooks, which were registered first)."""
    seen = []
    handles = [block.register_forward_pre_hook(lambda m, a: seen.append(a[0])) for block in model.vit.layers]
    with torch.no_grad():
        model(pixel_values=pixels)
    for handle in handles:
        handle.remove()
    return seen


def test_deep_prompts_count_layers_times_tokens_times_hidden(fresh):
    model = refimpl.apply(fresh("vit", layers=3), "vpt", variant="deep", num_tokens=5)
    head = sum(p.numel() for p in classifier_parameters(model))
    assert refimpl.trainable_parameters(model)[0] - head == 3 * 5 * 32
    assert model.visual_prompt_tokens.tokens.shape == (3, 5, 32)


def test_deep_replaces_the_previous_layers_prompt_outputs_with_its_own(fresh, batch_for):
    model = refimpl.apply(fresh("vit"), "vpt", variant="deep", num_tokens=4)
    inputs = layer_inputs(model, batch_for("vit")["pixel_values"])
    for index, hidden in enumerate(inputs):
        assert hidden.shape[1] == 1 + 4 + 16
        torch.testing.assert_close(hidden[:, 1:5], model.visual_prompt_tokens.tokens[index].expand(4, -1, -1))


def test_shallow_prompts_enter_once_and_flow_through_the_layers(fresh, batch_for):
    model = refimpl.apply(fresh("vit"), "vpt", variant="shallow", num_tokens=4)
    first, second = layer_inputs(model, batch_for("vit")["pixel_values"])
    torch.testing.assert_close(first[:, 1:5], model.visual_prompt_tokens.tokens[0].expand(4, -1, -1))
    assert second.shape[1] == 1 + 4 + 16
    assert not torch.allclose(second[:, 1:5], first[:, 1:5])
