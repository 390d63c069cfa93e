"""Y-tuning — Liu, An & Qiu, "Y-Tuning: An Efficient Tuning Paradigm for Large-Scale Pre-Trained Models via
Label Representation Learning", Frontiers of Computer Science 2024 (catalogue: y-tuning).

    H = f(x) (frozen, no gradient),   Y⁰ = label embeddings ∈ R^{c×d_y}
    Yˡ⁺¹ = LN(Z + FFN(Z)),  Z = LN(Yˡ + CrossAttn(Yˡ, H, H)),   s(y | x) = w · Y_y + b

The frozen model only supplies features; a small Y-network learns one representation per label and lets each
label attend to the features of the input, and the label's score is read from its final representation.
Trainable: the label embeddings, the Y-network's cross-attention blocks and the scoring layer. The features are
detached, so no gradient ever enters the backbone (the paper's training-cost argument).

The features are the backbone's last hidden states (any transformers model, via output_hidden_states). Called
with class labels the model returns the Y-network's label scores as `logits` and their cross-entropy as `loss`.
Registered for bert (the generic suite's gpt2/llama batches carry token labels, which Y-tuning does not model);
block count, widths and heads are our defaults (the paper's are not in our sources).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..core.api import add_hook, attach_module
from ..core.architectures import hidden_size
from ..core.registry import Method, MethodOptions, register


class YTuningOptions(MethodOptions):
    num_labels: int | None = Field(
        None, ge=2, description="classes c; default: the model config's num_labels"
    )
    y_dim: int | None = Field(
        None, gt=0, description="width d_y of the label representations; default: hidden"
    )
    num_heads: int = Field(4, gt=0, description="cross-attention heads (must divide y_dim)")
    num_layers: int = Field(1, gt=0, description="Y-network blocks")


class YBlock(nn.Module):
    """Labels attend to the input's features, then a feed-forward layer; post-norm residuals."""

    def __init__(self, y_dim: int, feature_dim: int, heads: int) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(
            y_dim, heads, kdim=feature_dim, vdim=feature_dim, batch_first=True
        )
        self.attention_norm = nn.LayerNorm(y_dim)
        self.ffn = nn.Sequential(nn.Linear(y_dim, 4 * y_dim), nn.GELU(), nn.Linear(4 * y_dim, y_dim))
        self.ffn_norm = nn.LayerNorm(y_dim)

    def forward(
        self, labels: torch.Tensor, features: torch.Tensor, padding: torch.Tensor | None
    ) -> torch.Tensor:
        attended, _ = self.attention(labels, features, features, key_padding_mask=padding, need_weights=False)
        labels = self.attention_norm(labels + attended)
        return self.ffn_norm(labels + self.ffn(labels))

    @staticmethod
    def parameter_count(y_dim: int, feature_dim: int) -> int:
        attention = y_dim * (y_dim + 2 * feature_dim) + 3 * y_dim + y_dim * y_dim + y_dim
        ffn = 2 * (4 * y_dim * y_dim) + 4 * y_dim + y_dim
        return attention + ffn + 2 * (2 * y_dim)


class YNetwork(nn.Module):
    def __init__(self, labels: int, y_dim: int, feature_dim: int, heads: int, layers: int) -> None:
        super().__init__()
        self.label_embeddings = nn.Parameter(torch.randn(labels, y_dim) * 0.02)
        self.blocks = nn.ModuleList(YBlock(y_dim, feature_dim, heads) for _ in range(layers))
        self.score = nn.Linear(y_dim, 1)

    def forward(self, features: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """(batch, length, d) frozen features -> (batch, c) label scores."""
        labels = self.label_embeddings.to(features.dtype).expand(features.shape[0], -1, -1)
        padding = None if attention_mask is None else attention_mask == 0
        for block in self.blocks:
            labels = block(labels, features, padding)
        return self.score(labels).squeeze(-1)


def _sizes(model: nn.Module, options: YTuningOptions) -> tuple[int, int]:
    return options.num_labels or model.config.num_labels, options.y_dim or hidden_size(model)


@register
class YTuning(Method):
    name = "y_tuning"
    category = "prompt"
    foundation_models = ("LLM",)
    papers = ("y-tuning",)
    summary = (
        "Learn label representations that cross-attend to a frozen model's features and score each label."
    )
    update_rule = "s(y|x) = w · Y-net(e_y, H),  H = f(x) frozen and detached"
    trainable = "label embeddings, the Y-network's cross-attention blocks and its scoring layer"
    model_types = ("bert",)
    Options = YTuningOptions

    def inject(self, model: nn.Module, options: YTuningOptions) -> None:
        labels, y_dim = _sizes(model, options)
        like = next(model.parameters())
        network = YNetwork(labels, y_dim, hidden_size(model), options.num_heads, options.num_layers)
        attach_module(model, "y_network", network.to(device=like.device, dtype=like.dtype))
        held: dict[str, Any] = {}

        def before(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict]:
            kwargs = dict(kwargs, output_hidden_states=True)
            held["labels"] = kwargs.pop("labels", None)
            held["mask"] = kwargs.get("attention_mask")
            return args, kwargs

        def after(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
            features = output.hidden_states[-1].detach()
            output["logits"] = scores = network(features, held.pop("mask"))
            if (targets := held.pop("labels")) is not None:
                output["loss"] = F.cross_entropy(scores.float(), targets.to(scores.device))
            return output

        add_hook(model, model.register_forward_pre_hook(before, with_kwargs=True))
        add_hook(model, model.register_forward_hook(after, with_kwargs=True))

    def expected_trainable(self, model: nn.Module, options: YTuningOptions) -> int:
        labels, y_dim = _sizes(model, options)
        blocks = options.num_layers * YBlock.parameter_count(y_dim, hidden_size(model))
        return labels * y_dim + blocks + y_dim + 1
