"""V-PETL (our reading): PATT, a parallel attention over input-generated keys/values, plus FFN adapters."""

from __future__ import annotations

import torch

import refimpl
from refimpl.hybrid.v_petl import ParallelAttention


def test_patt_adds_s_times_the_output_projected_attention_over_generated_keys_and_values(fresh):
    model = refimpl.apply(fresh("vit"), "v_petl", patt_rank=4, patt_scale=0.5)
    wrapped = model.vit.layers[0].attention
    assert isinstance(wrapped, ParallelAttention)
    torch.nn.init.normal_(wrapped.value_up)
    x = torch.randn(2, 17, 32)
    with torch.no_grad():
        base = wrapped.base
        split = lambda t: t.view(2, 17, 4, 8).transpose(1, 2)
        q = split(base.q_proj(x))
        k = split(x @ wrapped.key_down.T @ wrapped.key_up.T)
        v = split(x @ wrapped.value_down.T @ wrapped.value_up.T)
        attended = (
            (torch.softmax(q @ k.transpose(-1, -2) / 8**0.5, dim=-1) @ v).transpose(1, 2).reshape(2, 17, 32)
        )
        expected = base(x)[0] + 0.5 * attended @ base.o_proj.weight.T
        torch.testing.assert_close(wrapped(x)[0], expected, rtol=1e-5, atol=1e-5)


def test_every_block_gets_patt_beside_attention_and_an_adapter_after_its_ffn(fresh):
    model = refimpl.apply(fresh("vit", layers=3), "v_petl")
    kinds = {name: type(module).__name__ for name, module in model.named_modules()}
    assert [n for n, k in kinds.items() if k == "ParallelAttention"] == [
        f"vit.layers.{i}.attention" for i in range(3)
    ]
    assert [n for n, k in kinds.items() if k == "SerialAdapter"] == [
        f"vit.layers.{i}.mlp.fc2" for i in range(3)
    ]
