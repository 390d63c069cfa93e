"""EVP: the image is shrunk and the learned prompt fills the freed border; training helpers from adversarial
optimisation (input diversity, gradient normalisation)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import refimpl
from refimpl.prompt.evp import normalize_prompt_gradient

from .conftest import tiny_batch


def seen_images(model, pixels):
    seen = []
    handle = model.vit.embeddings.patch_embeddings.register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    with torch.no_grad():
        model(pixel_values=pixels)
    handle.remove()
    return seen[0]


def test_the_border_holds_only_the_prompt_and_the_inside_the_whole_shrunk_image(fresh, batch_for):
    pixels = batch_for("vit")["pixel_values"]
    model = refimpl.apply(fresh("vit"), "evp", prompt_size=2)
    seen = seen_images(model, pixels)
    prompt = model.enhanced_visual_prompt()[0]
    shrunk = F.interpolate(pixels, size=(12, 12), mode="bilinear", align_corners=False)
    torch.testing.assert_close(seen[:, :, 2:-2, 2:-2], shrunk)
    torch.testing.assert_close(seen[:, :, :2], prompt[:, :2].expand(4, -1, -1, -1))


def test_gradient_normalisation_gives_the_prompt_a_unit_gradient(fresh, batch_for):
    model = refimpl.apply(fresh("vit"), "evp")
    model(**batch_for("vit")).loss.backward()
    assert model.enhanced_visual_prompt.values.grad.norm() > 0
    normalize_prompt_gradient(model)
    torch.testing.assert_close(model.enhanced_visual_prompt.values.grad.norm(), torch.tensor(1.0))


def test_input_diversity_randomises_training_forwards_only(fresh, batch_for):
    pixels = batch_for("vit")["pixel_values"]
    model = refimpl.apply(fresh("vit"), "evp", input_diversity=1.0)
    torch.manual_seed(0)
    model.train()
    trained = [seen_images(model, pixels) for _ in range(8)]
    assert any(not torch.equal(trained[0], other) for other in trained[1:])
    model.eval()
    assert torch.equal(seen_images(model, pixels), seen_images(model, pixels))


def test_gradient_normalisation_is_the_methods_training_callback(fresh):
    model = refimpl.apply(fresh("vit"), "evp")
    model(**tiny_batch("vit")).loss.backward()
    refimpl.training_callback(model).after_backward()
    assert torch.isclose(model.enhanced_visual_prompt.values.grad.norm(), torch.tensor(1.0))
