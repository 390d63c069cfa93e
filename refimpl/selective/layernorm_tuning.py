"""LayerNorm tuning — Zhao et al., "Tuning LayerNorm in Attention: Towards Efficient Multi-Modal LLM
Finetuning", ICLR 2024 (catalogue: layernorm-tuning).

    θ = θ0 except γ (and β) of the LLM's norms in every block, and the vision-language connector

Turning an LLM into a multimodal LLM, the paper trains only the normalisation parameters of the language
model's attention blocks together with the connector that maps visual features into the LLM's input space;
everything else stays frozen. Here: both RMSNorm scales of every Llama decoder block (before attention and
before the MLP), plus the connector — LLaVA's two-layer MLP projector or BLIP-2's language projection.
`train_connector=False` trains the norms alone. Nothing is added, so the output starts at the base model's and
there is nothing to merge.
"""

from __future__ import annotations

from pydantic import Field
from torch import nn

from ..core.registry import Method, MethodOptions, register
from ..models.multimodal import language_model_layers

BLOCK_NORMS = ("input_layernorm", "post_attention_layernorm")
CONNECTORS = {"llava": "model.multi_modal_projector", "blip-2": "language_projection"}


class LayerNormTuningOptions(MethodOptions):
    train_connector: bool = Field(
        True, description="also train the vision-language connector, as the paper does"
    )


def tuned_modules(model: nn.Module, options: LayerNormTuningOptions) -> list[nn.Module]:
    _, layers = language_model_layers(model)
    modules = [getattr(layer, norm) for layer in layers for norm in BLOCK_NORMS]
    if options.train_connector:
        modules.append(model.get_submodule(CONNECTORS[model.config.model_type]))
    return modules


@register
class LayerNormTuning(Method):
    name = "layernorm_tuning"
    category = "selective"
    foundation_models = ("VLM", "MFM")
    papers = ("layernorm-tuning",)
    summary = "Train only the LLM's per-block norms (and the vision-language connector) of a multimodal LLM."
    update_rule = "γ_l ← γ_l + Δγ_l for the LLM's block norms; connector W_c ← W_c + ΔW_c; all else frozen"
    trainable = "the scales of both norms of every LLM block, and the vision-language connector"
    identity_at_init = True
    model_types = ("llava", "blip2")
    Options = LayerNormTuningOptions

    def inject(self, model: nn.Module, options: LayerNormTuningOptions) -> None:
        for module in tuned_modules(model, options):
            module.requires_grad_(True)

    def expected_trainable(self, model: nn.Module, options: LayerNormTuningOptions) -> int:
        """2·d per block (RMSNorm has a scale only), plus the connector's linear layers, from the configs."""
        config = model.config
        d = config.text_config.hidden_size
        norms = 2 * d * config.text_config.num_hidden_layers
        if not options.train_connector:
            return norms
        if config.model_type == "llava":  # Linear(vision, d) -> GELU -> Linear(d, d)
            return norms + config.vision_config.hidden_size * d + d + d * d + d
        return norms + config.qformer_config.hidden_size * d + d  # BLIP-2: one Linear(Q-Former, d)
