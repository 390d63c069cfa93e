"""Tiny multimodal models (a LLaVA-style vision-language LLM, a BLIP-2-style Q-Former bridge) for the VLM and MFM
methods; SPECS is filled in as those methods land."""

from __future__ import annotations

from .specs import TinyModelSpec

SPECS: dict[str, TinyModelSpec] = {}
