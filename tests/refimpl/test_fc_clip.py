"""FC-CLIP: at inference the class scores are the geometric ensemble of the in-vocabulary classifier and the
mask-pooled frozen CLIP features (β for unseen classes); in training only the in-vocabulary classifier
acts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import refimpl

from .conftest import tiny_batch


def test_inference_is_the_geometric_ensemble_and_training_uses_in_vocabulary_scores(fresh):
    batch = tiny_batch("clip_dense")
    model = refimpl.apply(fresh("clip_dense"), "fc_clip", unseen_classes=(2,))
    base = fresh("clip_dense")
    with torch.no_grad():
        frozen = base(batch["pixel_values"])
        masks, class_embeds = model.fc_clip_head(frozen.patch_states)
        scale = base.clip.logit_scale.exp()
        p_in = F.softmax(scale * F.normalize(class_embeds, dim=-1) @ frozen.text_embeds.T, dim=-1)
        weights = torch.sigmoid(masks)
        pooled = F.normalize(weights @ frozen.image_embeds / weights.sum(-1, keepdim=True), dim=-1)
        p_out = F.softmax(scale * pooled @ frozen.text_embeds.T, dim=-1)
        exponent = torch.tensor([0.4, 0.4, 0.8])
        for p, train in ((p_in ** (1 - exponent) * p_out**exponent, False), (p_in, True)):
            expected = torch.log(torch.einsum("bqc,bqp->bcp", p, weights) + 1e-6).unflatten(2, (4, 4))
            model.train(train)
            torch.testing.assert_close(model(batch["pixel_values"]).logits, expected, rtol=1e-5, atol=1e-5)


def test_unseen_classes_must_exist(fresh):
    with pytest.raises(refimpl.RefimplError, match="unseen_classes"):
        refimpl.apply(fresh("clip_dense"), "fc_clip", unseen_classes=(3,))
