"""P-tuning — Liu et al., "GPT Understands, Too", AI Open 2024 (arXiv 2103.10385; catalogue: p-tuning).

    h_i = MLP([LSTM→(e_{0..i}) ; LSTM←(e_{i..n})]),   e ∈ R^{n×d} learned,   model input [h; E(x)]

Trainable: the prompt encoder: n input embeddings, a two-layer bidirectional LSTM and a two-layer ReLU MLP, which
model the dependence between prompt tokens (the paper's fix for discrete-looking, unconnected prompt vectors).
Defaults follow the authors' code: each LSTM direction has d/2 units, so the MLP maps d → d → d.

Simplification: all n prompt vectors are placed before the input (as huggingface peft does); the paper also
interleaves them with the input and keeps task anchor tokens, which a fixed-shape reference cannot know.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from ..core.api import attach_module
from ..core.architectures import hidden_size
from ..core.prompting import prepend_prompt
from ..core.registry import Method, MethodOptions, register


class PTuningOptions(MethodOptions):
    prompt_length: int = Field(20, gt=0, description="number of continuous prompt tokens n")
    lstm_hidden: int | None = Field(
        None, gt=0, description="units per LSTM direction; default d/2 as in the authors' code"
    )
    lstm_layers: int = Field(2, gt=0, description="stacked bidirectional LSTM layers")


class PromptEncoder(nn.Module):
    def __init__(self, length: int, dim: int, lstm_hidden: int, lstm_layers: int, like: torch.Tensor) -> None:
        super().__init__()
        factory = {"dtype": like.dtype, "device": like.device}
        self.embedding = nn.Parameter(torch.randn(length, dim, **factory))
        self.lstm = nn.LSTM(dim, lstm_hidden, lstm_layers, bidirectional=True, batch_first=True, **factory)
        self.mlp = nn.Sequential(
            nn.Linear(2 * lstm_hidden, 2 * lstm_hidden, **factory),
            nn.ReLU(),
            nn.Linear(2 * lstm_hidden, dim, **factory),
        )

    def prompt(self) -> torch.Tensor:
        """(n, d): the encoded prompt, the same for every example (so it can be cached after training)."""
        return self.mlp(self.lstm(self.embedding.unsqueeze(0))[0])[0]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.prompt().expand(tokens.shape[0], -1, -1)

    @staticmethod
    def parameter_count(length: int, dim: int, hidden: int, layers: int) -> int:
        gates = 4 * hidden
        first = gates * (dim + hidden) + 2 * gates  # input and recurrent weights, two bias vectors
        later = gates * (2 * hidden + hidden) + 2 * gates  # later layers read both directions
        lstm = 2 * (first + (layers - 1) * later)
        mlp = (2 * hidden * 2 * hidden + 2 * hidden) + (2 * hidden * dim + dim)
        return length * dim + lstm + mlp


@register
class PTuning(Method):
    name = "p_tuning"
    category = "prompt"
    foundation_models = ("LLM",)
    papers = ("p-tuning",)
    summary = "Continuous prompt vectors produced by a BiLSTM + MLP prompt encoder, prepended to the input."
    update_rule = "h = MLP(BiLSTM(e)),  model input [h; E(x)],  e ∈ R^{n×d}"
    trainable = "the prompt encoder: n embeddings, a bidirectional LSTM and a two-layer MLP"
    Options = PTuningOptions

    def inject(self, model: nn.Module, options: PTuningOptions) -> None:
        d = hidden_size(model)
        encoder = PromptEncoder(
            options.prompt_length,
            d,
            options.lstm_hidden or d // 2,
            options.lstm_layers,
            like=model.get_input_embeddings().weight,
        )
        attach_module(model, "prompt_encoder", encoder)
        prepend_prompt(model, encoder, options.prompt_length)

    def expected_trainable(self, model: nn.Module, options: PTuningOptions) -> int:
        d = hidden_size(model)
        return PromptEncoder.parameter_count(
            options.prompt_length, d, options.lstm_hidden or d // 2, options.lstm_layers
        )
