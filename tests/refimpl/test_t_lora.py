"""T-LoRA adapts the temporal attention only: merging it changes no spatial (appearance) weight."""

from __future__ import annotations

import torch

import refimpl
from refimpl.models import TINY_MODELS, tiny_model
from refimpl.reparameterization.lora import LoRALinear

from .conftest import train_steps

SPEC = TINY_MODELS["unet_video"]


def test_lora_sits_on_the_four_projections_of_every_temporal_attention_and_nowhere_else():
    model = refimpl.apply(tiny_model("unet_video"), "t_lora")
    adapted = [name for name, module in model.named_modules() if isinstance(module, LoRALinear)]
    assert len(adapted) == 4 * 4  # four inflated transformer blocks
    assert all(".attn_temp." in name for name in adapted)


def test_merging_a_trained_t_lora_changes_only_temporal_weights():
    model = refimpl.apply(tiny_model("unet_video"), "t_lora")
    before = {name: t.clone() for name, t in tiny_model("unet_video").state_dict().items()}
    train_steps(model, SPEC.batch(size=1), steps=2, loss=SPEC.loss)
    refimpl.merge(model)
    merged = {name.replace(".base.", "."): t for name, t in model.state_dict().items() if "lora_" not in name}
    changed = {name for name, weight in before.items() if not torch.equal(weight, merged[name])}
    assert changed and all(".attn_temp." in name for name in changed)
