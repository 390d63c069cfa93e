"""AutoFreeze (Liu et al.): blocks freeze front to back once their gradient norms stop changing."""

from __future__ import annotations

import torch

import refimpl
from refimpl.models import tiny_bert
from refimpl.selective.autofreeze import AutoFreezeCallback, blocks_to_freeze
from refimpl.tasks.base import training_step

from .conftest import tiny_batch


def test_a_block_freezes_only_after_every_block_before_it():
    # Block 1 changes least, but block 0 is above the median: nothing may freeze yet.
    assert blocks_to_freeze([0.5, 0.01, 0.3, 0.4], frozen=0, percentile=50) == 0
    assert blocks_to_freeze([0.02, 0.01, 0.3, 0.4], frozen=0, percentile=50) == 2
    assert blocks_to_freeze([0.0, 0.9, 0.01, 0.02], frozen=1, percentile=50) == 1
    assert blocks_to_freeze([0.1, 0.1, 0.1], frozen=0, percentile=100) == 2  # the last block always trains


def test_training_with_the_callback_freezes_a_prefix_of_blocks_that_then_stays_bit_identical():
    model = refimpl.apply(tiny_bert(layers=4), "autofreeze")
    blocks = model.bert.encoder.layer
    callback = AutoFreezeCallback(model, interval=2, percentile=100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    batch, history, snapshots = tiny_batch("bert"), [], {}
    model.train()
    for _ in range(8):
        optimizer.zero_grad()
        model(**batch).loss.backward()
        frozen = callback.step()
        optimizer.step()
        history.append(frozen)
        for index in range(frozen):
            snapshots.setdefault(index, [p.detach().clone() for p in blocks[index].parameters()])
    assert (
        history == sorted(history) and history[-1] == 3
    )  # frozen at the second check; the last block trains
    assert [all(not p.requires_grad for p in block.parameters()) for block in blocks] == [
        True,
        True,
        True,
        False,
    ]
    for index, saved in snapshots.items():
        assert all(torch.equal(a, b) for a, b in zip(saved, blocks[index].parameters(), strict=True))


def test_the_task_loop_runs_the_schedule_as_the_methods_training_callback():
    model = refimpl.apply(tiny_bert(layers=4), "autofreeze", interval=2, percentile=100)
    step = training_step(model, lr=1e-3)
    for _ in range(4):  # the first check only records; the second freezes every block but the last
        step(tiny_batch("bert"))
    frozen = [all(not p.requires_grad for p in block.parameters()) for block in model.bert.encoder.layer]
    assert frozen == [True, True, True, False]


def test_methods_trained_by_their_optimiser_alone_have_no_training_callback():
    assert refimpl.training_callback(refimpl.apply(tiny_bert(), "lora")) is None
    assert refimpl.training_callback(tiny_bert()) is None
