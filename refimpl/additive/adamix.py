"""AdaMix — Wang, Agarwal, Mukherjee, Liu, Gao, Awadallah and Gao, "AdaMix: Mixture-of-Adaptations for
Parameter-efficient Model Tuning", EMNLP 2022 (catalogue: adamix).

    training:   h ← h + W_up^(j) σ(W_down^(i) h),  i, j drawn uniformly from the M experts at every forward
    inference:  h ← h + W̄_up σ(W̄_down h),        W̄ = (1/M) Σ_k W^(k)  (experts averaged into one adapter)

The mixture sits at the Houlsby positions (after attention and after the FFN). Trainable: the M down and M up
projections of every mixture, the blocks' layer norms and the task head (as for the Houlsby adapter);
inference costs one adapter. `consistency_loss` gives the paper's optional regulariser between two stochastic
routes. Notable choice: each mixture stores its experts as stacked tensors, so in a step the experts not drawn
receive a zero gradient rather than none (an optimiser with momentum still moves them a little).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from transformers.activations import ACT2FN

from ..core.architectures import hidden_size, transformer_blocks
from ..core.registry import Method, register
from .adapter_common import norms_and_head_count
from .bottleneck_adapter import Bottleneck, BottleneckOptions, Init, insert_adapters, unfreeze_norms_and_head


class AdapterMixture(nn.Module):
    def __init__(
        self, hidden: int, size: int, experts: int, activation: str, init: Init, like: torch.Tensor
    ) -> None:
        super().__init__()
        factory = {"dtype": like.dtype, "device": like.device}
        self.down_weight = nn.Parameter(torch.randn(experts, size, hidden, **factory) * 1e-2)
        self.down_bias = nn.Parameter(torch.zeros(experts, size, **factory))
        up = torch.zeros(experts, hidden, size, **factory)
        self.up_weight = nn.Parameter(up if init == "zeros" else torch.randn_like(up) * 1e-2)
        self.up_bias = nn.Parameter(torch.zeros(experts, hidden, **factory))
        self.activation = ACT2FN[activation]
        self.activation_name = activation

    def projections(self) -> tuple[torch.Tensor, ...]:
        """(W_down, b_down, W_up, b_up): a random expert for each in training, the experts' mean otherwise."""
        if self.training:
            down, up = torch.randint(self.down_weight.shape[0], (2,)).tolist()
            return self.down_weight[down], self.down_bias[down], self.up_weight[up], self.up_bias[up]
        return tuple(p.mean(0) for p in (self.down_weight, self.down_bias, self.up_weight, self.up_bias))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        down_weight, down_bias, up_weight, up_bias = self.projections()
        return F.linear(self.activation(F.linear(h, down_weight, down_bias)), up_weight, up_bias)

    @torch.no_grad()
    def averaged(self) -> Bottleneck:
        """The single adapter inference uses: every projection averaged over the experts."""
        size, hidden = self.down_weight.shape[1:]
        single = Bottleneck(hidden, size, self.activation_name, like=self.down_weight)
        for target, stacked in zip(
            (single.down.weight, single.down.bias, single.up.weight, single.up.bias),
            (self.down_weight, self.down_bias, self.up_weight, self.up_bias),
            strict=True,
        ):
            target.copy_(stacked.mean(0))
        return single


class AdaMixOptions(BottleneckOptions):
    num_experts: int = Field(4, gt=0, description="adaptation modules M per position")


def consistency_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Symmetric KL between the predictions of two stochastic routes (two forward passes in training mode)."""
    first, second = (model(**batch).logits.float().log_softmax(-1) for _ in range(2))
    return 0.5 * (
        F.kl_div(first, second, log_target=True, reduction="batchmean")
        + F.kl_div(second, first, log_target=True, reduction="batchmean")
    )


@register
class AdaMix(Method):
    name = "adamix"
    category = "additive"
    foundation_models = ("LLM",)
    papers = ("adamix",)
    summary = (
        "Train a mixture of M adapters per position with random routing; average them into one for inference."
    )
    update_rule = (
        "train: h ← h + W_up^(j) σ(W_down^(i) h), i, j random;  infer: the experts' averaged weights"
    )
    trainable = "M down and M up projections per position, the blocks' layer norms and the task head"
    Options = AdaMixOptions

    def inject(self, model: nn.Module, options: AdaMixOptions) -> None:
        like = next(model.parameters())
        wrapped = insert_adapters(
            model,
            ("attention_output", "ffn_output"),
            lambda: AdapterMixture(
                hidden_size(model),
                options.adapter_size,
                options.num_experts,
                options.activation,
                options.init,
                like,
            ),
        )
        for layer in wrapped:  # new modules start in training mode: follow the model's mode instead
            layer.train(model.training)
        unfreeze_norms_and_head(model, options.train_layer_norms, options.train_head)

    def expected_trainable(self, model: nn.Module, options: AdaMixOptions) -> int:
        mixture = options.num_experts * Bottleneck.parameter_count(hidden_size(model), options.adapter_size)
        mixtures = 2 * len(transformer_blocks(model)) * mixture
        return mixtures + norms_and_head_count(model, options.train_layer_norms, options.train_head)
