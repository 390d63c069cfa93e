"""ED-LoRA and gradient fusion — Gu et al., "Mix-of-Show: Decentralized Low-Rank Adaptation for Multi-Concept
Customization of Diffusion Models", NeurIPS 2023 (catalogue: mix-of-show).

ED-LoRA (embedding-decomposed LoRA) learns one concept per adapter: its identity in layer-wise token embeddings (one
embedding per cross-attention layer of the UNet) and its details in LoRA on the attention projections:

    c_l = encoder states with the concept token's row replaced by e_l        (cross-attention layer l reads c_l)
    h = W0 x + (alpha / r) B A x                                            (to_q, to_k, to_v, to_out.0)

Gradient fusion merges several concepts' updates into one weight per layer that reproduces every concept's layer
outputs on that concept's own layer inputs X_i (captured by running the concept's model on its inputs):

    W = argmin_W Σ_i ||(W0 + ΔW_i) X_i − W X_i||²  =  W0 + (Σ_i ΔW_i X_i X_iᵀ) (Σ_i X_i X_iᵀ)⁺

solved here in closed form (the authors minimise the same objective iteratively). The pseudo-inverse acts on the
update only, so W = W0 in input directions that no concept's data reaches (below 1e-10 of the largest energy).

Trainable: e_l for every cross-attention layer, and LoRA's A and B (rank 4, as in the authors' released configs;
alpha = r, an update scale of 1, is our choice). Simplifications: the tiny UNet takes the text encoder's output
directly and has no text encoder, so e_l replaces the row of that output at `concept_position` (the paper feeds a
layer-specific token embedding through the text encoder, whose own LoRA is plain `lora` on the CLIP text model);
the authors' configs make a concept two tokens (one random with std 0.013, one initialised from the class word);
here it is one token, initialised at random with that std. Not identity at init: the concept row is replaced from
the start.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
from pydantic import Field
from torch import nn

from ..core.api import add_hook, attach_module
from ..core.architectures import projection_names
from ..core.errors import RefimplError
from ..core.layers import DeltaLinear, new_parameter
from ..core.registry import Method, register
from .lora import LoRAOptions, inject_lora_layers, lora_parameter_count

EMBEDDING_STD = 0.013
PSEUDO_INVERSE_RTOL = 1e-10


class EDLoRAOptions(LoRAOptions):
    r: int = Field(4, gt=0, description="rank of the LoRA updates")
    alpha: float = Field(4.0, gt=0, description="scaling numerator: the update is multiplied by alpha / r")
    concept_position: int = Field(
        1, ge=0, description="index of the concept token among the text tokens (0 is the start token)"
    )


class ConceptEmbeddings(nn.Module):
    """One learned concept-token embedding per cross-attention layer (rows in the order of `named_modules`)."""

    def __init__(self, layers: int, dim: int, like: torch.Tensor) -> None:
        super().__init__()
        self.weight = new_parameter(layers, dim, like=like, init="zeros")
        with torch.no_grad():
            self.weight.normal_(std=EMBEDDING_STD)


def cross_attention_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    found = [(n, m) for n, m in model.named_modules() if getattr(m, "is_cross_attention", False) is True]
    if not found:
        raise RefimplError(
            f"ed_lora: {type(model).__name__} has no cross-attention layer to read a concept token"
        )
    return found


def _with_targets(model: nn.Module, options: EDLoRAOptions) -> EDLoRAOptions:
    """Default targets: every attention projection (Mix-of-Show adapts all linear layers of the attention)."""
    roles = ("query", "key", "value", "attention_output")
    return options.model_copy(
        update={"target_modules": options.target_modules or projection_names(model, roles)}
    )


def _substitute_concept(
    table: ConceptEmbeddings, row: int, position: int, _module: nn.Module, args: tuple, kwargs: dict[str, Any]
) -> tuple[tuple, dict[str, Any]] | None:
    states = kwargs.get("encoder_hidden_states")
    if states is None:
        return None
    if position >= states.shape[1]:
        raise RefimplError(
            f"option 'concept_position': {position} is beyond the {states.shape[1]} text tokens"
        )
    states = states.clone()
    states[:, position] = table.weight[row].to(states.dtype)
    return args, {**kwargs, "encoder_hidden_states": states}


@register
class EDLoRA(Method):
    name = "ed_lora"
    category = "reparameterization"
    foundation_models = ("VGM",)
    papers = ("mix-of-show",)
    summary = (
        "Per concept: layer-wise concept-token embeddings plus LoRA; gradient fusion merges many concepts."
    )
    update_rule = "c_l[concept] = e_l per cross-attention layer;  h = W0 x + (alpha/r) B A x"
    trainable = (
        "a concept embedding per cross-attention layer, and LoRA's A and B on every attention projection"
    )
    model_types = ("unet",)
    Options = EDLoRAOptions

    def inject(self, model: nn.Module, options: EDLoRAOptions) -> None:
        layers = cross_attention_layers(model)
        dim = model.config.cross_attention_dim
        like = layers[0][1].to_k.weight
        table = attach_module(model, "concept_embeddings", ConceptEmbeddings(len(layers), dim, like=like))
        for row, (_, attention) in enumerate(layers):
            hook = partial(_substitute_concept, table, row, options.concept_position)
            add_hook(model, attention.register_forward_pre_hook(hook, with_kwargs=True))
        inject_lora_layers(model, _with_targets(model, options))

    def expected_trainable(self, model: nn.Module, options: EDLoRAOptions) -> int:
        """One cross_attention_dim embedding per cross-attention layer, plus r · (in + out) per LoRA layer."""
        embeddings = len(cross_attention_layers(model)) * model.config.cross_attention_dim
        return embeddings + lora_parameter_count(model, _with_targets(model, options))


def gradient_fusion(
    base_unet: nn.Module, concept_models: Sequence[nn.Module], inputs_per_concept: Sequence[dict[str, Any]]
) -> dict[str, torch.Tensor]:
    """Fuse the weight updates of several single-concept models adapted from `base_unet` into one weight per layer.

    `inputs_per_concept[i]` is a batch of model inputs (no training target) for concept i, on which its layer inputs
    X_i are captured. Returns {"<layer>.weight": fused weight} named as in `base_unet`, ready for
    `base_unet.load_state_dict(fused, strict=False)`; each concept keeps its own concept embeddings.
    """
    if not concept_models or len(concept_models) != len(inputs_per_concept):
        raise RefimplError("gradient_fusion: give one batch of inputs for each of at least one concept model")
    grams: dict[str, list[torch.Tensor]] = defaultdict(list)  # X_i X_iᵀ per layer, per concept
    deltas: dict[str, list[torch.Tensor]] = defaultdict(list)
    layer_names = None
    for index, (model, inputs) in enumerate(zip(concept_models, inputs_per_concept, strict=True)):
        layers = {name: m for name, m in model.named_modules() if isinstance(m, DeltaLinear)}
        if not layers:
            raise RefimplError(f"gradient_fusion: concept {index} has no weight-update layers to fuse")
        if layer_names is not None and set(layers) != layer_names:
            raise RefimplError(f"gradient_fusion: concept {index} adapts other layers than concept 0")
        layer_names = set(layers)
        for name, layer in layers.items():
            if not torch.equal(layer.base.weight, base_unet.get_submodule(name).weight):
                raise RefimplError(
                    f"gradient_fusion: concept {index}'s layer {name} is not base_unet's (merged?)"
                )
            deltas[name].append(layer.delta_weight().detach().double())
        for name, gram in _input_grams(model, layers, inputs).items():
            grams[name].append(gram)
    fused = {}
    for name in sorted(layer_names):
        base_weight = base_unet.get_submodule(name).weight
        total_gram = sum(grams[name])
        right = sum(delta @ gram for delta, gram in zip(deltas[name], grams[name], strict=True))
        update = right @ torch.linalg.pinv(total_gram, rtol=PSEUDO_INVERSE_RTOL, hermitian=True)
        fused[f"{name}.weight"] = (base_weight.double() + update).to(base_weight.dtype)
    return fused


def _input_grams(
    model: nn.Module, layers: dict[str, DeltaLinear], inputs: dict[str, Any]
) -> dict[str, torch.Tensor]:
    """X Xᵀ (in × in, float64) of every layer's inputs during one forward pass of `model` on `inputs`."""
    grams: dict[str, torch.Tensor] = {}

    def record(name: str, _module: nn.Module, args: tuple, _output: torch.Tensor) -> None:
        x = args[0].detach().reshape(-1, args[0].shape[-1]).double()
        grams[name] = grams.get(name, 0) + x.T @ x

    handles = [layer.register_forward_hook(partial(record, name)) for name, layer in layers.items()]
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        for handle in handles:
            handle.remove()
    return grams
