"""CoOp: the class prompts become [BOS] v_1..v_M name_c [EOS]; only the contexts train, unified or per
class."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import refimpl
from refimpl.models.multimodal import CLASS_COUNT

from .conftest import tiny_batch


def test_a_context_equal_to_word_embeddings_reproduces_the_hand_written_prompt(fresh):
    words = torch.tensor([9, 17, 33, 4, 60])
    model = refimpl.apply(fresh("clip_fewshot"), "coop", n_ctx=5)
    handmade = fresh("clip_fewshot")
    with torch.no_grad():
        learned = model.text_features()
        model.coop_context.context.copy_(model.clip.text_model.embeddings.token_embedding.weight[words])
        expected = F.normalize(
            handmade.clip.get_text_features(input_ids=handmade.prompt_ids(words)).pooler_output, dim=-1
        )
        torch.testing.assert_close(model.text_features(), expected, rtol=0, atol=1e-6)
        assert (learned - expected).abs().max() > 1e-3  # the random initial context is not these words


def test_contexts_are_the_only_trainable_parameters(fresh):
    unified = refimpl.apply(fresh("clip_fewshot"), "coop", n_ctx=4)
    assert [n for n, p in unified.named_parameters() if p.requires_grad] == ["coop_context.context"]
    assert refimpl.trainable_parameters(unified)[0] == 4 * 32
    specific = refimpl.apply(fresh("clip_fewshot"), "coop", n_ctx=4, class_specific=True)
    assert refimpl.trainable_parameters(specific)[0] == CLASS_COUNT * 4 * 32
    with pytest.raises(refimpl.RefimplError, match="n_ctx"):
        refimpl.apply(fresh("clip_fewshot"), "coop", n_ctx=13)
    batch = tiny_batch("clip_fewshot")
    specific(**batch).loss.backward()
    assert specific.coop_context.context.grad.abs().sum(dim=(1, 2)).gt(0).all()


def test_other_text_is_encoded_as_before(fresh):
    caption = torch.tensor([[0, 40, 41, 42, 1, 2, 2, 2]])
    model = refimpl.apply(fresh("clip_fewshot"), "coop")
    with torch.no_grad():
        adapted = model.clip.get_text_features(input_ids=caption).pooler_output
        base = fresh("clip_fewshot").clip.get_text_features(input_ids=caption).pooler_output
    torch.testing.assert_close(adapted, base, rtol=0, atol=0)
