"""PET — Schick & Schütze, "Exploiting Cloze Questions for Few Shot Text Classification and Natural Language
Inference", EACL 2021 (catalogue: pet).

    P(x) = [before; x; after; MASK],   s(y | x) = M(v(y) | P(x)) at the MASK,   L = CE(softmax_y s(y | x), y)

A pattern-verbalizer pair (PVP) turns classification into a cloze question: the pattern wraps the input token ids
with fixed tokens and a mask, the verbalizer names one vocabulary token per label, and the label scores are the
language model's logits of those tokens at the mask position. PET fine-tunes the whole language model with this
cloze loss, so every parameter of the model is trainable (PET is listed as a prompt method because of its
PVPs, not because it is parameter-efficient). `pet_loss` is the paper's training loss, the cloze loss mixed with a
small language-modelling term, (1 − α)·L_cloze + α·L_LM with α = 10⁻⁴.

The PVP machinery (`add_cloze`) is shared by null prompts, DART and AutoPrompt. It works on masked LMs (give
`mask_token_id`; the mask is appended after the pattern) and on causal LMs (no mask token: the prediction is the
next token after the pattern, read at the last position), so inputs must not be right-padded. Called with class
labels (shape (batch,)) the model returns the cloze loss and `label_logits`; called with token labels (shape
(batch, length)) it returns the language-modelling loss on the input tokens (PET's auxiliary LM objective;
pattern positions are not scored); `fill_mask_with=<ids>` puts those tokens in the mask's place (DART's
fluency objective conditions on the true label token there). Logits are cut back to the input's positions either way. Token ids in
patterns and verbalizers come from the user's tokenizer; the defaults are placeholders for the tiny 128-token
test vocabulary. The generic suite's BERT is a sequence classifier without an LM head, so the registry lists
gpt2 and llama; `BertForMaskedLM` works too (tests/refimpl/test_pet.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..core.api import add_hook, state_of
from ..core.errors import RefimplError
from ..core.prompting import IGNORE_INDEX
from ..core.registry import Method, MethodOptions, register

PatternIds = Callable[
    [], tuple[torch.Tensor, torch.Tensor]
]  # () -> (ids before x, ids after x incl. any mask)
LabelScorer = Callable[[Any], torch.Tensor]  # model output -> (batch, labels) scores at the last position


class VerbalizerOptions(MethodOptions):
    verbalizer: list[int] = Field(
        default_factory=lambda: [3, 4], min_length=2, description="one vocabulary token id per label"
    )
    mask_token_id: int | None = Field(
        None, description="masked LMs: the [MASK] id appended after the pattern; causal LMs: None"
    )


class PatternOptions(VerbalizerOptions):
    pattern_before: list[int] = Field(default_factory=list, description="pattern token ids before the input")
    pattern_after: list[int] = Field(
        default_factory=lambda: [5], description="pattern token ids after the input"
    )


def fixed_pattern(before: list[int], after: list[int], mask_token_id: int | None) -> PatternIds:
    """A hand-written pattern: fixed ids around the input, then the mask for masked LMs."""
    first = torch.tensor(before, dtype=torch.long)
    last = torch.tensor(after + ([] if mask_token_id is None else [mask_token_id]), dtype=torch.long)
    return lambda: (first, last)


def verbalizer_scores(verbalizer: list[int]) -> LabelScorer:
    """PET's label scores: the LM logits of each label's token at the prediction position."""
    ids = torch.tensor(verbalizer)
    return lambda output: output.logits[:, -1, ids.to(output.logits.device)]


def add_cloze(model: nn.Module, pattern: PatternIds, score: LabelScorer, hidden_states: bool = False) -> None:
    """Wrap every call of `model` in a pattern and score labels at the last position (see module docstring)."""
    held: dict[str, Any] = {}

    def before(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict]:
        kwargs = dict(kwargs)
        if args:
            kwargs["input_ids"], args = args[0], args[1:]
        input_ids = kwargs.get("input_ids")
        if input_ids is None:
            raise RefimplError("a cloze pattern wraps input_ids; inputs_embeds are not supported")
        first, last = (ids.to(input_ids.device) for ids in pattern())
        batch = input_ids.shape[0]
        wrapped = torch.cat([first.expand(batch, -1), input_ids, last.expand(batch, -1)], dim=1)
        if (
            fill := kwargs.pop("fill_mask_with", None)
        ) is not None:  # (batch,) ids to put in the mask's place
            if not len(last):
                raise RefimplError("fill_mask_with needs a pattern that ends in a mask")
            wrapped[:, -1] = fill
        kwargs["input_ids"] = wrapped
        held["span"] = (len(first), len(first) + input_ids.shape[1])
        if (mask := kwargs.get("attention_mask")) is not None:
            ones = (mask.new_ones(batch, len(first)), mask.new_ones(batch, len(last)))
            kwargs["attention_mask"] = torch.cat([ones[0], mask, ones[1]], dim=1)
        labels = kwargs.pop("labels", None)
        if labels is not None and labels.dim() == 1:
            held["labels"] = labels
        elif labels is not None:
            ignore = (
                labels.new_full((batch, len(first)), IGNORE_INDEX),
                labels.new_full((batch, len(last)), IGNORE_INDEX),
            )
            kwargs["labels"] = torch.cat([ignore[0], labels, ignore[1]], dim=1)
        if hidden_states:
            kwargs["output_hidden_states"] = True
        return args, kwargs

    def after(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        start, end = held.pop("span")
        output["label_logits"] = scores = score(output)
        if (labels := held.pop("labels", None)) is not None:
            output["loss"] = F.cross_entropy(scores.float(), labels.to(scores.device))
        output["logits"] = output.logits[:, start:end]
        return output

    add_hook(model, model.register_forward_pre_hook(before, with_kwargs=True))
    add_hook(model, model.register_forward_hook(after, with_kwargs=True))


def mask_tokens(
    input_ids: torch.Tensor,
    mask_token_id: int,
    probability: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked-LM inputs and targets: each token is masked with `probability` (at least one per example); the
    targets keep the masked tokens and ignore the rest."""
    chosen = torch.rand(input_ids.shape, generator=generator) < probability
    chosen[:, 0] |= ~chosen.any(dim=1)
    chosen = chosen.to(input_ids.device)
    return input_ids.masked_fill(chosen, mask_token_id), input_ids.masked_fill(~chosen, IGNORE_INDEX)


def pet_loss(
    model: nn.Module,
    input_ids: torch.Tensor,
    labels: torch.Tensor,
    alpha: float = 1e-4,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """PET's training loss (1 − α)·L_cloze + α·L_LM: the cloze loss plus a language-modelling term that keeps
    the model a language model (masked-LM loss on randomly masked tokens, or the causal LM loss)."""
    state = state_of(model)
    if state.method.name != PET.name:
        raise RefimplError("pet_loss needs a model adapted with pet")
    cloze = model(input_ids=input_ids, labels=labels).loss
    if state.options.mask_token_id is None:
        language = model(input_ids=input_ids, labels=input_ids).loss
    else:
        masked, targets = mask_tokens(input_ids, state.options.mask_token_id, generator=generator)
        language = model(input_ids=masked, labels=targets).loss
    return (1 - alpha) * cloze + alpha * language


def predict(
    model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """The label a cloze-adapted model assigns to each input."""
    with torch.no_grad():
        return model(input_ids=input_ids, attention_mask=attention_mask).label_logits.argmax(-1)


@register
class PET(Method):
    name = "pet"
    category = "prompt"
    foundation_models = ("LLM",)
    papers = ("pet",)
    summary = (
        "Rewrite inputs as cloze questions (pattern + verbalizer) and fine-tune the LM on the cloze loss."
    )
    update_rule = "s(y|x) = M(v(y) | P(x)) at the mask;  L = CE(softmax_y s, y);  all LM weights trained"
    trainable = "the whole language model (PET is full fine-tuning through pattern-verbalizer pairs)"
    model_types = ("gpt2", "llama")  # needs an LM head; BertForMaskedLM also works (not the suite's BERT)
    Options = PatternOptions
    trains_pretrained_weights = True

    def inject(self, model: nn.Module, options: PatternOptions) -> None:
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        pattern = fixed_pattern(options.pattern_before, options.pattern_after, options.mask_token_id)
        add_cloze(model, pattern, verbalizer_scores(options.verbalizer))

    def expected_trainable(self, model: nn.Module, options: PatternOptions) -> int:
        return sum(p.numel() for p in model.parameters())  # every (untied) weight of the model
