"""Tiny vision models built from transformers configs: a ViT classifier and a CLIP dual encoder."""

from __future__ import annotations

import torch
from transformers import CLIPConfig, CLIPModel, ViTConfig, ViTForImageClassification

from .specs import Batch, TinyModelSpec

IMAGE_SIZE = 16
PATCH_SIZE = 4
VOCAB_SIZE = 128


def tiny_vit(
    hidden: int = 32, layers: int = 2, num_labels: int = 3, seed: int = 0
) -> ViTForImageClassification:
    torch.manual_seed(seed)
    config = ViTConfig(
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        num_channels=3,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=2 * hidden,
        num_labels=num_labels,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return ViTForImageClassification(config).eval()


def tiny_clip(hidden: int = 32, layers: int = 2, projection: int = 16, seed: int = 0) -> CLIPModel:
    torch.manual_seed(seed)
    tower = {
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": 4,
    }
    config = CLIPConfig(
        text_config={
            **tower,
            "vocab_size": VOCAB_SIZE,
            "max_position_embeddings": 32,
            "bos_token_id": 0,
            "eos_token_id": 1,
            "pad_token_id": 2,
        },
        vision_config={**tower, "image_size": IMAGE_SIZE, "patch_size": PATCH_SIZE},
        projection_dim=projection,
    )
    return CLIPModel(config).eval()


def image_batch(generator: torch.Generator, size: int, num_labels: int = 3) -> Batch:
    pixels = torch.randn(size, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
    return {"pixel_values": pixels, "labels": torch.randint(0, num_labels, (size,), generator=generator)}


def image_text_batch(generator: torch.Generator, size: int, length: int = 8) -> Batch:
    """Matched image-caption pairs: CLIP's contrastive loss pulls pair i together against the others."""
    input_ids = torch.randint(3, VOCAB_SIZE, (size, length), generator=generator)
    input_ids[:, -1] = 1  # CLIP pools the text at the end-of-sequence token
    pixels = torch.randn(size, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "pixel_values": pixels,
        "return_loss": True,
    }


SPECS = {
    "vit": TinyModelSpec(tiny_vit, image_batch),
    "clip": TinyModelSpec(tiny_clip, image_text_batch, output_field="logits_per_image"),
}
