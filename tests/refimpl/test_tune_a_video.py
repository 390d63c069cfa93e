"""Tune-A-Video: sparse-causal attention lets frame i see frames 0 and i-1 only; it tunes queries and the
temporal attention."""

from __future__ import annotations

import torch

import refimpl
from refimpl.models import TINY_MODELS, tiny_model

SPEC = TINY_MODELS["unet_video"]


def test_frame_i_attends_only_to_the_first_and_previous_frame():
    # The base temporal layers start at zero, so frames mix only through the sparse-causal attention.
    model = refimpl.apply(tiny_model("unet_video"), "tune_a_video")
    batch = SPEC.batch(size=1)
    changed = {**batch, "sample": batch["sample"].clone()}
    changed["sample"][:, :, 2] += 1.0
    with torch.no_grad():
        moved = (SPEC.output(model, changed) - SPEC.output(model, batch)).abs().amax(dim=(0, 1, 3, 4))
    assert moved[:2].max() == 0  # frames 0 and 1 never see frame 2
    assert moved[2] > 0 and moved[3] > 0  # frame 3 reads frame 2 as its previous frame


def test_sparse_causal_attention_changes_the_frames_after_the_first_only():
    batch = SPEC.batch(size=1)
    with torch.no_grad():
        base = SPEC.output(tiny_model("unet_video"), batch)
        tuned = SPEC.output(refimpl.apply(tiny_model("unet_video"), "tune_a_video"), batch)
    torch.testing.assert_close(tuned[:, :, 0], base[:, :, 0], rtol=0, atol=1e-6)
    assert not torch.allclose(tuned[:, :, 1:], base[:, :, 1:], atol=1e-4)


def test_only_queries_and_temporal_attention_are_tuned():
    model = refimpl.apply(tiny_model("unet_video"), "tune_a_video")
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable
    assert all(
        ".attn_temp." in name or name.endswith(("attn1.to_q.weight", "attn2.to_q.weight"))
        for name in trainable
    )
