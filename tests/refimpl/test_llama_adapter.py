"""LLaMA-Adapter: the same trainable count as huggingface peft's AdaptionPrompt, and the same logits with
peft's prompts and (opened) gates copied in."""

from __future__ import annotations

import pytest
import torch

import refimpl

from .conftest import tiny_batch

peft = pytest.importorskip("peft")


def logits(model, batch):
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def test_llama_adapter_matches_peft_adaption_prompt(fresh):
    config = peft.AdaptionPromptConfig(adapter_len=4, adapter_layers=2, task_type="CAUSAL_LM")
    reference = peft.get_peft_model(fresh("llama"), config)
    ours = refimpl.apply(fresh("llama"), "llama_adapter", adapter_len=4, adapter_layers=2)
    assert (
        refimpl.trainable_parameters(ours)[0]
        == reference.get_nb_trainable_parameters()[0]
        == 2 * (4 * 32 + 1)
    )
    ours_by_name = dict(ours.named_parameters())
    with torch.no_grad():
        for name, tensor in reference.named_parameters():
            if tensor.requires_grad:
                if name.endswith("adaption_gate"):
                    tensor.fill_(0.7)  # zero gates would make equal logits prove nothing
                ours_by_name[name.removeprefix("base_model.model.")].copy_(tensor)
    batch = tiny_batch("llama")
    expected = logits(reference, batch)
    assert (expected - logits(fresh("llama"), batch)).abs().max() > 1e-3
    torch.testing.assert_close(logits(ours, batch), expected, rtol=0, atol=1e-5)


def test_prompts_reach_only_the_top_layers(fresh):
    model = refimpl.apply(fresh("llava"), "llama_adapter", adapter_len=3, adapter_layers=1)
    prompts = [name for name, p in model.named_parameters() if p.requires_grad]
    assert prompts == [
        "model.language_model.layers.1.self_attn.adaption_prompt",
        "model.language_model.layers.1.self_attn.adaption_gate",
    ]
    with pytest.raises(refimpl.RefimplError, match="adapter_layers"):
        refimpl.apply(fresh("llama"), "llama_adapter", adapter_layers=3)
