"""Q-Former: the LM's inputs at the image slots are the projected Q-Former outputs of the learned queries, and
only the bridge (queries, Q-Former, projection) trains — a small share of the whole model."""

from __future__ import annotations

import torch

import refimpl

from .conftest import tiny_batch


def test_the_lm_reads_the_projected_queries_as_a_soft_visual_prompt(fresh):
    model = refimpl.apply(fresh("blip2"), "qformer")
    batch = tiny_batch("blip2")
    seen = {}
    hook = model.language_model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.update(kwargs), with_kwargs=True
    )
    with torch.no_grad():
        model(**batch)
        image = model.vision_model(pixel_values=batch["pixel_values"]).last_hidden_state
        queries = model.query_tokens.expand(image.shape[0], -1, -1)
        bridged = model.qformer(query_embeds=queries, encoder_hidden_states=image).last_hidden_state
        expected = model.language_projection(bridged)
    hook.remove()
    torch.testing.assert_close(seen["inputs_embeds"][:, :4], expected, rtol=0, atol=1e-6)


def test_only_the_bridge_trains(fresh):
    model = refimpl.apply(fresh("blip2"), "qformer")
    trained = {name.split(".")[0] for name, p in model.named_parameters() if p.requires_grad}
    assert trained == {"query_tokens", "qformer", "language_projection"}
    bridge, total = refimpl.trainable_parameters(model)
    assert bridge == sum(p.numel() for n, p in model.named_parameters() if n.split(".")[0] in trained)
    assert 0.3 < bridge / total < 0.5  # tiny: as wide as the LM (the survey: 0.89%–3.35% at scale)
