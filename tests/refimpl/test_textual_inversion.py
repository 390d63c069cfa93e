"""Textual Inversion: the output depends on the placeholder row only through v*, and starting v* from the
descriptor's embedding reproduces the prompt that used the descriptor."""

from __future__ import annotations

import pytest
import torch

import refimpl
from refimpl.models import TINY_MODELS

from .conftest import tiny_batch

SPEC = TINY_MODELS["unet"]


def outputs(model, batch):
    with torch.no_grad():
        return SPEC.output(model, batch)


def with_row(batch, position, row):
    states = batch["encoder_hidden_states"].clone()
    states[:, position] = row
    return {**batch, "encoder_hidden_states": states}


def test_v_star_replaces_the_placeholder_row_and_nothing_else(fresh):
    batch = tiny_batch("unet")
    model = refimpl.apply(fresh("unet"), "textual_inversion", placeholder_position=2)
    reference = outputs(model, batch)
    assert torch.equal(outputs(model, with_row(batch, 2, torch.randn(32))), reference)
    assert not torch.allclose(outputs(model, with_row(batch, 3, torch.randn(32))), reference)


def test_starting_from_the_descriptor_embedding_reproduces_the_descriptor_prompt(fresh):
    descriptor = torch.randn(32, generator=torch.Generator().manual_seed(1))
    batch = with_row(tiny_batch("unet"), 1, descriptor)
    base = outputs(fresh("unet"), batch)
    model = refimpl.apply(fresh("unet"), "textual_inversion", initializer=descriptor.tolist())
    torch.testing.assert_close(outputs(model, batch), base, rtol=0, atol=1e-6)


def test_an_initializer_of_the_wrong_width_is_refused(fresh):
    with pytest.raises(refimpl.RefimplError, match="initializer"):
        refimpl.apply(fresh("unet"), "textual_inversion", initializer=[0.0] * 5)
