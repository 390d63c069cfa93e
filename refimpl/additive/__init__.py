"""Additive PEFT: insert small new modules (adapters, side networks) and train only those."""
