"""MAD-X: the coupling is exactly invertible, and swapping the language swaps only which adapter runs."""

from __future__ import annotations

import re

import pytest
import torch

import refimpl
from refimpl.additive.adapter_common import activate
from refimpl.additive.bottleneck_adapter import Bottleneck
from refimpl.additive.mad_x import InvertibleAdapter
from refimpl.core.api import state_of

from .conftest import tiny_batch


def test_the_inverse_of_the_coupling_reproduces_its_input():
    torch.manual_seed(0)
    coupling = InvertibleAdapter(32, 2, "relu", "near_identity", torch.empty(0))
    for parameter in coupling.parameters():
        torch.nn.init.normal_(parameter, std=0.5)  # far from the identity, so the check means something
    e = torch.randn(3, 7, 32)
    assert not torch.allclose(coupling(e), e, atol=1e-2)
    torch.testing.assert_close(coupling.inverse(coupling(e)), e, rtol=0, atol=1e-5)


def _running_adapters(model, batch) -> tuple[set[str], torch.Tensor]:
    """Names of the bottlenecks that computed something in one forward pass."""
    ran: set[str] = set()
    handles = [
        module.register_forward_hook(lambda m, a, o, name=name: ran.add(name))
        for name, module in model.named_modules()
        if isinstance(module, Bottleneck)
    ]
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"]).logits
    for handle in handles:
        handle.remove()
    return ran, logits


@pytest.mark.parametrize("model_type", ["bert", "gpt2"])
def test_switching_the_active_language_changes_only_which_language_adapter_runs(fresh, model_type):
    model = refimpl.apply(fresh(model_type), "mad_x", languages=["en", "sw"], active_language="en")
    batch = tiny_batch(model_type)
    ran_en, logits_en = _running_adapters(model, batch)
    activate(model, active_language="sw")
    ran_sw, logits_sw = _running_adapters(model, batch)

    def english(name: str) -> bool:
        return re.search(r"\.en(\.|$)", name) is not None

    def swap(names: set[str]) -> set[str]:
        return {re.sub(r"\.en(\.|$)", r".sw\1", name) for name in names}

    assert any(".tasks.task" in name for name in ran_en) and any(english(name) for name in ran_en)
    assert ran_sw == swap(ran_en) and not any(english(name) for name in ran_sw)
    assert not torch.allclose(logits_en, logits_sw)
    assert state_of(model).options.active_language == "sw"  # recorded for save_adapter
    activate(model, active_language="en")
    assert torch.equal(_running_adapters(model, batch)[1], logits_en)


def test_the_language_stage_trains_only_the_active_language_and_invertible_adapters(fresh):
    model = refimpl.apply(fresh("gpt2"), "mad_x", train="language", active_language="sw")
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".sw." in name for name in trainable)
    assert any(name.startswith("mad_x_invertible.sw.") for name in trainable)


def test_an_active_language_outside_the_stack_is_refused_by_name(fresh):
    with pytest.raises(refimpl.RefimplError, match="active_language 'de'"):
        refimpl.apply(fresh("bert"), "mad_x", languages=["en"], active_language="de")
