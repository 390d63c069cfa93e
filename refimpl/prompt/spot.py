"""SPoT — Vu et al., "SPoT: Better Frozen Model Adaptation through Soft Prompt Transfer", ACL 2022
(catalogue: spot).

    source:  P_s = argmin_P L_source(f([P; E(x)]))        target:  prompt tuning with P initialised to P_s

Trainable: the target's n soft prompt vectors (n·d). The source prompt is learned with plain prompt tuning (or this
method without `init_from`) on a source task, saved with `refimpl.save_adapter`, and passed as `init_from`. Without
it, `prepare` (PPT's, run by `run` and `bench`) trains the source prompt on the one source task the shipped tasks
offer, language modelling of the generation backbone's pre-training text; that is PPT's pre-training there too, so
on that task SPoT and PPT are the same run.
To choose a source, SPoT reads prompts as task embeddings: `task_similarity` gives the paper's two scores (cosine
of the average prompt tokens; average cosine over all token pairs) and `rank_sources` orders candidate source
prompts by similarity to a (briefly trained) target prompt.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
import torch.nn.functional as F

from ..core.registry import register
from .ppt import PPT

Similarity = Literal["average_tokens", "per_token"]


def task_similarity(
    first: torch.Tensor, second: torch.Tensor, metric: Similarity = "average_tokens"
) -> float:
    """Similarity of two tasks from their prompts (n₁ × d, n₂ × d).

    average_tokens: cos(mean_i a_i, mean_j b_j);  per_token: (1 / n₁n₂) Σ_i Σ_j cos(a_i, b_j)."""
    first, second = first.detach().float(), second.detach().float()
    if metric == "average_tokens":
        return F.cosine_similarity(first.mean(0), second.mean(0), dim=0).item()
    return (F.normalize(first, dim=1) @ F.normalize(second, dim=1).T).mean().item()


def rank_sources(
    target: torch.Tensor, sources: Mapping[str, torch.Tensor], metric: Similarity = "average_tokens"
) -> list[tuple[str, float]]:
    """Candidate source tasks, most similar to the target prompt first."""
    scores = [(name, task_similarity(target, prompt, metric)) for name, prompt in sources.items()]
    return sorted(scores, key=lambda item: item[1], reverse=True)


@register
class SPoT(PPT):  # the same mechanism as PPT; only where the initial prompt comes from differs
    name = "spot"
    category = "prompt"
    foundation_models = ("LLM",)
    papers = ("spot",)
    summary = "Prompt tuning initialised from a prompt learned on a source task, chosen by prompt similarity."
    update_rule = "h = f([P; E(x)]),  P initialised from a source task's trained prompt"
    trainable = "the soft prompt P (prompt_length × hidden)"
