"""LLaMA-Adapter V2: the image reaches the early prompts only (early fusion), and bias/scale wrap every LLM
linear."""

from __future__ import annotations

import torch

import refimpl

from .conftest import tiny_batch


def test_visual_features_enter_only_the_early_layer_prompts(fresh):
    model = refimpl.apply(fresh("llava"), "llama_adapter_v2")
    early, top = (layer.self_attn for layer in model.model.language_model.layers)
    assert top.offset is None
    connector = []
    hook = model.model.multi_modal_projector.register_forward_hook(lambda m, a, out: connector.append(out))
    with torch.no_grad():
        model(**tiny_batch("llava"))
    hook.remove()
    torch.testing.assert_close(early.offset(), connector[0].mean(dim=1, keepdim=True), rtol=0, atol=0)
    hidden = torch.randn(4, 24, 32)
    position = model.model.language_model.rotary_emb(hidden, torch.arange(24)[None])
    with torch.no_grad():
        early.adaption_gate.fill_(1.0)
        with_image = early.prompt_attention(hidden, position)
        early.offset.value = None  # a text-only call
        assert (with_image - early.prompt_attention(hidden, position)).abs().max() > 1e-6


def test_every_llm_linear_gets_a_bias_and_a_scale(fresh):
    model = refimpl.apply(fresh("llava"), "llama_adapter_v2", adapter_len=3)
    trained = [name for name, p in model.named_parameters() if p.requires_grad]
    linears = {name.rsplit(".", 1)[0] for name in trained if name.endswith((".bias", ".scale"))}
    assert len(linears) == 2 * 7  # q, k, v, o, gate, up, down in each of 2 layers
    assert not any("vision_tower" in name or "multi_modal_projector" in name for name in trained)
