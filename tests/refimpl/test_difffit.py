"""DiffFit's promises: a scale factor γ (1 at init) on the output of every attention and FFN branch of the
denoiser's transformer blocks, trained with the biases, the norms and the class embedding; γ folds into the branch's
last projection, except where it is 0."""

from __future__ import annotations

import pytest
import torch

import refimpl
from refimpl.hybrid.difffit import ScaledBranchOutput
from refimpl.models import TINY_MODELS

from .conftest import tiny_batch

SPEC = TINY_MODELS["unet"]


def scaled_branches(model):
    return {name: m for name, m in model.named_modules() if isinstance(m, ScaledBranchOutput)}


def test_gamma_scales_each_attention_and_ffn_branch(fresh):
    model = refimpl.apply(fresh("unet"), "difffit")
    branches = scaled_branches(model)
    assert len(branches) == 3 * 4  # self-attention, cross-attention and FFN of 4 transformer blocks
    assert all(torch.equal(m.gamma, torch.ones_like(m.gamma)) for m in branches.values())
    with torch.no_grad():
        for branch in branches.values():
            branch.gamma.zero_()
    # γ = 0 removes exactly those branches: the same as zeroing their last projections in the base model.
    silenced = fresh("unet")
    with torch.no_grad():
        for name in branches:
            silenced.get_submodule(name).weight.zero_()
            silenced.get_submodule(name).bias.zero_()
    batch = tiny_batch("unet")
    torch.testing.assert_close(SPEC.output(model, batch), SPEC.output(silenced, batch), rtol=0, atol=1e-6)
    with pytest.raises(refimpl.RefimplError, match="γ is 0"):
        refimpl.merge(model)


def test_a_class_conditioned_unet_trains_its_class_embedding(fresh):
    from diffusers import UNet2DConditionModel

    model = UNet2DConditionModel.from_config(fresh("unet").config, num_class_embeds=10)
    method = refimpl.get_method("difffit")
    expected = method.expected_trainable(model, method.Options())
    without_classes = refimpl.trainable_parameters(refimpl.apply(fresh("unet"), "difffit"))[0]
    refimpl.apply(model, "difffit")
    # 10 classes × 128, the width of the time embedding the class embedding is added to
    assert refimpl.trainable_parameters(model)[0] == expected == without_classes + 10 * 128
    batch = tiny_batch("unet")
    batch["class_labels"] = torch.tensor([0, 3, 3, 7])
    SPEC.loss(model, batch).backward()
    assert (
        torch.count_nonzero(model.class_embedding.weight.grad.abs().sum(dim=1)) == 3
    )  # the three labels seen
