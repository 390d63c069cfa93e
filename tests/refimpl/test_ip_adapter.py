"""IP-Adapter: each cross-attention layer computes softmax(QKᵀ)V + λ softmax(QK'ᵀ)V' before its output
projection; with λ = 0 the model is the base model, and the image embedding steers the output."""

from __future__ import annotations

import torch

import refimpl
from refimpl.models import TINY_MODELS

from .conftest import tiny_batch

SPEC = TINY_MODELS["unet_image_prompt"]


def multihead_attention(query, key, value, heads, scale):
    split = [x.unflatten(-1, (heads, -1)).transpose(1, 2) for x in (query, key, value)]
    weights = torch.softmax(split[0] @ split[1].transpose(-1, -2) * scale, dim=-1)
    return (weights @ split[2]).transpose(1, 2).flatten(2)


def test_a_cross_attention_layer_adds_the_weighted_image_attention_before_its_output_projection(fresh):
    model = refimpl.apply(fresh("unet_image_prompt"), "ip_adapter", scale=0.7)
    attention = model.down_blocks[0].attentions[0].transformer_blocks[0].attn2
    kv = model.ip_adapter.layers[0]
    generator = torch.Generator().manual_seed(0)
    hidden, text, image = (torch.randn(2, n, 32, generator=generator) for n in (16, 6, 4))
    with torch.no_grad():
        torch.nn.init.normal_(kv.to_k_ip.weight, generator=generator)  # differ from W_k, W_v
        torch.nn.init.normal_(kv.to_v_ip.weight, generator=generator)
        model.ip_adapter.tokens = image
        out = attention(hidden, encoder_hidden_states=text)
        q = attention.to_q(hidden)
        text_part = multihead_attention(
            q, attention.to_k(text), attention.to_v(text), attention.heads, attention.scale
        )
        image_part = multihead_attention(
            q, kv.to_k_ip(image), kv.to_v_ip(image), attention.heads, attention.scale
        )
        expected = attention.to_out[0](text_part + 0.7 * image_part)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


def test_with_zero_weight_the_model_is_the_base_and_otherwise_the_image_steers_it(fresh):
    batch = tiny_batch("unet_image_prompt")
    other = {**batch, "image_embeds": torch.randn_like(batch["image_embeds"])}
    with torch.no_grad():
        base = SPEC.output(fresh("unet_image_prompt"), batch)
        silent = SPEC.output(refimpl.apply(fresh("unet_image_prompt"), "ip_adapter", scale=0.0), batch)
        model = refimpl.apply(fresh("unet_image_prompt"), "ip_adapter")
        assert not torch.allclose(SPEC.output(model, batch), SPEC.output(model, other))
    torch.testing.assert_close(silent, base, rtol=0, atol=0)
