"""Inserting learned vectors into a transformers model's input embeddings (prompt tuning and its relatives).

A forward pre-hook turns `input_ids` into `inputs_embeds`, inserts the prompt, and extends the attention mask (and
per-token labels, with -100) to match; a forward hook cuts the prompt positions off the logits again, so the
adapted model takes and returns tensors of the same shapes as the base model.

The prompt goes in front of the input, except in encoders that classify from their first token ([CLS]): there it
goes right after that token, so the classifier still reads [CLS] rather than a prompt vector that is the same for
every example (which would give every input the same logits).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .api import add_hook
from .architectures import ARCHITECTURES, model_type_of

IGNORE_INDEX = -100
PromptFactory = Callable[[torch.Tensor], torch.Tensor]  # token embeddings (B, L, d) -> prompt (B, n, d)


def prompt_position(model: nn.Module) -> int:
    """Where the prompt goes: after [CLS] in first-token-pooling encoders, else at the very front."""
    architecture = ARCHITECTURES.get(model_type_of(model) or "")
    return 1 if architecture is not None and architecture.pools_first_token else 0


def prepend_prompt(model: nn.Module, prompt_for: PromptFactory, length: int) -> None:
    embed = model.get_input_embeddings()
    at = prompt_position(model)

    def insert(sequence: torch.Tensor, inserted: torch.Tensor) -> torch.Tensor:
        return torch.cat([sequence[:, :at], inserted, sequence[:, at:]], dim=1)

    def before(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple, dict]:
        kwargs = dict(kwargs)
        if args:  # model(input_ids, ...) called positionally
            kwargs["input_ids"], args = args[0], args[1:]
        input_ids = kwargs.pop("input_ids", None)
        tokens = kwargs.pop("inputs_embeds", None)
        if tokens is None:
            tokens = embed(input_ids)
        prompt = prompt_for(tokens).to(tokens.dtype)
        batch = tokens.shape[0]
        kwargs["inputs_embeds"] = insert(tokens, prompt)
        mask = kwargs.get("attention_mask")
        if mask is not None:
            kwargs["attention_mask"] = insert(mask, mask.new_ones(batch, length))
        labels = kwargs.get("labels")
        if (
            labels is not None and labels.dim() == 2
        ):  # per-token labels (causal LM, tagging): none for the prompt
            kwargs["labels"] = insert(labels, labels.new_full((batch, length), IGNORE_INDEX))
        return args, kwargs

    def after(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        logits = getattr(output, "logits", None)
        if logits is not None and logits.dim() == 3:
            output.logits = torch.cat([logits[:, :at], logits[:, at + length :]], dim=1)
        return output

    add_hook(model, model.register_forward_pre_hook(before, with_kwargs=True))
    add_hook(model, model.register_forward_hook(after, with_kwargs=True))


def sample_vocabulary_rows(
    model: nn.Module, count: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Rows of the input embedding matrix for random token ids: the initialisation prompt-tuning papers favour."""
    weight = model.get_input_embeddings().weight
    ids = torch.randint(0, weight.shape[0], (count,), generator=generator)
    return weight.detach()[ids.to(weight.device)].clone()
