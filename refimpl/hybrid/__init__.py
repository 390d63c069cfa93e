"""Hybrid PEFT: combine several mechanisms, or search over them, in one model."""
