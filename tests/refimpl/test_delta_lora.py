"""Delta-LoRA's promise: after each step past K, W moves by λ times the change of (alpha/r)·BA; kept here in a
persistent ΔW_acc, which behaves exactly like updating W in place and travels with the adapter."""

from __future__ import annotations

import pytest
import torch

import refimpl
from refimpl.core.layers import weight_out_in
from refimpl.reparameterization.delta_lora import DeltaLoRALinear, DeltaLoRAUpdater

from .conftest import tiny_batch, train_steps


def layers_of(model):
    return {name: m for name, m in model.named_modules() if isinstance(m, DeltaLoRALinear)}


def train_with_updater(model, batch, steps, updater):
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        model(**batch).loss.backward()
        optimizer.step()
        updater.step()


def test_the_update_is_lambda_times_the_change_of_the_scaled_product(fresh):
    model = refimpl.apply(fresh("gpt2"), "delta_lora", r=4, alpha=8.0)
    updater = DeltaLoRAUpdater(model, lambda_=0.5, start_step=0)
    batch = tiny_batch("gpt2")
    train_with_updater(model, batch, steps=1, updater=updater)  # step t = 0 is not past K = 0: no update
    assert all(torch.count_nonzero(layer.accumulated_delta) == 0 for layer in layers_of(model).values())
    before = {name: 2.0 * layer.lora_B @ layer.lora_A for name, layer in layers_of(model).items()}
    train_with_updater(model, batch, steps=1, updater=updater)
    for name, layer in layers_of(model).items():
        change = 2.0 * layer.lora_B @ layer.lora_A - before[name]
        assert change.abs().max() > 0
        torch.testing.assert_close(layer.accumulated_delta, 0.5 * change, rtol=0, atol=1e-7)


def test_nothing_moves_until_step_k_is_passed(fresh):
    model = refimpl.apply(fresh("llama"), "delta_lora", start_step=3)
    updater = DeltaLoRAUpdater(model)
    assert (updater.lambda_, updater.start_step) == (2.0, 3)
    train_with_updater(model, tiny_batch("llama"), steps=4, updater=updater)
    assert all(torch.count_nonzero(layer.accumulated_delta) == 0 for layer in layers_of(model).values())
    train_with_updater(model, tiny_batch("llama"), steps=1, updater=updater)
    assert all(torch.count_nonzero(layer.accumulated_delta) > 0 for layer in layers_of(model).values())


def test_the_accumulated_delta_acts_as_an_in_place_update_of_w_and_is_saved(fresh, tmp_path):
    batch = tiny_batch("llama")
    model = refimpl.apply(fresh("llama"), "delta_lora", start_step=0)
    train_with_updater(model, batch, steps=4, updater=DeltaLoRAUpdater(model))
    model.eval()
    with torch.no_grad():
        ours = model(input_ids=batch["input_ids"]).logits
        in_place = refimpl.apply(fresh("llama"), "lora")  # the paper's form: W itself updated
        for name, layer in layers_of(model).items():
            target = in_place.get_submodule(name)
            weight_out_in(target.base).add_(layer.accumulated_delta)
            target.lora_A.copy_(layer.lora_A)
            target.lora_B.copy_(layer.lora_B)
        torch.testing.assert_close(in_place(input_ids=batch["input_ids"]).logits, ours, rtol=0, atol=1e-5)
    refimpl.save_adapter(model, tmp_path)
    loaded = refimpl.load_adapter(fresh("llama"), tmp_path)
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=batch["input_ids"]).logits, ours)


def test_the_updater_refuses_a_model_without_delta_lora_layers(fresh):
    model = refimpl.apply(fresh("gpt2"), "lora")
    with pytest.raises(refimpl.RefimplError, match="delta_lora"):
        DeltaLoRAUpdater(model)


def test_the_training_loop_moves_w_through_the_methods_callback(fresh):
    model = refimpl.apply(fresh("gpt2"), "delta_lora", start_step=0)
    train_steps(model, tiny_batch("gpt2"), steps=2)
    assert any(layer.accumulated_delta.abs().sum() > 0 for layer in layers_of(model).values())
