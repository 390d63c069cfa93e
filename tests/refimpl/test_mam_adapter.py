"""MAM adapter's promises: a parallel adapter reads the FFN's input and adds s times its output to the FFN's,
and the prefix in the attention is what changes the model at the start (the adapter begins silent)."""

from __future__ import annotations

import torch

import refimpl
from refimpl.hybrid.mam_adapter import FFNParallelAdapter
from refimpl.models import tiny_bert

IDS = torch.randint(3, 128, (2, 8), generator=torch.Generator().manual_seed(0))


def test_the_parallel_adapter_adds_s_times_its_output_on_the_ffn_input():
    model = refimpl.apply(tiny_bert(), "mam_adapter", adapter_size=8, scaling=4.0)
    block = model.bert.encoder.layer[0]
    wrapper = block.output.dense
    assert isinstance(wrapper, FFNParallelAdapter)
    torch.nn.init.normal_(wrapper.adapter.up.weight)
    seen = {}
    block.intermediate.register_forward_pre_hook(lambda m, args: seen.update(x=args[0]))
    wrapper.register_forward_hook(lambda m, args, out: seen.update(hidden=args[0], out=out))
    with torch.no_grad():
        model(input_ids=IDS)
        expected = wrapper.base(seen["hidden"]) + 4.0 * wrapper.adapter(seen["x"])
    torch.testing.assert_close(seen["out"], expected)


def test_at_the_start_only_the_prefix_changes_the_output():
    base = tiny_bert()(input_ids=IDS).logits
    model = refimpl.apply(tiny_bert(), "mam_adapter", prefix_length=30)
    assert all(
        torch.count_nonzero(m.adapter.up.weight) == 0
        for m in model.modules()
        if isinstance(m, FFNParallelAdapter)
    )
    assert model.prefix_tuning.length == 30
    assert not torch.allclose(model(input_ids=IDS).logits, base)
