"""Tip-Adapter: after building the cache from K shots per class, the training-free logits equal the cache
formula computed independently; Tip-Adapter-F trains exactly the keys."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import refimpl
from refimpl.additive.tip_adapter import build_cache
from refimpl.models.multimodal import CLASS_COUNT, IMAGE_SIZE

from .conftest import tiny_batch


def few_shot_set(shots: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    labels = torch.arange(CLASS_COUNT).repeat(shots)[torch.randperm(CLASS_COUNT * shots, generator=generator)]
    return torch.randn(labels.numel(), 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator), labels


def test_training_free_logits_equal_the_cache_formula(fresh):
    images, labels = few_shot_set(shots=2)
    model = refimpl.apply(fresh("clip_fewshot"), "tip_adapter", finetune_keys=False, alpha=1.5, beta=3.0)
    build_cache(model, images, labels)
    assert refimpl.trainable_parameters(model)[0] == 0
    clip = fresh("clip_fewshot")
    test_images = tiny_batch("clip_fewshot")["pixel_values"]
    with torch.no_grad():
        train_features = torch.stack([clip(image[None]).image_embeds[0] for image in images])
        zero_shot = clip(test_images)
        affinity = torch.exp(-3.0 * (1 - zero_shot.image_embeds @ train_features.T))
        expected = zero_shot.logits + 1.5 * affinity @ F.one_hot(labels, CLASS_COUNT).float()
        torch.testing.assert_close(model(test_images).logits, expected, rtol=1e-5, atol=1e-5)


def test_tip_adapter_f_trains_the_keys_and_the_cache_needs_k_shots_per_class(fresh):
    model = refimpl.apply(fresh("clip_fewshot"), "tip_adapter", shots=3)
    assert [name for name, p in model.named_parameters() if p.requires_grad] == ["tip_cache.keys"]
    assert refimpl.trainable_parameters(model)[0] == 3 * CLASS_COUNT * 16
    images, labels = few_shot_set(shots=2)
    with pytest.raises(refimpl.RefimplError, match="exactly 3 images"):
        build_cache(model, images, labels)
