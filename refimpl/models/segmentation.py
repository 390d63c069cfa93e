"""A tiny open-vocabulary semantic segmenter on a frozen CLIP, for methods that replace its mask decoder (SAN).

"clip_seg": the tiny CLIP of `vision.py` with the class-name prompts of `multimodal.CLIPClassifier`; its
`decoder` turns (CLIP, image, class text features) into per-patch class logits (B, C, h, w), and `labels` are
patch classes (B, h, w). The base decoder classifies every patch by its projected last-layer token (MaskCLIP-
style, exactly `clip_dense`'s logits); a method swaps the decoder module for its own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .multimodal import PATCHES_PER_SIDE, CLIPClassifier, CLIPClassifierOutput, segmentation_batch
from .specs import TinyModelSpec
from .vision import tiny_clip


class PatchClassifier(nn.Module):
    """Parameter-free decoder: each patch's last-layer token, normed and projected, against the class texts."""

    def forward(self, clip: nn.Module, pixel_values: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        vision = clip.vision_model
        patches = vision.post_layernorm(vision(pixel_values=pixel_values).last_hidden_state[:, 1:])
        image = F.normalize(clip.visual_projection(patches), dim=-1)
        logits = clip.logit_scale.exp() * image @ text.T
        return logits.transpose(1, 2).unflatten(2, (PATCHES_PER_SIDE, PATCHES_PER_SIDE))


class CLIPSegmenter(CLIPClassifier):
    def __init__(self, clip: nn.Module, seed: int) -> None:
        super().__init__(clip, seed, dense=True)
        self.decoder = PatchClassifier()

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None) -> CLIPClassifierOutput:
        text = self.text_features()
        logits = self.decoder(self.clip, pixel_values, text)
        loss = F.cross_entropy(logits.float(), labels) if labels is not None else None
        return CLIPClassifierOutput(loss=loss, logits=logits, text_embeds=text)


def clip_segmenter(seed: int = 0) -> CLIPSegmenter:
    return CLIPSegmenter(tiny_clip(seed=seed), seed).eval()


SPECS: dict[str, TinyModelSpec] = {"clip_seg": TinyModelSpec(clip_segmenter, segmentation_batch)}
