"""ControlNeXt: cross normalisation gives the control feature the UNet feature's statistics, and the optional UNet
subset is trained with the control module."""

from __future__ import annotations

import torch

import refimpl
from refimpl.additive.controlnext import cross_normalise
from refimpl.models import TINY_MODELS

from .conftest import tiny_batch

SPEC = TINY_MODELS["unet_control"]


def test_cross_normalisation_matches_the_feature_mean_and_std_per_sample():
    generator = torch.Generator().manual_seed(0)
    control = 5 * torch.randn(3, 8, 4, 4, generator=generator) + 2
    feature = 0.1 * torch.randn(3, 8, 4, 4, generator=generator) - 1
    aligned = cross_normalise(control, feature)
    dims = (1, 2, 3)
    torch.testing.assert_close(aligned.mean(dims), feature.mean(dims))
    torch.testing.assert_close(aligned.std(dims), feature.std(dims))
    centred = (control - control.mean(dims, keepdim=True)).flatten(1)
    assert torch.allclose(
        torch.cosine_similarity(aligned.flatten(1) - aligned.flatten(1).mean(1, True), centred), torch.ones(3)
    )


def test_the_chosen_unet_parameters_train_with_the_control_module(fresh):
    model = fresh("unet_control")
    chosen = {n for n, _ in model.named_parameters() if "attn2.to_k" in n}
    refimpl.apply(model, "controlnext", unet_trainable=["attn2.to_k"])
    SPEC.loss(model, tiny_batch("unet_control")).backward()
    with_gradient = {n for n, p in model.named_parameters() if p.grad is not None}
    assert chosen and chosen <= with_gradient
    assert {n for n in with_gradient - chosen if not n.startswith("controlnext.")} == set()
    assert all(p.grad.abs().sum() > 0 for p in model.controlnext.parameters())
