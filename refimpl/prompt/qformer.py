"""Q-Former — Li et al., "BLIP-2: Bootstrapping Language-Image Pre-training with Frozen Image Encoders and
Large Language Models", ICML 2023 (catalogue: blip-2).

    Z = QFormer(Q, E_img(x)),   LM input = [W_p Z + b_p ; E_tok(text)]

N learned query tokens Q ∈ R^{N×d_q} attend to the frozen image encoder's features through the Querying
Transformer (self-attention among the queries, cross-attention to the image in every layer here,
feed-forward); a linear projection turns the N outputs into soft visual prompts in the frozen LLM's input
space. Trainable: the queries, the Q-Former and the projection; the image encoder and the LLM stay frozen.
Applies to transformers' BLIP-2 model, whose Q-Former, queries and projection it unfreezes (nothing is added,
so the output starts at the base model's). BLIP-2's first, representation-learning stage (contrastive,
matching and captioning losses inside the Q-Former) is not reproduced: training uses the second stage's
language-modelling loss through the frozen LLM.
"""

from __future__ import annotations

from torch import nn

from ..core.errors import RefimplError
from ..core.registry import Method, MethodOptions, register

BRIDGE = ("query_tokens", "qformer", "language_projection")


class QFormerOptions(MethodOptions):
    pass


@register
class QFormer(Method):
    name = "qformer"
    category = "prompt"
    foundation_models = ("VLM", "MFM")
    papers = ("blip-2",)
    summary = (
        "Learned queries and a Q-Former bridge a frozen image encoder to a frozen LLM as soft visual prompts."
    )
    update_rule = "LM input = [W_p QFormer(Q, E_img(x)) + b_p ; E_tok(text)]"
    trainable = "the query tokens, the Q-Former and the projection into the LLM"
    identity_at_init = True
    model_types = ("blip2",)
    Options = QFormerOptions
    trains_pretrained_weights = True

    def inject(self, model: nn.Module, options: QFormerOptions) -> None:
        if getattr(model.config, "model_type", None) != "blip-2":
            raise RefimplError(f"qformer needs a BLIP-2 model, not {type(model).__name__}")
        for name in BRIDGE:
            part = getattr(model, name)
            part.requires_grad_(True)

    def expected_trainable(self, model: nn.Module, options: QFormerOptions) -> int:
        """Queries, Q-Former layers (self-attention, cross-attention, query FFN, three norms), projection."""
        config = model.config
        q, image, inner = (
            config.qformer_config,
            config.vision_config.hidden_size,
            config.qformer_config.intermediate_size,
        )
        d, norm = q.hidden_size, 2 * q.hidden_size
        self_attention = 4 * (d * d + d) + norm
        cross_attention = 2 * (d * d + d) + 2 * (image * d + d) + norm
        feed_forward = d * inner + inner + inner * d + d + norm
        layers = sum(
            self_attention + feed_forward + (cross_attention if i % q.cross_attention_frequency == 0 else 0)
            for i in range(q.num_hidden_layers)
        )
        projection = d * config.text_config.hidden_size + config.text_config.hidden_size
        return config.num_query_tokens * d + norm + layers + projection
