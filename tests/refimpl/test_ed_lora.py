"""ED-LoRA's promises: each cross-attention layer reads its own learned concept embedding in place of the concept
token, and gradient fusion gives one weight per layer that reproduces every concept's layer outputs on its own
inputs (relative error below 1e-4 when the concepts' inputs span separate subspaces, as distinct concept tokens
roughly do) and is the least-squares optimum otherwise."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import refimpl
from refimpl.core.layers import DeltaLinear
from refimpl.models import TINY_MODELS
from refimpl.reparameterization.ed_lora import cross_attention_layers, gradient_fusion

from .conftest import tiny_batch

SPEC = TINY_MODELS["unet"]
CROSS_KV = ["attn2.to_k", "attn2.to_v"]


def delta_layers(model):
    return {name: m for name, m in model.named_modules() if isinstance(m, DeltaLinear)}


def with_weight(layer, weight, x):
    """The layer's output on x with its weight replaced (its bias kept)."""
    return F.linear(x, weight, layer.base.bias)


def layer_inputs(model, inputs):
    """{layer name: its input rows (n × in)} during one forward pass."""
    captured = {}
    handles = [
        layer.register_forward_hook(lambda _m, args, _o, name=name: captured.__setitem__(name, args[0]))
        for name, layer in delta_layers(model).items()
    ]
    with torch.no_grad():
        model(**inputs)
    for handle in handles:
        handle.remove()
    return {name: x.reshape(-1, x.shape[-1]) for name, x in captured.items()}


def concept(fresh, basis=None, seed=0, **options):
    """A 'trained' ED-LoRA concept: LoRA B and the embeddings moved off their start, and a batch of its inputs;
    with `basis` (k × 32), its text states and embeddings lie in that subspace."""
    model = refimpl.apply(fresh("unet"), "ed_lora", **options)
    inputs = SPEC.inputs(tiny_batch("unet", seed=seed))
    torch.manual_seed(seed)  # after building the model, which seeds its own weights
    with torch.no_grad():
        for layer in delta_layers(model).values():
            layer.lora_A.normal_(std=0.3)
            layer.lora_B.normal_(std=0.3)
        if basis is not None:
            table = model.concept_embeddings.weight
            table.copy_(torch.randn(table.shape[0], basis.shape[0]) @ basis)
            states = inputs["encoder_hidden_states"]
            inputs["encoder_hidden_states"] = torch.randn(*states.shape[:2], basis.shape[0]) @ basis
    return model, inputs


def test_each_cross_attention_layer_reads_its_own_embedding_in_place_of_the_concept_token(fresh):
    model = refimpl.apply(fresh("unet"), "ed_lora", concept_position=2)
    assert model.concept_embeddings.weight.shape == (len(cross_attention_layers(model)), 32) == (4, 32)
    batch = tiny_batch("unet")
    changed = {**batch, "encoder_hidden_states": batch["encoder_hidden_states"].clone()}
    changed["encoder_hidden_states"][:, 2] = 5.0  # the concept row is replaced: its input value cannot matter
    torch.testing.assert_close(SPEC.output(model, changed), SPEC.output(model, batch), rtol=0, atol=0)
    changed["encoder_hidden_states"][:, 3] = 5.0  # any other text row still does
    assert not torch.allclose(SPEC.output(model, changed), SPEC.output(model, batch))


def test_fused_weights_reproduce_each_concepts_layer_outputs_on_its_own_inputs(fresh):
    bases = torch.linalg.qr(torch.randn(32, 32))[0].T  # orthonormal rows: 8-dimensional subspaces per concept
    concepts = [concept(fresh, bases[8 * i : 8 * (i + 1)], seed=i, target_modules=CROSS_KV) for i in range(3)]
    base = fresh("unet")
    fused = gradient_fusion(base, [m for m, _ in concepts], [inputs for _, inputs in concepts])
    assert len(fused) == 4 * 2
    for model, inputs in concepts:
        for name, x in layer_inputs(model, inputs).items():
            layer = delta_layers(model)[name]
            concept_output = layer(x)
            fused_output = with_weight(layer, fused[f"{name}.weight"], x)
            assert (fused_output - concept_output).norm() / concept_output.norm() < 1e-4
    base.load_state_dict(fused, strict=False)  # the fused weights drop into the base UNet by name


def test_fusion_is_the_least_squares_optimum_when_concepts_overlap(fresh):
    concepts = [concept(fresh, seed=i) for i in range(2)]  # full-rank image features in every attention layer
    fused = gradient_fusion(fresh("unet"), [m for m, _ in concepts], [inputs for _, inputs in concepts])
    captured = [layer_inputs(model, inputs) for model, inputs in concepts]
    for name in fused:
        layer_name = name.removesuffix(".weight")
        layers = [delta_layers(model)[layer_name] for model, _ in concepts]
        inputs = [x[layer_name] for x in captured]

        def residual(weight, layers=layers, inputs=inputs):
            return sum(
                ((with_weight(layer, weight, x) - layer(x)) ** 2).sum()
                for layer, x in zip(layers, inputs, strict=True)
            )

        averaged = layers[0].base.weight + sum(layer.delta_weight() for layer in layers) / len(layers)
        own = [layer.base.weight + layer.delta_weight() for layer in layers]
        assert residual(fused[name]) < residual(averaged) * (1 + 1e-5)
        assert residual(fused[name]) < min(residual(weight) for weight in own)


def test_fusion_refuses_concepts_that_adapt_different_layers(fresh):
    first, inputs = concept(fresh, target_modules=CROSS_KV)
    second, _ = concept(fresh)
    with pytest.raises(refimpl.RefimplError, match="other layers"):
        gradient_fusion(fresh("unet"), [first, second], [inputs, inputs])
