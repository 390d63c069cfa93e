"""ViT-Adapter: spatial priors reach the ViT only through the injectors, whose γ starts at zero."""

from __future__ import annotations

import pytest
import torch

import refimpl


def test_the_spatial_prior_has_three_scales_of_tokens(fresh, batch_for):
    model = refimpl.apply(fresh("vit"), "vit_adapter")
    with torch.no_grad():
        model(pixel_values=batch_for("vit")["pixel_values"])
    assert model.vit_adapter.spatial.shape == (4, 4 * 4 + 2 * 2 + 1 * 1, 32)  # 1/4, 1/8, 1/16 of 16 pixels


def test_with_gamma_open_the_image_reaches_the_vit_through_the_injectors(fresh, batch_for):
    model = refimpl.apply(fresh("vit"), "vit_adapter")
    pixels = batch_for("vit")["pixel_values"]
    with torch.no_grad():
        base = model(pixel_values=pixels).logits
        model.vit_adapter.injectors[1].gamma.fill_(1.0)
        opened = model(pixel_values=pixels).logits
        model.vit_adapter.extractors[0].ffn[2].weight.zero_()  # the extractor's output feeds injector 1
        model.vit_adapter.extractors[0].ffn[2].bias.zero_()
        without_ffn = model(pixel_values=pixels).logits
    assert not torch.allclose(opened, base) and not torch.allclose(without_ffn, opened)


def test_one_injector_per_group_and_no_extractor_after_the_last(fresh):
    model = refimpl.apply(fresh("vit", layers=4), "vit_adapter", interactions=2)
    assert len(model.vit_adapter.injectors) == 2 and len(model.vit_adapter.extractors) == 1
    with pytest.raises(refimpl.RefimplError, match="interactions"):
        refimpl.apply(fresh("vit", layers=4), "vit_adapter", interactions=3)
