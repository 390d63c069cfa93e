"""S4's promises: layers split in a spindle pattern, and each group gets exactly its own strategies."""

from __future__ import annotations

import pytest

import refimpl
from refimpl.core.layers import SerialAdapter
from refimpl.hybrid.s4 import layer_groups
from refimpl.models import tiny_bert
from refimpl.reparameterization.lora import LoRALinear


def test_spindle_grouping_gives_the_middle_groups_twice_the_layers_of_the_ends():
    assert layer_groups(12, (1, 2, 2, 1)) == [[0, 1], [2, 3, 4, 5], [6, 7, 8, 9], [10, 11]]
    assert layer_groups(6, (1, 2, 2, 1)) == [[0], [1, 2], [3, 4], [5]]
    assert layer_groups(2, (1, 2, 2, 1)) == [[], [0], [1], []]


def test_each_group_is_adapted_with_its_own_strategies():
    model = refimpl.apply(
        tiny_bert(layers=6),
        "s4",
        group_strategies=[["lora"], ["adapter"], ["adapter", "lora"], ["bitfit"]],
    )
    blocks = model.bert.encoder.layer
    has_lora = [isinstance(block.attention.self.query, LoRALinear) for block in blocks]
    has_adapter = [isinstance(block.output.dense, SerialAdapter) for block in blocks]
    trains_biases = [block.intermediate.dense.bias.requires_grad for block in blocks]
    assert has_lora == [True, False, False, True, True, False]
    assert has_adapter == [False, True, True, True, True, False]
    assert trains_biases == [False, False, False, False, False, True]


def test_a_strategy_list_per_group_is_required():
    with pytest.raises(refimpl.RefimplError, match="group_strategies has 2 groups, group_weights 4"):
        refimpl.apply(tiny_bert(), "s4", group_strategies=[["lora"], ["adapter"]])
    with pytest.raises(refimpl.RefimplError, match="group_strategies"):
        refimpl.apply(tiny_bert(), "s4", group_strategies=[["lora"], ["dropout"], [], []])
