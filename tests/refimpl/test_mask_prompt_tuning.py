"""Mask prompt tuning: the encoder sees the prompts exactly at the blank patches and CLIP's tokens
elsewhere."""

from __future__ import annotations

import torch

import refimpl

from .conftest import tiny_batch


def encoder_inputs(model, batch):
    seen = []
    vision = model.clip.vision_model
    hook = vision.pre_layrnorm.register_forward_hook(lambda module, args, output: seen.append(args[0]))
    with torch.no_grad():
        model(**batch)
    hook.remove()
    return seen[0][:, 1:]


def test_blank_patches_carry_the_prompts_and_kept_patches_clips_tokens(fresh):
    batch = tiny_batch("clip_region")
    model = refimpl.apply(fresh("clip_region"), "mask_prompt_tuning", depth=2)
    with torch.no_grad():
        model.mask_prompts.prompts.normal_()
    tokens, base_tokens = encoder_inputs(model, batch), encoder_inputs(fresh("clip_region"), batch)
    blank = batch["region_mask"].flatten(1) == 0
    assert blank.any() and (~blank).any()
    torch.testing.assert_close(tokens[blank], model.mask_prompts.prompts[0].expand_as(tokens)[blank])
    torch.testing.assert_close(tokens[~blank], base_tokens[~blank], rtol=0, atol=0)
    assert refimpl.trainable_parameters(model)[0] == 2 * 16 * 32


def test_without_a_region_the_image_is_left_alone(fresh):
    batch = {k: v for k, v in tiny_batch("clip_region").items() if k != "region_mask"}
    model = refimpl.apply(fresh("clip_region"), "mask_prompt_tuning")
    with torch.no_grad():
        model.mask_prompts.prompts.normal_()
        torch.testing.assert_close(
            model(**batch).logits, fresh("clip_region")(**batch).logits, rtol=0, atol=0
        )
