"""DTL: the side network reads detached backbone features, so no gradient enters the backbone through it."""

from __future__ import annotations

import pytest
import torch

import refimpl
from refimpl.core.architectures import transformer_blocks


def test_the_side_network_reads_detached_features_and_late_add_back_spares_the_backbone(fresh, batch_for):
    model = fresh("vit")
    backbone_outputs: list[torch.Tensor] = []
    for block in transformer_blocks(model):  # registered first, so they see the backbone's own outputs
        block.register_forward_hook(lambda m, a, out: backbone_outputs.append(out))
    refimpl.apply(model, "dtl", add_from=1)  # add back after the last block only
    side = model.dtl_side_network
    torch.nn.init.normal_(side.B)
    batch = batch_for("vit")
    model.train()
    model(**batch).loss.backward()
    assert not any(out.requires_grad for out in backbone_outputs), "a backbone block would run backward"
    assert side.A.grad.abs().sum() > 0 and side.B.grad.abs().sum() > 0
    pixels = batch["pixel_values"].clone().requires_grad_(True)  # now the backbone's features carry a graph
    model(pixel_values=pixels)
    assert side.running.requires_grad
    assert torch.autograd.grad(side.running.sum(), pixels, allow_unused=True) == (None,)


def test_the_side_output_is_the_swish_of_the_accumulated_low_rank_reads(fresh, batch_for):
    model = refimpl.apply(fresh("vit"), "dtl", add_from=1, beta=2.0)
    side = model.dtl_side_network
    torch.nn.init.normal_(side.B)
    inputs = []
    for block in transformer_blocks(model):
        block.register_forward_pre_hook(lambda m, args: inputs.append(args[0]))
    last_output = []
    transformer_blocks(model)[1].register_forward_hook(lambda m, a, out: last_output.append(out))
    with torch.no_grad():
        model(pixel_values=batch_for("vit")["pixel_values"])
        h = sum(x @ side.A[i].T @ side.B[i].T for i, x in enumerate(inputs))
        side_added = last_output[0] - fresh("vit").vit.layers[1](inputs[1])
    torch.testing.assert_close(side_added, h * torch.sigmoid(2.0 * h), rtol=1e-5, atol=1e-5)


def test_add_from_must_name_a_block(fresh):
    with pytest.raises(refimpl.RefimplError, match="add_from"):
        refimpl.apply(fresh("vit"), "dtl", add_from=2)
