"""FacT: every slice of every layer's update shares the factors U and V; Tucker loads one shared core."""

from __future__ import annotations

import pytest
import torch

import refimpl
from refimpl.additive.fact import FactLinear


def adapted_with_random_factors(fresh, **options):
    model = refimpl.apply(fresh("vit"), "fact", **options)
    torch.manual_seed(1)
    for parameter in model.fact_factors.parameters():
        torch.nn.init.normal_(parameter)
    return model


def slices(model) -> list[torch.Tensor]:
    """All d × d slices of all layers' updates."""
    d = model.config.hidden_size
    layers = [m for m in model.modules() if isinstance(m, FactLinear)]
    return [block for m in layers for row in m.delta_weight().split(d) for block in row.split(d, dim=1)]


@pytest.mark.parametrize("form", ["tt", "tk"])
def test_all_slices_share_one_rank_r_column_and_row_space(fresh, form):
    model = adapted_with_random_factors(fresh, form=form, rank=3)
    blocks = slices(model)
    assert len(blocks) == 2 * (4 + 2 + 2)  # per block: q, k, v, o, and the 32×64 / 64×32 FFN matrices
    side_by_side, stacked = torch.cat(blocks, dim=1), torch.cat(blocks, dim=0)
    assert torch.linalg.matrix_rank(side_by_side) == 3 and torch.linalg.matrix_rank(stacked) == 3


def test_a_tucker_slice_is_the_core_loaded_by_its_column_of_p(fresh):
    model = adapted_with_random_factors(fresh, form="tk", rank=3, scale=0.5)
    f = model.fact_factors
    k = 5  # the sixth slice: layer 0's FFN input projection, its second block of output rows
    core = torch.einsum("oij,j->oi", f.C, f.P[:, k])
    torch.testing.assert_close(slices(model)[k], 0.5 * f.V @ core @ f.U)


def test_the_tucker_form_merges_exactly(fresh, batch_for):
    model = adapted_with_random_factors(fresh, form="tk")
    pixels = batch_for("vit")["pixel_values"]
    with torch.no_grad():
        unmerged = model(pixel_values=pixels).logits
        refimpl.merge(model)
        torch.testing.assert_close(model(pixel_values=pixels).logits, unmerged, rtol=0, atol=1e-4)
