"""Tiny video diffusion models (an image UNet inflated over frames) for the video methods; SPECS is filled in
as those methods land."""

from __future__ import annotations

from .specs import TinyModelSpec

SPECS: dict[str, TinyModelSpec] = {}
