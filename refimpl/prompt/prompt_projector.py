"""Cross-model prompt projector — Su et al., "On Transferability of Prompt Tuning for Natural Language
Processing", NAACL 2022 (catalogue: prompt-transferability).

    P_target = W_2 tanh(W_1 P_source + b_1) + b_2,   model input [P_target; E(x)],   P_source fixed

Trainable: the two-layer projector only (s·m + m + m·d + d for source width s, hidden m, target width d). The
source prompt, trained with prompt tuning on another model (possibly of another width), is a persistent buffer,
so the adapter file carries it. It comes from `init_from` (a saved prompt adapter folder) or is installed later
with `set_source_prompt`; until then it is a N(0, 1) placeholder draw, stated so nobody mistakes it for a
transferred prompt. Training the projector on the target task is the paper's task-tuning projector;
`distance_loss` is its other objective, pulling the projected prompt onto a prompt trained on the target model.
The tanh non-linearity and the default hidden width (the target's) are our choices.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..core.api import attach_module, state_of
from ..core.architectures import hidden_size
from ..core.errors import RefimplError
from ..core.prompting import prepend_prompt
from ..core.registry import Method, MethodOptions, register
from .ppt import PREPENDED_PROMPT_MODELS, read_prompt


class PromptProjectorOptions(MethodOptions):
    prompt_length: int = Field(100, gt=0, description="number of prompt tokens n (of the source prompt)")
    source_dim: int | None = Field(None, gt=0, description="source model width s; default: the target's")
    projector_hidden: int | None = Field(
        None, gt=0, description="projector hidden width m; default: the target's width"
    )
    init_from: str | None = Field(None, description="folder of the source model's saved prompt adapter")


class PromptProjector(nn.Module):
    def __init__(self, source: torch.Tensor, hidden: int, target_dim: int) -> None:
        super().__init__()
        self.register_buffer("source_prompt", source)
        factory = {"dtype": source.dtype, "device": source.device}
        self.project = nn.Sequential(
            nn.Linear(source.shape[1], hidden, **factory), nn.Tanh(), nn.Linear(hidden, target_dim, **factory)
        )

    def prompt(self) -> torch.Tensor:
        return self.project(self.source_prompt)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.prompt().expand(tokens.shape[0], -1, -1)


def _dims(model: nn.Module, options: PromptProjectorOptions) -> tuple[int, int, int]:
    d = hidden_size(model)
    return options.source_dim or d, options.projector_hidden or d, d


def _projector(model: nn.Module) -> PromptProjector:
    if state_of(model).method.name != PromptProjectorMethod.name:
        raise RefimplError("the model is not adapted with prompt_projector")
    return model.prompt_projector


@torch.no_grad()
def set_source_prompt(model: nn.Module, prompt: torch.Tensor) -> None:
    """Install the source model's trained prompt (n × s) to be projected."""
    buffer = _projector(model).source_prompt
    if prompt.shape != buffer.shape:
        raise RefimplError(f"source prompt has shape {tuple(prompt.shape)}, expected {tuple(buffer.shape)}")
    buffer.copy_(prompt)


def distance_loss(model: nn.Module, target_prompt: torch.Tensor) -> torch.Tensor:
    """The paper's distance-minimising objective: mean squared distance of the projected prompt to a prompt
    trained for the same task on the target model."""
    projected = _projector(model).prompt()
    return F.mse_loss(projected, target_prompt.to(projected.dtype))


@register
class PromptProjectorMethod(Method):
    name = "prompt_projector"
    category = "prompt"
    foundation_models = ("LLM",)
    papers = ("prompt-transferability",)
    summary = "Map a prompt trained on one model into another model's embedding space with a learned MLP."
    update_rule = "h = f([MLP(P_source); E(x)]),  P_source fixed, MLP trained"
    trainable = "the two-layer projector (source width → hidden → target width)"
    model_types = PREPENDED_PROMPT_MODELS
    Options = PromptProjectorOptions

    def inject(self, model: nn.Module, options: PromptProjectorOptions) -> None:
        source_dim, hidden, target_dim = _dims(model, options)
        like = model.get_input_embeddings().weight
        shape = (options.prompt_length, source_dim)
        if options.init_from is None:
            source = torch.randn(shape)
        else:
            source = read_prompt(options.init_from, shape)
        projector = PromptProjector(source.to(device=like.device, dtype=like.dtype), hidden, target_dim)
        attach_module(model, "prompt_projector", projector)
        prepend_prompt(model, projector, options.prompt_length)

    def expected_trainable(self, model: nn.Module, options: PromptProjectorOptions) -> int:
        source_dim, hidden, target_dim = _dims(model, options)
        return source_dim * hidden + hidden + hidden * target_dim + target_dim
