"""Tiny multimodal models for the VLM and MFM methods, all built from configs (random weights, no download):

- "llava": transformers' LlavaForConditionalGeneration — a CLIP vision tower, a two-layer MLP connector and a
  tiny Llama; the image's 16 patch features replace the 16 image placeholder tokens of `input_ids`.
- "blip2": transformers' Blip2ForConditionalGeneration — a ViT image encoder, a 2-layer Q-Former with 4
  learned queries, a linear projection and the same tiny Llama; the projected queries fill 4 placeholders.
- "clip_fewshot", "clip_region", "clip_dense": the tiny CLIP of `vision.py` as a zero-shot classifier over
  class-name prompts, the setting of CoOp, CLIP-Adapter, Tip-Adapter (whole images), OVSeg (masked regions)
  and FC-CLIP (per patch, i.e. semantic segmentation at patch resolution).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    Blip2Config,
    Blip2ForConditionalGeneration,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
)
from transformers.utils import ModelOutput

from ..core.errors import RefimplError
from .specs import Batch, TinyModelSpec
from .tiny import VOCAB_SIZE, tiny_llama
from .vision import IMAGE_SIZE, PATCH_SIZE, tiny_clip

IMAGE_TOKEN = 3  # the placeholder id; text tokens are drawn from 4..VOCAB_SIZE-1
PATCHES_PER_SIDE = IMAGE_SIZE // PATCH_SIZE
IMAGE_PATCHES = PATCHES_PER_SIDE**2
QUERY_TOKENS = 4
IGNORE_INDEX = -100


def _llama_config() -> LlamaConfig:
    """The "llama" spec's config, so the multimodal models carry the same tiny LM (building it costs ms)."""
    return tiny_llama().config


def _vision_tower_config() -> dict[str, int]:
    return {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "image_size": IMAGE_SIZE,
        "patch_size": PATCH_SIZE,
    }


def tiny_llava(seed: int = 0) -> LlavaForConditionalGeneration:
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**_vision_tower_config()),
        text_config=_llama_config(),
        image_token_index=IMAGE_TOKEN,
        image_seq_length=IMAGE_PATCHES,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",  # drop CLS: one LM token per patch
    )
    torch.manual_seed(seed)  # after the configs: building the LM's config seeds and draws too
    return LlavaForConditionalGeneration(config).eval()


def tiny_blip2(seed: int = 0) -> Blip2ForConditionalGeneration:
    config = Blip2Config(
        vision_config=_vision_tower_config(),
        qformer_config={
            "vocab_size": VOCAB_SIZE,
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "intermediate_size": 64,
            "encoder_hidden_size": 32,
            "cross_attention_frequency": 1,
            "max_position_embeddings": 32,
        },
        text_config=_llama_config().to_dict(),
        num_query_tokens=QUERY_TOKENS,
        image_token_index=IMAGE_TOKEN,
    )
    torch.manual_seed(seed)
    return Blip2ForConditionalGeneration(config).eval()


def image_prompt_batch(generator: torch.Generator, size: int, image_tokens: int, length: int = 8) -> Batch:
    """An image, its placeholder tokens, then a caption the LM learns to produce (no loss on image slots)."""
    text = torch.randint(IMAGE_TOKEN + 1, VOCAB_SIZE, (size, length), generator=generator)
    input_ids = torch.cat([torch.full((size, image_tokens), IMAGE_TOKEN), text], dim=1)
    labels = input_ids.masked_fill(input_ids == IMAGE_TOKEN, IGNORE_INDEX)
    return {
        "pixel_values": torch.randn(size, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator),
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "labels": labels,
    }


def language_model_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The decoder-layer list of the language model inside a Llama, LLaVA or BLIP-2 model (name and list)."""
    for name, module in model.named_modules():
        decoder = isinstance(module, nn.ModuleList) and hasattr(module[0], "self_attn")
        if decoder and name.endswith("layers") and "vision" not in name:
            return name, module
    raise RefimplError(f"{type(model).__name__} has no language-model decoder layers")


# --- CLIP as a zero-shot classifier over class-name prompts ---------------------------------------------

CLASS_COUNT = 3
TEMPLATE_LENGTH = 4  # a stand-in for "a photo of a"
NAME_LENGTH = 2  # tokens per class name
PROMPT_LENGTH = 16  # CLIP pads every prompt to a fixed length (77 in the real model)


@dataclass
class CLIPClassifierOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None  # (B, C), or (B, C, h, w) for the dense classifier
    image_embeds: torch.Tensor | None = None  # L2-normalised image (or patch) features in the joint space
    text_embeds: torch.Tensor | None = None  # L2-normalised class prompt features (C, D)
    patch_states: torch.Tensor | None = None  # the vision tower's last hidden states of the patches (B, P, d)


class CLIPClassifier(nn.Module):
    """A frozen-CLIP zero-shot classifier: class c is the prompt [BOS] template name_c [EOS] [PAD...], and

        logits = s · norm(f_img(x)) · norm(f_txt(prompt_c))ᵀ,   s = exp(CLIP's learned logit scale)

    `region_mask` (B, h, w on the patch grid, 1 = inside) blanks the pixels outside a region first, as OVSeg
    does with mask proposals. With `dense=True` every patch is classified (MaskCLIP-style: the patch tokens go
    through the final norm and the visual projection) and `labels` are (B, h, w) patch classes.
    The text features are recomputed on every call, so prompt methods (CoOp) receive gradients through them.
    """

    def __init__(self, clip: nn.Module, seed: int, dense: bool = False) -> None:
        super().__init__()
        self.clip = clip
        self.config = clip.config
        self.dense = dense
        generator = torch.Generator().manual_seed(seed + 1)
        words = partial(torch.randint, IMAGE_TOKEN + 1, VOCAB_SIZE, generator=generator)
        self.register_buffer("template_ids", words((TEMPLATE_LENGTH,)))
        self.register_buffer("class_name_ids", words((CLASS_COUNT, NAME_LENGTH)))

    def prompt_ids(self, context_ids: torch.Tensor) -> torch.Tensor:
        """(C, PROMPT_LENGTH) token ids [BOS] context name_c [EOS] [PAD...] for a context of any length."""
        text = self.config.text_config
        count = self.class_name_ids.shape[0]
        body = torch.cat([context_ids.expand(count, -1), self.class_name_ids], dim=1)
        ids = torch.full((count, PROMPT_LENGTH), text.pad_token_id, device=body.device)
        ids[:, 0] = text.bos_token_id
        ids[:, 1 : 1 + body.shape[1]] = body
        ids[:, 1 + body.shape[1]] = text.eos_token_id
        return ids

    def text_features(self) -> torch.Tensor:
        ids = self.prompt_ids(self.template_ids)
        return F.normalize(self.clip.get_text_features(input_ids=ids).pooler_output, dim=-1)

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        region_mask: torch.Tensor | None = None,
    ) -> CLIPClassifierOutput:
        if region_mask is not None:
            pixel_mask = region_mask.repeat_interleave(PATCH_SIZE, 1).repeat_interleave(PATCH_SIZE, 2)
            pixel_values = pixel_values * pixel_mask.unsqueeze(1).to(pixel_values.dtype)
        vision = self.clip.vision_model(pixel_values=pixel_values)
        patches = vision.last_hidden_state[:, 1:]
        if self.dense:
            pooled = self.clip.vision_model.post_layernorm(patches)
        else:
            pooled = vision.pooler_output
        image = F.normalize(self.clip.visual_projection(pooled), dim=-1)
        text = self.text_features()
        logits = self.clip.logit_scale.exp() * image @ text.T
        if self.dense:
            logits = logits.transpose(1, 2).unflatten(2, (PATCHES_PER_SIDE, PATCHES_PER_SIDE))
        loss = F.cross_entropy(logits.float(), labels) if labels is not None else None
        return CLIPClassifierOutput(
            loss=loss, logits=logits, image_embeds=image, text_embeds=text, patch_states=patches
        )


def clip_classifier(seed: int = 0, dense: bool = False) -> CLIPClassifier:
    return CLIPClassifier(tiny_clip(seed=seed), seed, dense=dense).eval()


def classification_batch(generator: torch.Generator, size: int, region: bool = False) -> Batch:
    batch = {
        "pixel_values": torch.randn(size, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator),
        "labels": torch.randint(0, CLASS_COUNT, (size,), generator=generator),
    }
    if region:  # a random region of at least one patch per image
        grid = (size, PATCHES_PER_SIDE, PATCHES_PER_SIDE)
        mask = torch.rand(grid, generator=generator) < 0.5
        mask[:, 0, 0] = True
        batch["region_mask"] = mask.long()
    return batch


def segmentation_batch(generator: torch.Generator, size: int) -> Batch:
    grid = (size, PATCHES_PER_SIDE, PATCHES_PER_SIDE)
    return {
        "pixel_values": torch.randn(size, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator),
        "labels": torch.randint(0, CLASS_COUNT, grid, generator=generator),
    }


SPECS: dict[str, TinyModelSpec] = {
    "llava": TinyModelSpec(tiny_llava, partial(image_prompt_batch, image_tokens=IMAGE_PATCHES)),
    "blip2": TinyModelSpec(tiny_blip2, partial(image_prompt_batch, image_tokens=QUERY_TOKENS)),
    "clip_fewshot": TinyModelSpec(clip_classifier, classification_batch),
    "clip_region": TinyModelSpec(clip_classifier, partial(classification_batch, region=True)),
    "clip_dense": TinyModelSpec(partial(clip_classifier, dense=True), segmentation_batch),
}
