"""PASTA — Yang et al., "Parameter-Efficient Tuning with Special Token Adaptation", EACL 2023 (catalogue: pasta).

    h_i^l ← h_i^l + v_{t_i}^l   if token t_i is a special token, before block l;  other tokens unchanged

Trainable: one vector per layer and per special token id (v = 0 at init, so the model starts unchanged), and the
task head, which the paper trains too. The paper adapts BERT's and RoBERTa's [CLS] and [SEP]; BERT configs name
no such ids, so for BERT we default to 101 and 102, their ids in BERT's standard WordPiece vocabularies. For
other models the default is the bos / eos / cls / sep ids the config names; `special_token_ids` overrides both.

The registered model types are BERT and LLaMA, whose tokenizers put special tokens ([CLS]/[SEP], <s>) into every
input. GPT-2's tokenizer adds none, so PASTA would have nothing to adapt unless the caller appends
<|endoftext|> to each input; the mechanism works on GPT-2 all the same (see tests/refimpl/test_pasta.py).
Not mergeable: the update depends on which tokens are in the input.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import nn

from ..core.api import add_hook, attach_module
from ..core.architectures import hidden_size, named_blocks
from ..core.errors import RefimplError
from ..core.layers import new_parameter
from ..core.registry import Method, MethodOptions, register
from ..core.sparse import task_head_size, train_task_head

BERT_CLS_SEP = (101, 102)


class PastaOptions(MethodOptions):
    special_token_ids: list[int] | None = Field(
        None, description="token ids that get a vector at every layer; default: the model's special ids"
    )
    train_head: bool = Field(True, description="also train the task head")


def special_ids(model: nn.Module, options: PastaOptions) -> list[int]:
    config = model.config
    if options.special_token_ids is not None:
        ids = options.special_token_ids
    elif config.model_type == "bert":
        ids = list(BERT_CLS_SEP)
    else:
        named = (getattr(config, f"{kind}_token_id", None) for kind in ("bos", "eos", "cls", "sep"))
        ids = [i for i in named if isinstance(i, int)]
    ids = list(dict.fromkeys(ids))
    if not ids or not all(0 <= i < config.vocab_size for i in ids):
        raise RefimplError(
            f"option 'special_token_ids': need ids in [0, {config.vocab_size}), got {ids or 'none from the config'}"
        )
    return ids


class SpecialTokenVectors(nn.Module):
    """v[l, j]: the vector added to token id `ids[j]` before block l. `which` holds the current input's one-hot
    special-token membership (batch, length, len(ids)), set by a pre-hook on the model for each forward."""

    def __init__(self, layers: int, ids: list[int], hidden: int, like: torch.Tensor) -> None:
        super().__init__()
        self.ids = ids
        self.vectors = new_parameter(layers, len(ids), hidden, like=like, init="zeros")
        self.which: torch.Tensor | None = None

    def note_input(self, input_ids: torch.Tensor | None) -> None:
        if input_ids is None:
            raise RefimplError("pasta finds special tokens by id: call the model with input_ids")
        ids = torch.tensor(self.ids, device=input_ids.device)
        self.which = (input_ids.unsqueeze(-1) == ids).to(self.vectors.dtype)

    def add(self, layer: int, hidden: torch.Tensor) -> torch.Tensor:
        return hidden + (self.which @ self.vectors[layer]).to(hidden.dtype)


@register
class Pasta(Method):
    name = "pasta"
    category = "selective"
    foundation_models = ("LLM",)
    papers = ("pasta",)
    summary = "Add a trainable vector to the hidden states of special tokens ([CLS], [SEP]) at every layer."
    update_rule = "h_i^l ← h_i^l + v_{t_i}^l for special tokens t_i, before each block (v = 0 at init)"
    trainable = "one vector per layer and special token id, and the task head"
    identity_at_init = True
    model_types = ("bert", "llama")
    Options = PastaOptions

    def inject(self, model: nn.Module, options: PastaOptions) -> None:
        blocks = named_blocks(model)[1]
        vectors = SpecialTokenVectors(
            len(blocks), special_ids(model, options), hidden_size(model), like=next(model.parameters())
        )
        attach_module(model, "pasta_vectors", vectors)

        def note(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            vectors.note_input(args[0] if args else kwargs.get("input_ids"))

        add_hook(model, model.register_forward_pre_hook(note, with_kwargs=True))
        for layer, block in enumerate(blocks):
            add_hook(model, block.register_forward_pre_hook(_add_vectors(vectors, layer), with_kwargs=True))
        train_task_head(model, options.train_head)

    def expected_trainable(self, model: nn.Module, options: PastaOptions) -> int:
        vectors = len(named_blocks(model)[1]) * len(special_ids(model, options)) * hidden_size(model)
        return vectors + task_head_size(model, options.train_head)


def _add_vectors(vectors: SpecialTokenVectors, layer: int):
    def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple, dict]:
        if args:
            return (vectors.add(layer, args[0]), *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": vectors.add(layer, kwargs["hidden_states"])}

    return hook
