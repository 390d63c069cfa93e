"""BAD-X: one bilingual adapter for the language pair runs under the task adapter in every block."""

from __future__ import annotations

import refimpl
from refimpl.additive.bottleneck_adapter import Bottleneck
from refimpl.additive.mad_x import AdapterStack


def test_one_bilingual_adapter_per_block_sits_under_the_task_adapter(fresh):
    model = refimpl.apply(fresh("llama"), "bad_x", language_pair="en-de")
    stacks = [module for module in model.modules() if isinstance(module, AdapterStack)]
    assert len(stacks) == model.config.num_hidden_layers
    for stack in stacks:
        assert list(stack.languages) == ["en-de"] and stack.active_language == "en-de"
        assert stack.active_task == "task"


def test_the_language_stage_trains_only_the_bilingual_and_invertible_adapters(fresh):
    model = refimpl.apply(fresh("bert"), "bad_x", train="language")
    trained = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trained and all(
        ".languages.en-sw." in n or n.startswith("mad_x_invertible.en-sw.") for n in trained
    )
    assert sum(isinstance(m, Bottleneck) for m in model.modules()) == 2 * 2 + 2  # BA + TA per block, F and G
