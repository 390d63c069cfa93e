"""The properties every registered method must have, checked on every tiny model it supports.

Read as a specification: each test name states one promise of refimpl.apply / merge / save_adapter.
"""

from __future__ import annotations

import pytest
import torch

import refimpl
from refimpl.core.api import adapter_tensors, state_of
from refimpl.models import TINY_MODELS

from .conftest import tiny_batch, train_steps

CASES = [(info.name, model_type) for info in refimpl.methods() for model_type in info.model_types]
IDS = [f"{name}-{model_type}" for name, model_type in CASES]
pytestmark = pytest.mark.parametrize(("method", "model_type"), CASES, ids=IDS)


def outputs(model, model_type, batch):
    with torch.no_grad():
        return TINY_MODELS[model_type].output(model, batch)


def train(model, model_type, steps):
    return train_steps(model, tiny_batch(model_type), steps=steps, loss=TINY_MODELS[model_type].loss)


def adapted(fresh, method, model_type):
    return refimpl.apply(fresh(model_type), method)


def test_only_the_methods_parameters_receive_gradients(fresh, method, model_type):
    model = adapted(fresh, method, model_type)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable, "the method trains nothing"
    assert trainable <= set(adapter_tensors(model)), "a trainable parameter is missing from the adapter file"
    model.train()
    TINY_MODELS[model_type].loss(model, tiny_batch(model_type)).backward()
    with_gradient = {name for name, p in model.named_parameters() if p.grad is not None}
    assert with_gradient == trainable


def test_base_weights_are_bit_identical_after_training(fresh, method, model_type):
    model = adapted(fresh, method, model_type)
    state = state_of(model)
    frozen = {
        name: t.clone()
        for name, t in model.state_dict(keep_vars=True).items()
        if not t.requires_grad and state.is_base(t)
    }
    train(model, model_type, steps=3)
    after = model.state_dict(keep_vars=True)
    changed = [name for name, before in frozen.items() if not torch.equal(before, after[name])]
    assert not changed


def test_output_is_unchanged_at_initialisation_where_the_paper_zero_initialises(fresh, method, model_type):
    if not refimpl.get_method(method).identity_at_init:
        pytest.skip(f"{method} does not start at the base model's output")
    batch = tiny_batch(model_type)
    base = outputs(fresh(model_type), model_type, batch)
    torch.testing.assert_close(
        outputs(adapted(fresh, method, model_type), model_type, batch), base, rtol=0, atol=1e-6
    )


def test_a_few_optimiser_steps_lower_the_loss(fresh, method, model_type):
    model = adapted(fresh, method, model_type)
    losses = train(model, model_type, steps=12)
    assert losses[-1] < losses[0]


def test_merged_equals_unmerged_and_unmerge_restores_the_base(fresh, method, model_type):
    model = adapted(fresh, method, model_type)
    if not refimpl.get_method(method).mergeable:
        with pytest.raises(refimpl.RefimplError):
            refimpl.merge(model)
        return
    batch = tiny_batch(model_type)
    train(model, model_type, steps=3)  # move away from the zero update, or merging proves nothing
    base_weights = {
        n: t.clone() for n, t in model.state_dict(keep_vars=True).items() if state_of(model).is_base(t)
    }
    unmerged = outputs(model, model_type, batch)
    refimpl.merge(model)
    torch.testing.assert_close(outputs(model, model_type, batch), unmerged, rtol=0, atol=1e-5)
    refimpl.unmerge(model)
    for name, weight in model.state_dict(keep_vars=True).items():
        if name in base_weights:
            torch.testing.assert_close(weight, base_weights[name], rtol=0, atol=1e-6)


def test_save_then_load_onto_a_fresh_model_reproduces_the_outputs(fresh, method, model_type, tmp_path):
    model = adapted(fresh, method, model_type)
    batch = tiny_batch(model_type)
    train(model, model_type, steps=3)
    refimpl.save_adapter(model, tmp_path)
    loaded = refimpl.load_adapter(fresh(model_type), tmp_path)
    assert torch.equal(outputs(loaded, model_type, batch), outputs(model, model_type, batch))


def test_trainable_count_equals_the_papers_closed_form(fresh, method, model_type):
    implementation = refimpl.get_method(method)
    model = fresh(model_type)
    expected = implementation.expected_trainable(model, implementation.Options())
    refimpl.apply(model, method)
    assert refimpl.trainable_parameters(model)[0] == expected


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_forward_runs_in_fp32_and_bf16(fresh, method, model_type, dtype):
    model = adapted(fresh, method, model_type).to(dtype)
    batch = {
        k: v.to(dtype) if torch.is_tensor(v) and v.is_floating_point() else v
        for k, v in tiny_batch(model_type).items()
    }
    result = outputs(model, model_type, batch)
    assert result.dtype == dtype and torch.isfinite(result).all()


def test_apply_twice_is_refused_and_remove_restores_the_base(fresh, method, model_type):
    batch = tiny_batch(model_type)
    model = fresh(model_type)
    base = outputs(model, model_type, batch)
    names = [name for name, _ in model.named_parameters()]
    refimpl.apply(model, method)
    with pytest.raises(refimpl.RefimplError, match="already adapted"):
        refimpl.apply(model, method)
    refimpl.remove(model)
    assert [name for name, _ in model.named_parameters()] == names
    assert all(p.requires_grad for p in model.parameters())
    torch.testing.assert_close(outputs(model, model_type, batch), base, rtol=0, atol=0)


def test_unknown_options_are_refused_by_name(fresh, method, model_type):
    with pytest.raises(refimpl.RefimplError, match="no_such_option"):
        refimpl.apply(fresh(model_type), method, no_such_option=1)
