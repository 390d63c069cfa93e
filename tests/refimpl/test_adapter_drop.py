"""AdapterDrop: the first n blocks run without adapters, exactly as in the base model."""

from __future__ import annotations

import torch

import refimpl
from refimpl.additive.adapter_drop import DroppableAdapter
from refimpl.core.architectures import transformer_blocks


def _block_outputs(model, batch) -> list[torch.Tensor]:
    outputs: list[torch.Tensor] = []
    handles = [b.register_forward_hook(lambda m, a, o: outputs.append(o)) for b in transformer_blocks(model)]
    model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    for handle in handles:
        handle.remove()
    return outputs


def test_dropped_blocks_have_no_adapter_and_compute_exactly_the_base_block(fresh, batch_for):
    batch = batch_for("llama")
    base = _block_outputs(fresh("llama", layers=3), batch)
    model = refimpl.apply(fresh("llama", layers=3), "adapter_drop", drop_first_n=2)
    blocks = transformer_blocks(model)
    assert [any(isinstance(m, DroppableAdapter) for m in block.modules()) for block in blocks] == [
        False,
        False,
        True,
    ]
    adapted = _block_outputs(model, batch)
    assert torch.equal(adapted[0], base[0]) and torch.equal(adapted[1], base[1])
    assert not torch.allclose(adapted[2], base[2])


def test_robust_dropping_draws_a_new_n_per_training_batch_and_uses_drop_first_n_at_inference(
    fresh, batch_for
):
    batch = batch_for("bert")
    model = refimpl.apply(fresh("bert"), "adapter_drop", robust=True, drop_first_n=1)
    first_block = [m for m in transformer_blocks(model)[0].modules() if isinstance(m, DroppableAdapter)]
    torch.manual_seed(0)
    model.train()
    dropped_per_batch = set()
    for _ in range(12):
        model(**batch)
        dropped_per_batch.add(first_block[0].dropped)
    assert dropped_per_batch == {True, False}
    model.eval()
    model(**batch)
    assert all(adapter.dropped for adapter in first_block)
