"""Null prompts — Logan et al., "Cutting Down on Prompts and Parameters: Simple Few-Shot Learning with Language
Models", Findings of ACL 2022 (catalogue: null-prompts).

    P(x) = [x; MASK],   s(y | x) = M(v(y) | P(x)) at the mask,   θ = (W0, b0 + Δb)

No pattern text at all: the input followed by the mask, read through a verbalizer (PET's machinery with an empty
pattern). Trainable: only the bias terms of the model (BitFit's "all" selection, with no head weight matrix), the
combination the paper recommends as matching full fine-tuning at a fraction of the storage.
Registered for gpt2 (causal LM: the prediction is the next token after the input); LLaMA has no bias terms, and
the generic suite's BERT has no LM head, though `BertForMaskedLM` works (tests/refimpl/test_null_prompts.py).
"""

from __future__ import annotations

from torch import nn

from ..core.registry import Method, register
from ..selective.bitfit import BitFit, BitFitOptions, selected_biases
from .pet import VerbalizerOptions, add_cloze, fixed_pattern, verbalizer_scores

_BIASES = BitFitOptions(bias_terms="all", train_head=False)


@register
class NullPrompts(Method):
    name = "null_prompts"
    category = "prompt"
    foundation_models = ("LLM",)
    papers = ("null-prompts",)
    summary = "Input followed by a mask, no pattern words; train only the bias terms through a verbalizer."
    update_rule = "s(y|x) = M(v(y) | [x; MASK]) at the mask;  only biases b = b0 + Δb trained"
    trainable = "the model's bias terms (BitFit), no weight matrix"
    model_types = ("gpt2",)
    Options = VerbalizerOptions

    def inject(self, model: nn.Module, options: VerbalizerOptions) -> None:
        for bias in selected_biases(model, _BIASES):
            bias.requires_grad_(True)
        add_cloze(model, fixed_pattern([], [], options.mask_token_id), verbalizer_scores(options.verbalizer))

    def expected_trainable(self, model: nn.Module, options: VerbalizerOptions) -> int:
        return BitFit().expected_trainable(model, _BIASES)
