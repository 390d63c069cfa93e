"""UniPELT's promises: every submodule sits behind its own input-dependent gate in every layer, and a closed gate
silences its submodule."""

from __future__ import annotations

import torch

import refimpl
from refimpl.hybrid.unipelt import GatedBottleneck, GatedLoRALinear
from refimpl.models import tiny_bert

X = torch.randn(2, 5, 32, generator=torch.Generator().manual_seed(0))


def adapted():
    model = refimpl.apply(tiny_bert(), "unipelt")
    for module in model.modules():  # move the zero-initialised LoRA update off zero
        if isinstance(module, GatedLoRALinear):
            torch.nn.init.normal_(module.lora_B)
    return model


def close(gate: torch.nn.Linear) -> None:
    with torch.no_grad():
        gate.weight.zero_()
        gate.bias.fill_(-1e4)  # σ(-1e4) = 0


def test_every_layer_has_a_lora_gate_shared_by_query_and_value_an_adapter_gate_and_a_prefix_gate():
    model = adapted()
    for block in model.bert.encoder.layer:
        assert block.attention.self.query.gate is block.attention.self.value.gate
        assert isinstance(block.output.dense.adapter, GatedBottleneck)
    assert len(model.unipelt_prefix.gates) == 2


def test_a_closed_gate_silences_lora_and_the_adapter():
    model = adapted()
    query = model.bert.encoder.layer[0].attention.self.query
    adapter = model.bert.encoder.layer[0].output.dense.adapter
    with torch.no_grad():
        assert not torch.allclose(query(X), query.base(X))
        assert torch.count_nonzero(adapter(X)) > 0
        close(query.gate)
        close(adapter.gate)
        torch.testing.assert_close(query(X), query.base(X), rtol=0, atol=0)
        assert torch.count_nonzero(adapter(X)) == 0


def test_the_prefix_is_scaled_per_example_by_the_mean_gate_over_its_tokens():
    prefix = adapted().unipelt_prefix
    with torch.no_grad():
        keys, values = prefix(0, X)
        plain_keys, _ = super(type(prefix), prefix).forward(0, X)
        gate = torch.sigmoid(prefix.gates[0](X)).mean(dim=1)  # (batch, 1)
    torch.testing.assert_close(keys, gate[:, :, None] * plain_keys)
    assert keys.shape == values.shape == (2, 10, 32)
    assert not torch.allclose(gate[0], gate[1])
