"""BitFit — Ben Zaken et al., "BitFit: Simple Parameter-efficient Fine-tuning for Transformer-based Masked
Language-models", ACL 2022 (catalogue: bitfit).

    θ = (W0, b0 + Δb):  only the bias terms change

Trainable: every bias vector of the encoder (or, with `bias_terms="query_mlp"`, the paper's reduced variant: the
query bias and the first feed-forward bias), plus the task head, which the paper also trains.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import nn
from transformers.pytorch_utils import Conv1D

from ..core.architectures import architecture_of
from ..core.errors import RefimplError
from ..core.registry import Method, MethodOptions, register
from ..core.targeting import HEAD_NAMES, linear_dims, task_head_parameters

# The feed-forward input projection per architecture, for the paper's "query + intermediate" subset.
_FFN_INPUT = {"bert": "intermediate.dense", "vit": "intermediate.dense", "gpt2": "mlp.c_fc"}


class BitFitOptions(MethodOptions):
    bias_terms: Literal["all", "query_mlp"] = Field(
        "all", description="all biases, or only query and FFN-in biases"
    )
    train_head: bool = Field(
        True, description="also train the task head (classifier / lm_head), as the paper does"
    )


def selected_biases(model: nn.Module, options: BitFitOptions) -> list[nn.Parameter]:
    if options.bias_terms == "all":
        chosen = [p for name, p in model.named_parameters() if name.endswith("bias") and not _is_head(name)]
    else:
        architecture = architecture_of(model)
        if architecture.fused_qkv:
            raise RefimplError("option 'bias_terms': 'query_mlp' needs separate query projections")
        suffixes = (architecture.query + ".bias", _FFN_INPUT.get(model.config.model_type, "") + ".bias")
        chosen = [p for name, p in model.named_parameters() if name.endswith(suffixes)]
    if not chosen:
        raise RefimplError(f"option 'bias_terms': {type(model).__name__} has no bias parameters to train")
    if options.train_head:
        chosen += task_head_parameters(model)
    return chosen


def _is_head(name: str) -> bool:
    return name.split(".")[0] in HEAD_NAMES


@register
class BitFit(Method):
    name = "bitfit"
    category = "selective"
    foundation_models = ("LLM",)
    papers = ("bitfit",)
    summary = "Train only the bias terms of the pretrained model (and the task head)."
    update_rule = "W = W0 (frozen),  b = b0 + Δb"
    trainable = "bias vectors (all, or query + FFN-input) and the task head"
    model_types = ("bert", "gpt2")  # LLaMA has no bias terms
    Options = BitFitOptions

    def inject(self, model: nn.Module, options: BitFitOptions) -> None:
        for parameter in selected_biases(model, options):
            parameter.requires_grad_(True)

    def expected_trainable(self, model: nn.Module, options: BitFitOptions) -> int:
        # Counted from layer shapes, independently of which parameters `inject` flagged.
        config = model.config
        if options.bias_terms == "all":
            biases = sum(
                _bias_size(module)
                for name, module in model.named_modules()
                if not _is_head(name) and getattr(module, "bias", None) is not None
            )
        else:
            biases = config.num_hidden_layers * (config.hidden_size + config.intermediate_size)
        head = sum(p.numel() for p in task_head_parameters(model)) if options.train_head else 0
        return biases + head


def _bias_size(module: nn.Module) -> int:
    if isinstance(module, nn.LayerNorm):
        return module.normalized_shape[0]
    if isinstance(module, nn.Linear):
        return module.out_features
    return linear_dims(module)[1] if isinstance(module, Conv1D) else 0
