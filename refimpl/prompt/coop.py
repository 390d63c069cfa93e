"""CoOp — Zhou et al., "Learning to Prompt for Vision-Language Models", IJCV 2022 (catalogue: coop).

    t_c = [v_1, …, v_M, w_c],   logits = s · norm(f_img(x)) · norm(g_txt(t_c))ᵀ

Context optimisation: the hand-written context of CLIP's class prompts ("a photo of a") is replaced by M
learned context vectors v_m in the text encoder's token-embedding space, followed by the class-name tokens
w_c; the text and image encoders stay frozen and the contexts are trained on the few-shot labels. Unified
contexts share v_1..v_M across classes (M·d parameters); class-specific contexts (`class_specific=True`) learn
one set per class (C·M·d). Contexts start from N(0, 0.02²), the paper's random initialisation, and sit before
the class name (the paper's "end" position). The paper's main setting is M = 16; the tiny prompts have 16
positions in all, so the default here is M = 4.

Applies to CLIP used as a class-prompt classifier ("clip_fewshot"): when the text encoder reads the class
prompts, their ids are rebuilt with M placeholder slots, and the token-embedding output at those slots is the
context; any other text is encoded as before.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import nn

from ..core.api import add_hook, attach_module
from ..core.errors import RefimplError
from ..core.registry import Method, MethodOptions, register
from ..models.multimodal import NAME_LENGTH, PROMPT_LENGTH

MAX_CONTEXT = PROMPT_LENGTH - NAME_LENGTH - 2  # BOS and EOS take the two other positions


class CoOpOptions(MethodOptions):
    n_ctx: int = Field(4, gt=0, description=f"M: learned context tokens (at most {MAX_CONTEXT} here)")
    class_specific: bool = Field(False, description="one context per class (CSC) instead of a unified one")


class PromptContext(nn.Module):
    def __init__(self, shape: tuple[int, ...], like: torch.Tensor) -> None:
        super().__init__()
        self.context = nn.Parameter(torch.randn(shape, device=like.device).mul(0.02).to(like.dtype))

    def insert(self, token_embeddings: torch.Tensor) -> torch.Tensor:
        """Token embeddings (C, L, d) with positions 1..M (after BOS) replaced by the context."""
        count, length = token_embeddings.shape[0], self.context.shape[-2]
        context = self.context.expand(count, -1, -1).to(token_embeddings.dtype)
        return torch.cat([token_embeddings[:, :1], context, token_embeddings[:, 1 + length :]], dim=1)


@register
class CoOp(Method):
    name = "coop"
    category = "prompt"
    foundation_models = ("VLM",)
    papers = ("coop",)
    summary = "Learn the context words of CLIP's class prompts as continuous vectors; CLIP stays frozen."
    update_rule = "t_c = [v_1 … v_M, w_c];  logits = s·cos(f_img(x), g_txt(t_c))"
    trainable = "the M context vectors (M × d), or one set per class (C × M × d)"
    model_types = ("clip_fewshot",)
    Options = CoOpOptions

    def inject(self, model: nn.Module, options: CoOpOptions) -> None:
        if options.n_ctx > MAX_CONTEXT:
            raise RefimplError(f"option 'n_ctx': the class prompts fit at most {MAX_CONTEXT} context tokens")
        if not hasattr(model, "prompt_ids"):
            raise RefimplError("coop needs CLIP as a class-prompt classifier (clip_fewshot)")
        text = model.clip.text_model
        embedding = text.embeddings.token_embedding
        classes, hidden = model.class_name_ids.shape[0], embedding.embedding_dim
        shape = (classes, options.n_ctx, hidden) if options.class_specific else (options.n_ctx, hidden)
        context = attach_module(model, "coop_context", PromptContext(shape, embedding.weight))
        placeholders = torch.full((options.n_ctx,), model.config.text_config.pad_token_id)

        pending = []  # set while the text tower encodes the class prompts, so other text is left alone

        def context_slots(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict]:
            ids = kwargs.get("input_ids", args[0] if args else None)
            if ids is None or not torch.equal(ids, model.prompt_ids(model.template_ids)):
                return args, kwargs
            pending.append(True)
            slots = model.prompt_ids(placeholders.to(ids.device))
            return (), {**kwargs, "input_ids": slots}

        def fill_slots(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
            if not pending:
                return output
            pending.clear()
            return context.insert(output)

        add_hook(model, text.register_forward_pre_hook(context_slots, with_kwargs=True))
        add_hook(model, embedding.register_forward_hook(fill_slots))

    def expected_trainable(self, model: nn.Module, options: CoOpOptions) -> int:
        per_class = options.n_ctx * model.config.text_config.hidden_size
        return per_class * (model.class_name_ids.shape[0] if options.class_specific else 1)
