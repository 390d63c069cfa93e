"""S4's promises: layers split in a spindle pattern, and each group gets exactly its own strategies — by default
the paper's G1 (A, L), G2 (A, P), G3 (A, P, B), G4 (P, B, L)."""

from __future__ import annotations

import pytest

import refimpl
from refimpl.core.architectures import architecture_of, named_blocks
from refimpl.core.layers import SerialAdapter
from refimpl.hybrid.s4 import layer_groups
from refimpl.models import tiny_bert, tiny_model
from refimpl.reparameterization.lora import LoRALinear

from .conftest import tiny_batch
from .test_prefix_tuning import key_rows

SPINDLE = (1, 2, 2, 1)


def test_spindle_grouping_gives_the_middle_groups_twice_the_layers_of_the_ends():
    assert layer_groups(12, SPINDLE) == [[0, 1], [2, 3, 4, 5], [6, 7, 8, 9], [10, 11]]
    assert layer_groups(6, SPINDLE) == [[0], [1, 2], [3, 4], [5]]  # MiniLM
    assert layer_groups(4, SPINDLE) == [[0], [1], [2], [3]]
    assert layer_groups(2, SPINDLE) == [[], [0], [1], []]  # too few layers for four groups: the middle ones


@pytest.mark.parametrize("layers", range(4, 25))
def test_from_four_layers_every_group_is_tuned_and_no_end_group_outgrows_its_neighbour(layers):
    groups = layer_groups(layers, SPINDLE)
    assert [layer for group in groups for layer in group] == list(range(layers))
    first, second, third, last = map(len, groups)
    assert min(first, last) >= 1 and first <= second and last <= third


def strategies_per_layer(model, model_type):
    """Which of A, P, B, L each block carries, read off the adapted model."""
    architecture = architecture_of(model)
    batch = tiny_batch(model_type)
    plain_rows = batch["input_ids"].shape[1]
    prefixed = [rows > plain_rows for rows in key_rows(model, batch)]
    found = []
    for block, has_prefix in zip(named_blocks(model)[1], prefixed, strict=True):
        marks = {
            "A": isinstance(block.get_submodule(architecture.ffn_output), SerialAdapter),
            "P": has_prefix,
            "B": block.get_submodule(
                architecture.attention_output
            ).bias.requires_grad,  # only BitFit trains it
            "L": isinstance(block.get_submodule(architecture.query), LoRALinear),
        }
        found.append("".join(mark for mark, present in marks.items() if present))
    return found


@pytest.mark.parametrize("model_type", ["bert", "gpt2"])
def test_by_default_each_group_gets_exactly_the_papers_strategies(model_type):
    model = refimpl.apply(tiny_model(model_type, layers=6), "s4")
    assert strategies_per_layer(model, model_type) == ["AL", "AP", "AP", "APB", "APB", "PBL"]


def test_each_group_is_adapted_with_the_strategies_it_is_given():
    model = refimpl.apply(
        tiny_bert(layers=6),
        "s4",
        group_strategies=[["lora"], ["prefix"], ["adapter", "lora"], ["bitfit"]],
    )
    assert strategies_per_layer(model, "bert") == ["L", "P", "P", "AL", "AL", "B"]


@pytest.mark.parametrize("model_type", ["bert", "gpt2", "llama"])
def test_six_layer_trainable_count_equals_the_closed_form(model_type):
    # The property suite checks two layers (G2, G3 only); six give every group, LoRA's included, its layers.
    s4 = refimpl.get_method("s4")
    expected = s4.expected_trainable(tiny_model(model_type, layers=6), s4.Options())
    model = refimpl.apply(tiny_model(model_type, layers=6), "s4")
    assert refimpl.trainable_parameters(model)[0] == expected


def test_a_strategy_list_per_group_is_required():
    with pytest.raises(refimpl.RefimplError, match="group_strategies has 2 groups, group_weights 4"):
        refimpl.apply(tiny_bert(), "s4", group_strategies=[["lora"], ["adapter"]])
    with pytest.raises(refimpl.RefimplError, match="group_strategies"):
        refimpl.apply(tiny_bert(), "s4", group_strategies=[["lora"], ["dropout"], [], []])
