"""I2V-Adapter: a zero-initialised cross-frame branch through which every frame reads the first frame only."""

from __future__ import annotations

import torch

import refimpl
from refimpl.models import TINY_MODELS, tiny_model

SPEC = TINY_MODELS["unet_i2v"]


def frame_changes(model, frame):
    """How much each output frame moves when one input frame is perturbed."""
    batch = SPEC.batch(size=1)
    changed = {**batch, "sample": batch["sample"].clone()}
    changed["sample"][:, :, frame] += 1.0
    with torch.no_grad():
        return (SPEC.output(model, changed) - SPEC.output(model, batch)).abs().amax(dim=(0, 1, 3, 4))


def opened_adapter():
    """An adapted model whose zero output projections have moved, as after training."""
    model = refimpl.apply(tiny_model("unet_i2v"), "i2v_adapter")
    for branch in model.i2v_adapter:
        torch.nn.init.normal_(branch.out_weight, std=0.1)
    return model


def test_the_zero_initialised_branch_leaves_the_video_model_unchanged():
    batch = SPEC.batch(size=2)
    with torch.no_grad():
        base = SPEC.output(tiny_model("unet_i2v"), batch)
        adapted = SPEC.output(refimpl.apply(tiny_model("unet_i2v"), "i2v_adapter"), batch)
    torch.testing.assert_close(adapted, base, rtol=0, atol=1e-6)


def test_once_trained_every_frame_reads_the_first_frame():
    assert frame_changes(tiny_model("unet_i2v"), frame=0)[1:].max() == 0  # frames are independent at base
    assert (frame_changes(opened_adapter(), frame=0)[1:] > 0).all()


def test_frames_other_than_the_first_are_not_read_across():
    moved = frame_changes(opened_adapter(), frame=2)
    assert moved[2] > 0 and moved[[0, 1, 3]].max() == 0


def test_the_given_first_frame_is_left_out_of_the_loss():
    model = tiny_model("unet_i2v")
    batch = SPEC.batch(size=1)
    wrong_first_frame = {**batch, "noise": batch["noise"].clone()}
    wrong_first_frame["noise"][:, :, 0] += 100.0
    with torch.no_grad():
        assert SPEC.loss(model, wrong_first_frame) == SPEC.loss(model, batch)
