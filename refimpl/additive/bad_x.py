"""BAD-X — Parović, Glavaš, Vulić and Korhonen, "BAD-X: Bilingual Adapters Improve Zero-Shot Cross-Lingual
Transfer", NAACL 2022 (catalogue: bad-x).

    h ← h + BA_{s,t}(h),  h ← h + TA(h)      after the FFN of every block

MAD-X's stack with one bilingual adapter BA for the transfer pair (source s, target t) in place of the two
monolingual language adapters: BA is trained by masked language modelling on both languages' text
(`train="language"`), the task adapter on labelled source-language data on top of it (`train="task"`), and the
same BA serves at inference on the target language, so nothing is swapped. As in MAD-X, the bilingual adapter
comes with an invertible embedding adapter (option `invertible`). Trainable: per stage, as in `mad_x`.
"""

from __future__ import annotations

from pydantic import Field
from torch import nn

from ..core.registry import Method, register
from .mad_x import AdapterName, StackOptions, inject_stack, set_active_stack, stack_trainable


class BadXOptions(StackOptions):
    language_pair: AdapterName = Field(
        "en-sw", description="name of the bilingual adapter, e.g. source-target"
    )


@register
class BadX(Method):
    name = "bad_x"
    category = "additive"
    foundation_models = ("LLM",)
    papers = ("bad-x",)
    summary = (
        "Stack one bilingual adapter for the source-target language pair under a task adapter (MAD-X style)."
    )
    update_rule = "h ← h + BA_{s,t}(h); h ← h + TA(h)  (after the FFN of every block)"
    trainable = (
        "stage 'language': the bilingual and invertible adapters; stage 'task': the task adapter and head"
    )
    Options = BadXOptions
    switchable = ("active_task", "train", "train_head")

    def inject(self, model: nn.Module, options: BadXOptions) -> None:
        inject_stack(model, options, (options.language_pair,))
        self.set_active(model, options)

    def set_active(self, model: nn.Module, options: BadXOptions) -> None:
        set_active_stack(model, options, options.language_pair)

    def expected_trainable(self, model: nn.Module, options: BadXOptions) -> int:
        return stack_trainable(model, options)
