"""ILM-VP: a pixel prompt plus a source->target label mapping recomputed from the prompted
model's predictions."""

from __future__ import annotations

import pytest
import torch

import refimpl
from refimpl.prompt.ilm_vp import greedy_one_to_one, label_frequency, remap_labels


def test_the_greedy_mapping_takes_the_largest_entry_then_strikes_out_its_row_and_column():
    frequency = torch.tensor([[9, 8, 0], [7, 1, 0], [0, 6, 2], [0, 0, 5]])  # 4 source x 3 target labels
    # per-column argmax would send targets 0 and 1 both to source 0; one-to-one gives 1 the next best
    assert greedy_one_to_one(frequency).tolist() == [0, 2, 3]
    unique = torch.tensor([[0, 5, 1], [4, 0, 0], [1, 1, 7]])
    assert greedy_one_to_one(unique).tolist() == unique.argmax(0).tolist()


def test_remap_installs_the_mapping_of_the_prompted_models_frequency_matrix(fresh, batch_for):
    model = refimpl.apply(fresh("vit", num_labels=5), "ilm_vp", num_target_labels=3)
    batches = [batch_for("vit", seed=seed, batch=16) for seed in range(3)]
    frequency = label_frequency(model, batches)
    assert frequency.shape == (5, 3) and frequency.sum() == 48
    mapping = remap_labels(model, batches)
    assert mapping.tolist() == greedy_one_to_one(frequency).tolist()
    assert model.label_mapping.source_of_target.tolist() == mapping.tolist()


def test_target_logits_are_the_mapped_source_logits_and_the_loss_uses_them(fresh, batch_for):
    batch = batch_for("vit")
    model = refimpl.apply(fresh("vit", num_labels=5), "ilm_vp", num_target_labels=3)
    model.label_mapping.source_of_target.copy_(torch.tensor([4, 0, 2]))
    with torch.no_grad():
        output = model(**batch)
        model.label_mapping.active = False
        source = model(pixel_values=batch["pixel_values"]).logits
    torch.testing.assert_close(output.logits, source[:, [4, 0, 2]])
    torch.testing.assert_close(
        output.loss, torch.nn.functional.cross_entropy(source[:, [4, 0, 2]], batch["labels"])
    )


def test_more_target_than_source_labels_is_refused(fresh):
    with pytest.raises(refimpl.RefimplError, match="num_target_labels"):
        refimpl.apply(fresh("vit"), "ilm_vp", num_target_labels=4)


def test_an_adapter_file_carries_the_label_mapping(fresh, tmp_path):
    model = refimpl.apply(fresh("vit", num_labels=5), "ilm_vp", num_target_labels=3)
    model.label_mapping.source_of_target.copy_(torch.tensor([4, 0, 2]))
    refimpl.save_adapter(model, tmp_path)
    loaded = refimpl.load_adapter(fresh("vit", num_labels=5), tmp_path)
    assert loaded.label_mapping.source_of_target.tolist() == [4, 0, 2]
