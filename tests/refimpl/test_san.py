"""SAN: the side network's biases steer only the [SOS] tokens; CLIP's own tokens run exactly as without them."""

from __future__ import annotations

import torch

import refimpl


def clip_tail(model, pixels, biases):
    """CLIP's hidden states after its biased last layer, with one [SOS] token per query appended."""
    vision, side = model.clip.vision_model, model.decoder
    hidden = vision.pre_layrnorm(vision.embeddings(pixels))
    hidden = vision.encoder.layers[0](hidden, None)
    hidden = torch.cat([hidden, hidden[:, :1].expand(-1, biases.shape[2], -1)], dim=1)
    return vision.encoder.layers[1](hidden, side.attention_mask(biases, hidden.dtype))


def test_clip_tokens_ignore_the_sos_tokens_and_each_sos_token_sees_only_its_own_bias(fresh, batch_for):
    model = refimpl.apply(fresh("clip_seg"), "san")
    pixels = batch_for("clip_seg")["pixel_values"]
    biases = torch.randn(4, 4, 4, 16)  # (batch, heads, queries, patches)
    changed = biases.clone()
    changed[:, :, 0] += torch.randn(4, 4, 16)
    with torch.no_grad():
        base = model.clip.vision_model(pixel_values=pixels).last_hidden_state
        first, second = clip_tail(model, pixels, biases), clip_tail(model, pixels, changed)
    torch.testing.assert_close(first[:, :17], base, rtol=0, atol=1e-5)
    torch.testing.assert_close(second[:, :17], first[:, :17], rtol=0, atol=0)
    torch.testing.assert_close(second[:, 18:], first[:, 18:], rtol=0, atol=0)  # queries 1..3
    assert not torch.allclose(second[:, 17], first[:, 17])


def test_the_segmentation_is_a_normalised_mixture_of_mask_proposals(fresh, batch_for):
    model = refimpl.apply(fresh("clip_seg"), "san")
    with torch.no_grad():
        logits = model(pixel_values=batch_for("clip_seg")["pixel_values"]).logits
    assert logits.shape == (4, 3, 4, 4)
    torch.testing.assert_close(logits.exp().sum(1), torch.ones(4, 4, 4))


def test_only_the_side_network_trains(fresh):
    model = refimpl.apply(fresh("clip_seg"), "san")
    trainable = {name.split(".")[0] for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"decoder"}
