"""CLIP-Adapter: the adapted image feature is α·A(f) + (1 − α)·f with A the two-layer ReLU MLP, and α = 0 is
CLIP."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import refimpl

from .conftest import tiny_batch


def test_adapted_feature_is_the_residual_blend(fresh):
    batch = tiny_batch("clip_fewshot")
    model = refimpl.apply(fresh("clip_fewshot"), "clip_adapter", residual_ratio=0.3)
    adapter = model.clip.visual_projection
    with torch.no_grad():
        pooled = model.clip.vision_model(pixel_values=batch["pixel_values"]).pooler_output
        f = adapter.base(pooled)
        hidden = F.relu(f @ adapter.adapter[0].weight.T)
        blended = 0.3 * F.relu(hidden @ adapter.adapter[2].weight.T) + 0.7 * f
        logits = model.clip.logit_scale.exp() * F.normalize(blended, dim=-1) @ model.text_features().T
        torch.testing.assert_close(model(batch["pixel_values"]).logits, logits, rtol=0, atol=1e-5)
    assert refimpl.trainable_parameters(model)[0] == 2 * 16 * 4


def test_ratio_zero_is_zero_shot_clip_and_both_adapts_two_features(fresh):
    batch = tiny_batch("clip_fewshot")
    with torch.no_grad():
        base = fresh("clip_fewshot")(batch["pixel_values"]).logits
        unchanged = refimpl.apply(fresh("clip_fewshot"), "clip_adapter", residual_ratio=0.0)
        torch.testing.assert_close(unchanged(batch["pixel_values"]).logits, base, rtol=0, atol=0)
    both = refimpl.apply(fresh("clip_fewshot"), "clip_adapter", features="both")
    assert refimpl.trainable_parameters(both)[0] == 2 * 2 * 16 * 4
