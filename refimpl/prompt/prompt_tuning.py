"""Prompt tuning — Lester et al., "The Power of Scale for Parameter-Efficient Prompt Tuning", EMNLP 2021
(catalogue: prompt-tuning).

    h = f([P; E(x)]),   P ∈ R^{n×d} learned, E and f frozen

Trainable: the n prompt embeddings only (n·d parameters). Initialised from the embeddings of sampled vocabulary
tokens, the initialisation the paper found best among random, vocabulary and class-label.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from ..core.api import attach_module
from ..core.architectures import hidden_size
from ..core.prompting import prepend_prompt, sample_vocabulary_rows
from ..core.registry import Method, MethodOptions, register


class PromptTuningOptions(MethodOptions):
    prompt_length: int = Field(20, gt=0, description="number of soft prompt tokens n")
    init: Literal["vocab", "random"] = Field(
        "vocab", description="sampled vocabulary embeddings or N(0, 0.02)"
    )


class SoftPrompt(nn.Module):
    def __init__(self, initial: torch.Tensor) -> None:
        super().__init__()
        self.embedding = nn.Parameter(initial)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.embedding.unsqueeze(0).expand(tokens.shape[0], -1, -1)


@register
class PromptTuning(Method):
    name = "prompt_tuning"
    category = "prompt"
    foundation_models = ("LLM",)
    papers = ("prompt-tuning",)
    summary = "Prepend n learned embeddings to the input of a frozen model and train only them."
    update_rule = "h = f([P; E(x)]),  P ∈ R^{n×d}"
    trainable = "the soft prompt P (prompt_length × hidden)"
    Options = PromptTuningOptions

    def inject(self, model: nn.Module, options: PromptTuningOptions) -> None:
        if options.init == "vocab":
            initial = sample_vocabulary_rows(model, options.prompt_length)
        else:
            weight = model.get_input_embeddings().weight
            initial = torch.randn(options.prompt_length, weight.shape[1], dtype=weight.dtype) * 0.02
        prompt = SoftPrompt(initial)
        attach_module(model, "soft_prompt", prompt)
        prepend_prompt(model, prompt, options.prompt_length)

    def expected_trainable(self, model: nn.Module, options: PromptTuningOptions) -> int:
        return options.prompt_length * hidden_size(model)
