"""LoRA-FA's promise: A stays exactly at its random initialisation while B learns, r · out parameters per layer."""

from __future__ import annotations

import torch

import refimpl
from refimpl.reparameterization.lora import LoRALinear

from .conftest import tiny_batch, train_steps


def test_a_stays_at_its_random_init_while_b_learns(fresh):
    model = refimpl.apply(fresh("llama"), "lora_fa", r=4)
    layers = [m for m in model.modules() if isinstance(m, LoRALinear)]
    initial_a = [layer.lora_A.clone() for layer in layers]
    train_steps(model, tiny_batch("llama"), steps=3)
    for layer, a in zip(layers, initial_a, strict=True):
        assert torch.count_nonzero(a) > 0 and torch.equal(layer.lora_A, a)
        assert torch.count_nonzero(layer.lora_B) > 0


def test_trainable_count_is_r_times_out_per_layer(fresh):
    model = refimpl.apply(fresh("llama"), "lora_fa", r=4)
    # tiny llama: q_proj 32 -> 32, v_proj 32 -> 16 (two key-value heads of 8), two blocks
    assert refimpl.trainable_parameters(model)[0] == 2 * 4 * (32 + 16)
