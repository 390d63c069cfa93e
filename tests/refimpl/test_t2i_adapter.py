"""T2I-Adapter: one feature per UNet scale, shaped like that down block's output, and the condition reaches the
output once the zero output convolutions have moved."""

from __future__ import annotations

import torch

import refimpl
from refimpl.models import TINY_MODELS
from refimpl.models.diffusion import LATENT_SIZE

from .conftest import tiny_batch, train_steps

SPEC = TINY_MODELS["unet_control"]


def test_there_is_one_feature_per_scale_with_the_down_blocks_width_and_side(fresh):
    model = refimpl.apply(fresh("unet_control"), "t2i_adapter", zero_output_convs=False)
    condition = tiny_batch("unet_control", batch=2)["controlnet_cond"]
    features = model.t2i_adapter(condition)
    widths = model.config.block_out_channels
    expected = [(2, w, LATENT_SIZE >> i, LATENT_SIZE >> i) for i, w in enumerate(widths)]
    assert [tuple(f.shape) for f in features] == expected
    assert all(f.abs().sum() > 0 for f in features)


def test_without_zero_output_convolutions_the_output_moves_at_once(fresh):
    batch = tiny_batch("unet_control")
    with torch.no_grad():
        base = SPEC.output(fresh("unet_control"), batch)
        plain = SPEC.output(
            refimpl.apply(fresh("unet_control"), "t2i_adapter", zero_output_convs=False), batch
        )
    assert not torch.allclose(plain, base)


def test_after_training_the_condition_image_changes_the_output(fresh):
    batch = tiny_batch("unet_control")
    model = refimpl.apply(fresh("unet_control"), "t2i_adapter")
    train_steps(model, batch, steps=2, loss=SPEC.loss)
    other = {**batch, "controlnet_cond": torch.rand_like(batch["controlnet_cond"])}
    with torch.no_grad():
        assert not torch.allclose(SPEC.output(model, batch), SPEC.output(model, other))
