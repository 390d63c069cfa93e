"""ControlNet: the zero convolutions keep the base output at initialisation, yet they receive gradient; one step
later the gradient reaches the trainable copy of the encoder, and one more lets the condition image through."""

from __future__ import annotations

import torch

import refimpl
from refimpl.models import TINY_MODELS

from .conftest import tiny_batch, train_steps

SPEC = TINY_MODELS["unet_control"]


def test_output_is_the_base_output_at_init_and_the_zero_convolutions_learn_first(fresh):
    batch = tiny_batch("unet_control")
    with torch.no_grad():
        base = SPEC.output(fresh("unet_control"), batch)
    model = refimpl.apply(fresh("unet_control"), "controlnet")
    with torch.no_grad():
        torch.testing.assert_close(SPEC.output(model, batch), base, rtol=0, atol=0)
    branch = model.controlnet
    SPEC.loss(model, batch).backward()
    assert all(conv.weight.grad.abs().sum() > 0 for conv in branch.zero_convs)
    assert branch.mid_zero_conv.weight.grad.abs().sum() > 0
    assert all(p.grad.abs().sum() == 0 for p in branch.down_blocks.parameters())  # blocked by Z = 0


def test_the_copy_learns_after_one_step_and_the_condition_reaches_the_output_after_two(fresh):
    batch = tiny_batch("unet_control")
    model = refimpl.apply(fresh("unet_control"), "controlnet")
    train_steps(model, batch, steps=1, loss=SPEC.loss)
    model.zero_grad()
    SPEC.loss(model, batch).backward()
    assert sum(p.grad.abs().sum() for p in model.controlnet.down_blocks.parameters()) > 0
    train_steps(model, batch, steps=1, loss=SPEC.loss)  # E's zero-initialised last convolution moves now
    other = {**batch, "controlnet_cond": torch.rand_like(batch["controlnet_cond"])}
    with torch.no_grad():
        assert not torch.allclose(SPEC.output(model, batch), SPEC.output(model, other))
