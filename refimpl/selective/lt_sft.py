"""LT-SFT — Ansell et al., "Composable Sparse Fine-Tuning for Cross-Lingual Transfer", ACL 2022
(catalogue: lt-sft). Lottery-Ticket Sparse Fine-Tuning.

    phase 1: fine-tune fully, θ0 → θ1;   mask = top-K of |θ1 − θ0|;   phase 2: θ = θ0 + Δ, Δ trained only on the mask

Trainable (phase 2): exactly K = `keep_ratio` × (weights of the targeted linear layers) entries, stored as a
sparse delta (`refimpl.core.sparse`), plus the task head. Sparse fine-tunings of the same base compose by adding
their deltas, and the delta merges into the weights.

Phase 1 is ordinary full fine-tuning of a copy of the model; `select_lottery_ticket(model, finetuned)` takes its
state dict (or, with `are_deltas=True`, the differences θ1 − θ0 under the same names), keeps the K most changed
targeted weights and restarts the delta at zero, i.e. from the original values. Before it is called, the
positions are a fixed-seed random choice. The method's `prepare` (run by `run` and `bench` before training) runs
phase 1 as the task's full fine-tuning reference and selects the ticket from it. The default `keep_ratio` (1%) is
ours, inside the 0.16%–8% range Table 1 of the survey reports. Simplifications: only linear-layer weights are candidates (the paper also
considers other parameters), and the paper's optional regularisation towards θ0 is left out.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from pydantic import Field
from torch import nn
from transformers.pytorch_utils import Conv1D

from ..core.api import state_of
from ..core.errors import RefimplError
from ..core.registry import TaskData, register
from ..core.sparse import SparseDeltaMethod, SparseDeltaOptions, select_top_k, sparse_layers


class LtSftOptions(SparseDeltaOptions):
    keep_ratio: float = Field(0.01, gt=0, le=1, description="K as a fraction of the targeted weights")


def select_lottery_ticket(
    model: nn.Module, finetuned: Mapping[str, torch.Tensor], k: int | None = None, are_deltas: bool = False
) -> torch.Tensor:
    """Keep the K targeted weights that changed most in phase 1 and restart the sparse delta from zero.

    `finetuned` maps the base model's parameter names (e.g. "bert.encoder.layer.0.attention.self.query.weight")
    to fine-tuned values, or to θ1 − θ0 with `are_deltas`. `k`, if given, must match the adapter's K (fixed by
    keep_ratio at apply time, so that adapter files have a fixed shape). Returns the kept flat positions."""
    if state_of(model).method.name != "lt_sft":
        raise RefimplError("select_lottery_ticket needs a model adapted with 'lt_sft'")
    capacity = model.sparse_delta.values.numel()
    if k is not None and k != capacity:
        raise RefimplError(f"k = {k}, but this adapter holds K = {capacity} (set it with keep_ratio)")
    names = {id(module): name for name, module in model.named_modules()}
    scores = []
    for layer in sparse_layers(model):
        key = names[id(layer)] + ".weight"
        if key not in finetuned:
            raise RefimplError(f"the fine-tuned state has no {key!r}")
        change = finetuned[key].to(layer.base.weight.device, torch.float32)
        if not are_deltas:
            change = change - layer.base.weight.float()
        scores.append((change.T if isinstance(layer.base, Conv1D) else change).abs())
    return select_top_k(model, scores)


@register
class LtSft(SparseDeltaMethod):
    name = "lt_sft"
    category = "selective"
    foundation_models = ("LLM",)
    papers = ("lt-sft",)
    summary = (
        "Fine-tune fully, keep the K most changed weights, then re-train only those from the original values."
    )
    update_rule = "θ = θ0 + Δ,  Δ non-zero only on the top-K of |θ_fully-tuned − θ0|"
    trainable = "K = keep_ratio × (targeted weights) sparse delta values, and the task head"
    Options = LtSftOptions

    def prepare(self, model: nn.Module, options: LtSftOptions, data: TaskData) -> None:
        select_lottery_ticket(model, data.fine_tuned().state_dict())
