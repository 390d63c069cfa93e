"""Where things are in each supported transformers architecture, so methods can say "the query projection"
or "the FFN output" once instead of per model family.

Module names are suffixes of `model.named_modules()` names; `layers` is the dotted path of the block list.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .errors import RefimplError


@dataclass(frozen=True)
class Architecture:
    layers: str  # dotted path to the nn.ModuleList of transformer blocks
    query: str
    key: str
    value: str
    attention_output: str  # projection after attention, before the residual add
    ffn_output: str  # last projection of the feed-forward block, before the residual add
    embeddings: str  # the input token embedding (nn.Embedding)
    layer_norms: tuple[str, ...]  # norm layers inside a block
    fused_qkv: bool = False  # GPT-2's c_attn computes q, k and v in one Conv1D
    pools_first_token: bool = False  # the task head reads the first position ([CLS])


ARCHITECTURES: dict[str, Architecture] = {
    "bert": Architecture(
        layers="encoder.layer",
        query="attention.self.query",
        key="attention.self.key",
        value="attention.self.value",
        attention_output="attention.output.dense",
        ffn_output="output.dense",
        embeddings="embeddings.word_embeddings",
        layer_norms=("attention.output.LayerNorm", "output.LayerNorm"),
        pools_first_token=True,
    ),
    "gpt2": Architecture(
        layers="h",
        query="attn.c_attn",
        key="attn.c_attn",
        value="attn.c_attn",
        attention_output="attn.c_proj",
        ffn_output="mlp.c_proj",
        embeddings="wte",
        layer_norms=("ln_1", "ln_2"),
        fused_qkv=True,
    ),
    "llama": Architecture(
        layers="layers",
        query="self_attn.q_proj",
        key="self_attn.k_proj",
        value="self_attn.v_proj",
        attention_output="self_attn.o_proj",
        ffn_output="mlp.down_proj",
        embeddings="embed_tokens",
        layer_norms=("input_layernorm", "post_attention_layernorm"),
    ),
    "vit": Architecture(
        layers="layers",
        query="attention.q_proj",
        key="attention.k_proj",
        value="attention.v_proj",
        attention_output="attention.o_proj",
        ffn_output="mlp.fc2",
        embeddings="embeddings.patch_embeddings.projection",
        layer_norms=("layernorm_before", "layernorm_after"),
        pools_first_token=True,
    ),
    # CLIP's text and vision towers share these names, so suffix targets adapt both towers.
    "clip": Architecture(
        layers="encoder.layers",
        query="self_attn.q_proj",
        key="self_attn.k_proj",
        value="self_attn.v_proj",
        attention_output="self_attn.out_proj",
        ffn_output="mlp.fc2",
        embeddings="token_embedding",
        layer_norms=("layer_norm1", "layer_norm2"),
    ),
    # diffusers' UNet: its transformer blocks sit in several lists; `layers` finds the first one only, so block-wise
    # methods do not list "unet" among their model types, while projection targets match every attention layer.
    "unet": Architecture(
        layers="transformer_blocks",
        query="to_q",
        key="to_k",
        value="to_v",
        attention_output="to_out.0",
        ffn_output="ff.net.2",
        embeddings="conv_in",
        layer_norms=("norm1", "norm2", "norm3"),
    ),
}

# Models whose config carries no transformers `model_type`.
_MODEL_TYPES_BY_CLASS = {"UNet2DConditionModel": "unet"}


def model_type_of(model: nn.Module) -> str | None:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    return model_type if isinstance(model_type, str) else _MODEL_TYPES_BY_CLASS.get(type(model).__name__)


def architecture_of(model: nn.Module) -> Architecture:
    model_type = model_type_of(model)
    if model_type not in ARCHITECTURES:
        raise RefimplError(
            f"no architecture map for model_type {model_type!r}; supported: {', '.join(sorted(ARCHITECTURES))}"
        )
    return ARCHITECTURES[model_type]


def named_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The dotted name and list of transformer blocks, under any wrapper prefix (`bert.`, `transformer.`, ...)."""
    path = architecture_of(model).layers
    for name, module in model.named_modules():
        if (name == path or name.endswith("." + path)) and isinstance(module, nn.ModuleList):
            return name, module
    raise RefimplError(f"{type(model).__name__} has no block list at '*{path}'")


def transformer_blocks(model: nn.Module) -> nn.ModuleList:
    return named_blocks(model)[1]


def block_sublayers(model: nn.Module, *roles: str) -> list[tuple[str, nn.Module]]:
    """(full name, module) of the sub-layer playing each role ("attention_output", "query", ...) in every block,
    resolved inside the block so that e.g. BERT's FFN `output.dense` never matches `attention.output.dense`."""
    architecture = architecture_of(model)
    blocks_name, blocks = named_blocks(model)
    suffixes = []
    for role in roles:
        value = getattr(architecture, role)
        suffixes += list(value) if isinstance(value, tuple) else [value]
    return [
        (f"{blocks_name}.{index}.{suffix}", block.get_submodule(suffix))
        for index, block in enumerate(blocks)
        for suffix in dict.fromkeys(suffixes)
    ]


def hidden_size(model: nn.Module) -> int:
    config = model.config
    return getattr(config, "hidden_size", None) or config.n_embd


def projection_names(model: nn.Module, roles: tuple[str, ...]) -> list[str]:
    """Module-name suffixes for roles such as ("query", "value") in this architecture, without repeats
    (GPT-2's fused c_attn serves all three of query, key and value)."""
    architecture = architecture_of(model)
    return list(dict.fromkeys(getattr(architecture, role) for role in roles))
