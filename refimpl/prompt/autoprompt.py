"""AutoPrompt — Shin et al., "AutoPrompt: Eliciting Knowledge from Language Models with Automatically Generated
Prompts", EMNLP 2020 (catalogue: autoprompt).

    P(x) = [x; T_1 … T_k; MASK]
    trigger search (HotFlip):  V_cand = top-k_w ( -e_w · ∇_{e_{T_j}} L ),  keep the candidate with the lowest L
    label tokens:  p(y | h) = softmax(W h_MASK + b),  V_y = top words w by p(y | e_out(w))

The language model is never updated. What the paper trains is the logistic classifier on the mask's hidden state
that it uses to choose label tokens automatically; that classifier (c·d + c) is this method's trainable part, and
it also gives the label scores while the triggers are searched. The triggers are discrete token ids, kept in a
persistent buffer (saved with the adapter) and changed only by `search_triggers`, which follows the paper's
first-order HotFlip search: rank vocabulary rows by the gradient of the loss at one trigger position, try the top
candidates, keep the best (so the search loss never rises). `select_label_tokens` then reads the label sets off
the classifier and the LM's output embeddings, for use as a verbalizer (e.g. with PET's machinery).

Masked LMs take `mask_token_id`; without it the prediction is read at the last trigger (causal LMs). Registered
for bert: the generic suite's bert batches carry class labels, which the classifier needs (its gpt2/llama
batches carry token labels only); causal LMs work with class labels as well.

On a sequence classifier (BertForSequenceClassification, as in the suite and the sentiment task) there is no MLM
head to verbalise through, so the classifier's label scores are the prediction: the adapted model's `logits` are
`label_logits`. The model's own head is left out of the loss (the core still unfreezes it with `train_head`; it gets
no gradient). Training only fits the classifier: the triggers change only when `search_triggers` is called.
The method's `prepare` (run by `run` and `bench` before training) does the paper's two stages on the first
`SEARCH_BATCHES` (4) training batches: it fits the classifier on the initial triggers (`fit_classifier`,
`CLASSIFIER_STEPS` = 20 Adam steps at 1e-2), then searches each trigger position twice with 10 candidates; training
then fits the classifier to the found triggers. These counts are ours.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping

import torch
from pydantic import Field
from torch import nn

from ..core.api import add_hook, attach_module, state_of
from ..core.architectures import hidden_size
from ..core.errors import RefimplError
from ..core.registry import Method, MethodOptions, TaskData, register
from ..core.training import optimise
from .pet import add_cloze

SEARCH_BATCHES = 4  # training batches the search scores candidates on, in `prepare`
CLASSIFIER_STEPS = 20  # steps fitting the classifier before the search, in `prepare`


class AutoPromptOptions(MethodOptions):
    triggers: list[int] = Field(
        default_factory=lambda: [0, 0, 0],
        min_length=1,
        description="initial trigger token ids (the paper starts from [MASK] tokens)",
    )
    mask_token_id: int | None = Field(None, description="masked LMs: the [MASK] id; causal LMs: None")
    num_labels: int | None = Field(
        None, ge=2, description="classes c; default: the model config's num_labels"
    )


class AutoPromptState(nn.Module):
    def __init__(self, triggers: list[int], mask_token_id: int | None, hidden: int, labels: int) -> None:
        super().__init__()
        self.register_buffer("trigger_ids", torch.tensor(triggers, dtype=torch.long))
        self.mask = [] if mask_token_id is None else [mask_token_id]
        self.classifier = nn.Linear(hidden, labels)

    def pattern(self) -> tuple[torch.Tensor, torch.Tensor]:
        after = torch.cat([self.trigger_ids, self.trigger_ids.new_tensor(self.mask)])
        return self.trigger_ids.new_zeros(0), after

    def scores(self, output) -> torch.Tensor:
        hidden = output.hidden_states[-1][:, -1]
        return self.classifier(hidden.to(self.classifier.weight.dtype))


def _labels(model: nn.Module, options: AutoPromptOptions) -> int:
    return options.num_labels or model.config.num_labels


@register
class AutoPrompt(Method):
    name = "autoprompt"
    category = "prompt"
    foundation_models = ("LLM",)
    papers = ("autoprompt",)
    summary = "Search discrete trigger tokens by gradient (HotFlip); the LM stays frozen."
    update_rule = (
        "P(x) = [x; T_1..T_k; MASK];  T_j ← argmin_{w ∈ top-k(-e_w·∇L)} L;  p(y|h) = softmax(W h + b)"
    )
    trainable = (
        "the label-selection classifier on the mask's hidden state (triggers are searched, not trained)"
    )
    model_types = ("bert",)
    Options = AutoPromptOptions

    def inject(self, model: nn.Module, options: AutoPromptOptions) -> None:
        like = next(model.parameters())
        state = AutoPromptState(
            options.triggers, options.mask_token_id, hidden_size(model), _labels(model, options)
        )
        attach_module(model, "autoprompt", state.to(device=like.device, dtype=like.dtype))
        add_cloze(model, state.pattern, state.scores, hidden_states=True)
        add_hook(model, model.register_forward_hook(_predict_with_label_scores, with_kwargs=True))

    def prepare(self, model: nn.Module, options: AutoPromptOptions, data: TaskData) -> None:
        batches = list(itertools.islice(data.batches(), SEARCH_BATCHES))
        fit_classifier(model, batches, CLASSIFIER_STEPS)
        search_triggers(model, batches, iterations=2 * len(options.triggers))

    def expected_trainable(self, model: nn.Module, options: AutoPromptOptions) -> int:
        return (hidden_size(model) + 1) * _labels(model, options)


def _predict_with_label_scores(module: nn.Module, args: tuple, kwargs: dict, output):
    """A sequence classifier's `logits` (one row per sequence) come from its own head, which the AutoPrompt loss
    never reaches: make them the label scores that are trained. A language model's per-token logits are kept."""
    if output.logits.dim() == 2:
        output["logits"] = output["label_logits"]
    return output


def _autoprompt(model: nn.Module) -> AutoPromptState:
    if state_of(model).method.name != AutoPrompt.name:
        raise RefimplError("the model is not adapted with autoprompt")
    return model.autoprompt


def _loss_and_trigger_gradient(
    model: nn.Module, batches: list[Mapping[str, torch.Tensor]], position: int
) -> tuple[float, torch.Tensor]:
    """Mean loss over the batches and the summed gradient at trigger `position`'s input embedding."""
    captured: list[torch.Tensor] = []

    def keep(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        captured.append(output.detach().requires_grad_())
        return captured[-1]

    handle = model.get_input_embeddings().register_forward_hook(keep)
    total, gradient = 0.0, None
    try:
        for batch in batches:
            captured.clear()
            loss = model(**batch).loss / len(batches)
            (embedded,) = torch.autograd.grad(loss, captured[-1])
            column = embedded[:, batch["input_ids"].shape[1] + position].sum(0)
            gradient = column if gradient is None else gradient + column
            total += loss.item()
    finally:
        handle.remove()
    return total, gradient


def fit_classifier(
    model: nn.Module, batches: list[Mapping[str, torch.Tensor]], steps: int, lr: float = 1e-2
) -> list[float]:
    """Fit the label classifier alone on the current triggers (Adam, cycling through `batches`, dropout off), so
    that a trigger search scores candidates with a classifier that has learned something; returns the losses."""
    return optimise(model, _autoprompt(model).classifier.parameters(), batches, steps, lr, dropout=False)


@torch.no_grad()
def _loss(model: nn.Module, batches: list[Mapping[str, torch.Tensor]]) -> float:
    return sum(model(**batch).loss.item() for batch in batches) / len(batches)


def search_triggers(
    model: nn.Module,
    batches: Iterable[Mapping[str, torch.Tensor]],
    iterations: int,
    candidates: int = 10,
) -> list[float]:
    """HotFlip search over the trigger tokens (one position per iteration, in turn); returns the loss after each
    iteration. Batches carry input_ids, attention_mask and class labels."""
    state = _autoprompt(model)
    batches = list(batches)
    if not batches or iterations <= 0 or candidates <= 0:
        raise RefimplError("search_triggers needs batches, iterations > 0 and candidates > 0")
    vocabulary = model.get_input_embeddings().weight
    history = []
    for iteration in range(iterations):
        position = iteration % len(state.trigger_ids)
        best_loss, gradient = _loss_and_trigger_gradient(model, batches, position)
        # First-order estimate of the loss change from swapping in token w: (e_w - e_current) · gradient.
        ranking = -(vocabulary.detach() @ gradient.to(vocabulary.dtype))
        ranking[state.trigger_ids[position]] = -float("inf")
        best_token = int(state.trigger_ids[position])
        for token in ranking.topk(candidates).indices.tolist():
            state.trigger_ids[position] = token
            if (loss := _loss(model, batches)) < best_loss:
                best_loss, best_token = loss, token
        state.trigger_ids[position] = best_token
        history.append(best_loss)
    return history


@torch.no_grad()
def select_label_tokens(model: nn.Module, per_label: int) -> list[list[int]]:
    """The paper's automatic label tokens: for each class, the words whose output embedding the trained
    classifier assigns to that class with the highest probability."""
    state = _autoprompt(model)
    outputs = model.get_output_embeddings()
    if outputs is None:
        raise RefimplError("select_label_tokens needs a model with an LM head (output embeddings)")
    probabilities = state.classifier(outputs.weight.to(state.classifier.weight.dtype)).softmax(-1)
    return probabilities.topk(per_label, dim=0).indices.T.tolist()
