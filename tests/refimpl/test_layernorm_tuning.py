"""LayerNorm tuning on the tiny LLaVA: what peft's LN tuning trains for the same targets (the block norms, the
connector as a module to save), the same count, and the same logits with the same weights."""

from __future__ import annotations

import pytest
import torch

import refimpl
from refimpl.models import TINY_MODELS

from .conftest import tiny_batch

peft = pytest.importorskip("peft")


def peft_name_to_ours(name: str) -> str:
    name = name.removeprefix("base_model.model.")
    return name.replace(".ln_tuning_layers.default", "").replace(".modules_to_save.default", "")


def test_layernorm_tuning_matches_peft_ln_tuning(fresh):
    config = peft.LNTuningConfig(
        target_modules=["input_layernorm", "post_attention_layernorm"],
        modules_to_save=["multi_modal_projector"],
    )
    reference = peft.get_peft_model(fresh("llava"), config)
    ours = refimpl.apply(fresh("llava"), "layernorm_tuning")
    trained = {name: p for name, p in reference.named_parameters() if p.requires_grad}
    assert (
        refimpl.trainable_parameters(ours)[0]
        == sum(p.numel() for p in trained.values())
        == 2 * 2 * 32 + 2 * 32 * 33
    )
    ours_by_name = dict(ours.named_parameters())
    assert {peft_name_to_ours(name) for name in trained} == {
        n for n, p in ours_by_name.items() if p.requires_grad
    }
    with torch.no_grad():
        for name, tensor in trained.items():
            tensor.add_(
                torch.randn_like(tensor) * 0.5
            )  # move off the base weights, or equal logits prove nothing
            ours_by_name[peft_name_to_ours(name)].copy_(tensor)
    batch = tiny_batch("llava")
    spec = TINY_MODELS["llava"]
    with torch.no_grad():
        expected = spec.output(reference, batch)
        assert (expected - spec.output(fresh("llava"), batch)).abs().max() > 1e-3
        torch.testing.assert_close(spec.output(ours, batch), expected, rtol=0, atol=1e-5)


def test_norms_alone_leave_the_connector_frozen(fresh):
    model = refimpl.apply(fresh("blip2"), "layernorm_tuning", train_connector=False)
    trained = [name for name, p in model.named_parameters() if p.requires_grad]
    assert len(trained) == 4 and all("layernorm" in name for name in trained)
