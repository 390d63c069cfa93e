"""Prompt PEFT: learn or search the input (tokens, embeddings, prefixes, pixels) while the model stays frozen."""
