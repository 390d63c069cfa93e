"""VP: one learned border of pixels added to every image; the image's interior is left as it is."""

from __future__ import annotations

import pytest
import torch

import refimpl


def test_the_prompt_is_added_on_the_border_only_and_the_model_sees_x_plus_v(fresh, batch_for):
    pixels = batch_for("vit")["pixel_values"]
    model = refimpl.apply(fresh("vit"), "vp", prompt_size=3)
    prompt = model.visual_prompt()[0]
    assert (
        torch.count_nonzero(prompt[:, 3:-3, 3:-3]) == 0 and torch.count_nonzero(prompt[:, :3]) == 3 * 3 * 16
    )
    with torch.no_grad():
        expected = fresh("vit")(pixel_values=pixels + prompt).logits
        torch.testing.assert_close(model(pixel_values=pixels).logits, expected)


def test_a_border_wider_than_half_the_image_is_refused(fresh):
    with pytest.raises(refimpl.RefimplError, match="does not fit"):
        refimpl.apply(fresh("vit"), "vp", prompt_size=8)
