"""Textual Inversion — Gal et al., "An Image is Worth One Word: Personalizing Text-to-Image Generation using Textual
Inversion", ICLR 2023 (catalogue: textual-inversion).

    v* = argmin_v E ||ε − ε_θ(z_t, t, c(y; S* ↦ v))||²,   everything else frozen

A new pseudo-word S* gets one embedding v*, the only trainable parameter; prompts containing S* ("a photo of S*")
are conditioned through it, and v* is found with the ordinary denoising loss.

Simplification: the tiny UNet has no text encoder; it takes the encoder's output directly. So, as ED-LoRA here does,
v* replaces the conditioning row at `placeholder_position` (the token position of S* in the prompt) in every
cross-attention layer, through a forward pre-hook on the UNet that rewrites `encoder_hidden_states`; in the paper v*
is a token embedding that the frozen text encoder turns into context for every position.

Initialisation: the paper starts v* from the embedding of a single coarse descriptor of the concept (e.g.
"sculpture"); give that vector as `initializer` (length cross_attention_dim). Without one v* starts at zero, a
deterministic choice of ours. Not identity at init (the placeholder row is replaced from the start) and not
mergeable (the change is to the input, not to weights).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from pydantic import Field
from torch import nn

from ..core.api import add_hook, attach_module
from ..core.errors import RefimplError
from ..core.layers import new_parameter
from ..core.registry import Method, MethodOptions, register


class TextualInversionOptions(MethodOptions):
    placeholder_position: int = Field(
        1, ge=0, description="index of the pseudo-word S* among the text tokens (0 is the start token)"
    )
    initializer: list[float] | None = Field(
        None, description="v* at the start: the embedding of a coarse descriptor word; zeros if not given"
    )


class PseudoWord(nn.Module):
    def __init__(self, dim: int, like: torch.Tensor, initializer: list[float] | None) -> None:
        super().__init__()
        self.embedding = new_parameter(dim, like=like, init="zeros")
        if initializer is not None:
            if len(initializer) != dim:
                raise RefimplError(
                    f"option 'initializer': {len(initializer)} values but the text width is {dim}"
                )
            with torch.no_grad():
                self.embedding.copy_(torch.tensor(initializer))


def _substitute(
    word: PseudoWord, position: int, _unet: nn.Module, args: tuple, kwargs: dict[str, Any]
) -> tuple[tuple, dict[str, Any]]:
    positional = len(args) > 2  # encoder_hidden_states is the UNet's third argument
    states = args[2] if positional else kwargs["encoder_hidden_states"]
    if position >= states.shape[1]:
        raise RefimplError(
            f"option 'placeholder_position': {position} is beyond the {states.shape[1]} text tokens"
        )
    states = states.clone()
    states[:, position] = word.embedding.to(states.dtype)
    if positional:
        return (*args[:2], states, *args[3:]), kwargs
    return args, {**kwargs, "encoder_hidden_states": states}


@register
class TextualInversion(Method):
    name = "textual_inversion"
    category = "prompt"
    foundation_models = ("VGM",)
    papers = ("textual-inversion",)
    summary = (
        "Learn one embedding v* for a new pseudo-word that stands in the text conditioning for a concept."
    )
    update_rule = "c[placeholder] = v*;  v* = argmin E ||ε − ε_θ(z_t, t, c)||²"
    trainable = "the pseudo-word's embedding v* (cross_attention_dim values)"
    model_types = ("unet",)
    Options = TextualInversionOptions

    def inject(self, model: nn.Module, options: TextualInversionOptions) -> None:
        word = PseudoWord(model.config.cross_attention_dim, model.conv_in.weight, options.initializer)
        word = attach_module(model, "textual_inversion", word)
        hook = partial(_substitute, word, options.placeholder_position)
        add_hook(model, model.register_forward_pre_hook(hook, with_kwargs=True))

    def expected_trainable(self, model: nn.Module, options: TextualInversionOptions) -> int:
        """One embedding of the text conditioning's width."""
        return model.config.cross_attention_dim
