"""The tiny video UNet is the image UNet inflated over frames: at init it denoises each frame on its own."""

from __future__ import annotations

import torch

from refimpl.models import TINY_MODELS, tiny_model
from refimpl.models.video import inflated_blocks

SPEC = TINY_MODELS["unet_video"]


def test_the_inflated_model_is_the_image_model_frame_by_frame_at_init():
    video, image = tiny_model("unet_video"), tiny_model("unet")
    batch = SPEC.batch(size=2)
    frames = batch["sample"].shape[2]
    with torch.no_grad():
        out = SPEC.output(video, batch)
        for f in range(frames):
            alone = image(
                batch["sample"][:, :, f],
                batch["timestep"],
                encoder_hidden_states=batch["encoder_hidden_states"],
            ).sample
            torch.testing.assert_close(out[:, :, f], alone, rtol=0, atol=1e-5)


def test_every_transformer_block_has_a_temporal_layer_that_mixes_frames_once_trained():
    video = tiny_model("unet_video")
    assert len(list(inflated_blocks(video))) == 4
    for _, block in inflated_blocks(video):
        torch.nn.init.normal_(block.attn_temp.to_out[0].weight, std=0.1)
    batch = SPEC.batch(size=1)
    changed = {**batch, "sample": batch["sample"].clone()}
    changed["sample"][:, :, 0] += 1.0
    with torch.no_grad():
        before, after = SPEC.output(video, batch), SPEC.output(video, changed)
    assert not torch.allclose(before[:, :, 1:], after[:, :, 1:], atol=1e-4)
