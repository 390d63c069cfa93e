"""T-LoRA — Ren et al., "Customize-A-Video: One-Shot Motion Customization of Text-to-Video Diffusion Models",
ECCV 2024 (catalogue: customize-a-video).

Temporal LoRA: a low-rank update only on the projections of the temporal attention layers of a text-to-video
UNet, so one reference video's motion is learned while the spatial (appearance) layers stay the base model's:

    h = W0 x + (alpha / r) B A x   for W0 ∈ {to_q, to_k, to_v, to_out.0} of each temporal attention, B = 0

Trainable: A and B of those projections (LoRA's defaults r = 8, alpha = 16; the rank is our choice, not the
paper's). Mergeable, as LoRA. Out of scope: the paper's appearance absorbers (spatial LoRA and textual
inversion trained first on the reference frames, then dropped, so T-LoRA does not absorb the appearance); they
are the `lora` and `textual_inversion` methods applied to the spatial layers in a separate stage.
"""

from __future__ import annotations

from pydantic import Field
from torch import nn

from ..core.registry import Method, register
from ..core.targeting import Targets
from .lora import LoRAOptions, inject_lora_layers, lora_parameter_count

# The projections of the inflated UNet's temporal attention layers (named attn_temp by refimpl.models.video).
TEMPORAL_PROJECTIONS = r".*\.attn_temp\.(to_q|to_k|to_v|to_out\.0)"


class TLoRAOptions(LoRAOptions):
    target_modules: Targets | None = Field(
        TEMPORAL_PROJECTIONS,
        description="the temporal attention projections (a regex); suffixes or a regex to choose others",
    )


@register
class TLoRA(Method):
    name = "t_lora"
    category = "reparameterization"
    foundation_models = ("VGM",)
    papers = ("customize-a-video",)
    summary = (
        "LoRA on the temporal attention layers of a video UNet only: learn a motion, keep the appearance."
    )
    update_rule = "h = W0 x + (alpha/r) B A x on temporal-attention q, k, v, out;  B = 0 at init"
    trainable = "lora_A and lora_B of every temporal attention projection"
    mergeable = True
    identity_at_init = True
    model_types = ("unet_video",)
    Options = TLoRAOptions

    def inject(self, model: nn.Module, options: TLoRAOptions) -> None:
        inject_lora_layers(model, options)

    def expected_trainable(self, model: nn.Module, options: TLoRAOptions) -> int:
        """r · (in + out) for each of the four projections of every temporal attention layer."""
        return lora_parameter_count(model, options)
