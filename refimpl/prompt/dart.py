"""DART — Zhang et al., "Differentiable Prompt Makes Pre-trained Language Models Better Few-shot Learners",
ICLR 2022 (catalogue: dart).

    P(x) = [x; T_1 … T_m; MASK],   s(y | x) = h_MASK · e(L_y) (+ b_y),   L = L_class + L_fluency

Template tokens T_j and label tokens L_y are unused vocabulary rows whose embeddings become trainable: the
template is found by backpropagation instead of by hand, and the labels need no hand-picked verbalizer words.
Trainable: the m template and c label embeddings ((m + c)·d). The vocabulary itself is not edited (the base stays
bit-identical): a hook on the input embedding substitutes the learned vectors for the reserved ids, and a hook on
the output embedding recomputes the reserved label ids' logits from the learned label vectors, so each label
token has one learned embedding on both sides, like a tied vocabulary row.

`fluency_loss` is the paper's fluency constraint: with the true label token in the mask's place, randomly masked
input tokens are predicted by the masked LM (it needs a masked LM, i.e. `mask_token_id`).
Reserved ids default to the last m + c rows of the vocabulary (template first); `label_init` can start the label
vectors from real words' embeddings. The paper also fine-tunes the LM itself; here it stays frozen (PET covers
full fine-tuning through patterns). Registered for gpt2/llama for the reason given in pet.py; `BertForMaskedLM`
works as well.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..core.api import add_hook, attach_module, state_of
from ..core.architectures import hidden_size
from ..core.errors import RefimplError
from ..core.registry import Method, MethodOptions, register
from .pet import add_cloze, fixed_pattern, mask_tokens, verbalizer_scores


class DARTOptions(MethodOptions):
    template_length: int = Field(3, gt=0, description="number of trainable template tokens m")
    num_labels: int = Field(2, ge=2, description="number of classes c, one trainable label token each")
    mask_token_id: int | None = Field(None, description="masked LMs: the [MASK] id; causal LMs: None")
    reserved_ids: list[int] | None = Field(
        None, description="m + c unused vocabulary ids (template, then labels); default: the last m + c"
    )
    label_init: list[int] | None = Field(
        None, description="c token ids whose embeddings initialise the label tokens (default: reserved rows)"
    )


class DifferentiablePrompt(nn.Module):
    def __init__(self, model: nn.Module, options: DARTOptions) -> None:
        super().__init__()
        vocabulary = model.get_input_embeddings().weight
        m, c = options.template_length, options.num_labels
        ids = options.reserved_ids or list(range(vocabulary.shape[0] - m - c, vocabulary.shape[0]))
        if len(ids) != m + c or len(set(ids)) != m + c or not all(0 <= i < vocabulary.shape[0] for i in ids):
            raise RefimplError(f"option 'reserved_ids': need {m + c} distinct vocabulary ids, got {ids}")
        if options.label_init is not None and len(options.label_init) != c:
            raise RefimplError(f"option 'label_init': need {c} token ids, got {options.label_init}")
        self.template_ids, self.label_ids = ids[:m], ids[m:]
        outputs = model.get_output_embeddings().weight
        self.template = nn.Parameter(vocabulary.detach()[self.template_ids].clone())
        self.labels = nn.Parameter(outputs.detach()[options.label_init or self.label_ids].clone())
        slots = torch.full((vocabulary.shape[0],), -1, dtype=torch.long)
        slots[ids] = torch.arange(m + c)
        self.register_buffer("slot_of_id", slots, persistent=False)  # vocabulary id -> learned row, or -1

    def learned_rows(self) -> torch.Tensor:
        return torch.cat([self.template, self.labels])

    def embed(self, input_ids: torch.Tensor, embedded: torch.Tensor) -> torch.Tensor:
        slots = self.slot_of_id[input_ids]
        learned = self.learned_rows().to(embedded.dtype)[slots.clamp(min=0)]
        return torch.where((slots >= 0).unsqueeze(-1), learned, embedded)

    def label_logits(
        self, hidden: torch.Tensor, logits: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        ids = torch.tensor(self.label_ids, device=logits.device)
        scores = F.linear(hidden, self.labels.to(hidden.dtype), None if bias is None else bias[ids])
        return logits.index_copy(-1, ids, scores.to(logits.dtype))


@register
class DART(Method):
    name = "dart"
    category = "prompt"
    foundation_models = ("LLM",)
    papers = ("dart",)
    summary = (
        "Learn template and label tokens as embeddings of unused vocabulary rows, with a fluency objective."
    )
    update_rule = "s(y|x) = h_MASK · e(L_y) for P(x) = [x; T_1..T_m; MASK];  L = L_class + L_fluency"
    trainable = "the template (m × d) and label (c × d) token embeddings"
    model_types = ("gpt2", "llama")
    Options = DARTOptions

    def inject(self, model: nn.Module, options: DARTOptions) -> None:
        prompt = attach_module(model, "dart", DifferentiablePrompt(model, options))
        head = model.get_output_embeddings()
        add_hook(
            model,
            model.get_input_embeddings().register_forward_hook(
                lambda module, inputs, output: prompt.embed(inputs[0], output)
            ),
        )
        add_hook(
            model,
            head.register_forward_hook(
                lambda module, inputs, output: prompt.label_logits(inputs[0], output, head.bias)
            ),
        )
        pattern = fixed_pattern([], prompt.template_ids, options.mask_token_id)
        add_cloze(model, pattern, verbalizer_scores(prompt.label_ids))

    def expected_trainable(self, model: nn.Module, options: DARTOptions) -> int:
        return (options.template_length + options.num_labels) * hidden_size(model)


def fluency_loss(
    model: nn.Module,
    input_ids: torch.Tensor,
    labels: torch.Tensor,
    probability: float = 0.15,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """DART's fluency constraint: mask input tokens at random, put the true label token in the mask's place, and
    return the masked LM's loss on the masked input tokens."""
    state = state_of(model)
    if state.method.name != DART.name or state.options.mask_token_id is None:
        raise RefimplError("fluency_loss needs a masked LM adapted with dart and a mask_token_id")
    masked, targets = mask_tokens(input_ids, state.options.mask_token_id, probability, generator)
    label_tokens = torch.tensor(model.dart.label_ids, device=input_ids.device)[labels]
    return model(input_ids=masked, labels=targets, fill_mask_with=label_tokens).loss
