"""Prefix-tuning — Li & Liang, "Prefix-Tuning: Optimizing Continuous Prompts for Generation", ACL-IJCNLP 2021
(catalogue: prefix-tuning).

    head_i = Attn(x W_q, [P_k^l; x W_k], [P_v^l; x W_v]),   P^l ∈ R^{n×2d_kv} for every layer l
    training: P = MLP(P'),  P' ∈ R^{n×d_kv},  MLP = Linear(d_kv, mid_dim) → tanh → Linear(mid_dim, L·2·d_kv)

Trainable: P' and the reparameterisation MLP while training (the paper found direct optimisation of P unstable);
`fold_reparameterization(model)` then replaces them by the n·L·2·d_kv prefix they produce, which is all that has
to be stored per task. `reparameterization=False` trains P directly.

Learning rate: the paper trains at 5·10⁻⁵ (§5.3, its default setting; Table 5: 5e-5 or 8e-5), with AdamW and a
linear schedule. Adam moves every MLP weight by about lr per step, and each entry of P sums hundreds of those
moves (measured on MiniLM: RMS 90 × lr per step, against 1 × lr for a directly trained P), so the rate a task
sizes for small new modules (the sentiment task's 2e-3, 40 × the paper's) moves the prefix by ~30 % of the model's
own value scale per step: the prefix soon outgrows the real keys and values and the encoder's output stops
depending on its input. So the method declares the paper's rate for its parameters (`learning_rates`), which the
task loop applies to them while a new task head keeps the task's rate.

How the prefix gets in (our choice, independent of transformers' key/value cache classes): every attention module
is called on n placeholder rows followed by the real hidden states; forward hooks on its key and value
projections overwrite the placeholder rows with the prefix, the attention mask is padded to let every query see
the prefix, and the placeholder query rows are cut off the attention output. As in the paper's z = [PREFIX; x],
the input's positions start after the prefix (positions n, n+1, ...). LLaMA: the prefix keys get no rotary
rotation (their cos/sin rows are 1/0), which is also what a key/value cache holding them would give; with
grouped-query attention there is one prefix per key/value head (d_kv = kv_heads · head_dim). The model runs
without a key/value cache (use_cache=False), so generation recomputes the prefix at every step.

`add_attention_prefix(model, source, layers=...)` is the reusable mechanism: any `AttentionPrefix` (MAM adapter,
UniPELT's gated prefix, S4's prefix groups) supplies keys and values for each chosen block; blocks left out keep
their attention as it is (their keys and values get no prefix rows). Wrap projections (e.g. LoRA) before adding a
prefix, so the hooks see the wrapped projection's output. The `layers` option of prefix_tuning puts the prefix in
those blocks only, with a table of exactly |layers| prefixes (the paper puts one in every layer: the default).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..core.api import add_hook, attach_module, state_of
from ..core.architectures import architecture_of, hidden_size, named_blocks
from ..core.errors import RefimplError
from ..core.registry import Method, MethodOptions, register

ATTRIBUTE = "prefix_tuning"
_CACHE_ARGUMENTS = ("cache", "past_key_values", "past_key_value", "layer_past")


class AttentionPrefix(nn.Module):
    """Supplies the key and value prefixes of each prefixed attention layer; `length` is the prefix length n."""

    length: int

    def forward(self, layer: int, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values, each (batch, n, d_kv), for the `layer`-th prefixed block (its position in the
        `layers` given to `add_attention_prefix`; the block index when every block has a prefix), whose
        attention input is `hidden`."""
        raise NotImplementedError


def key_value_size(model: nn.Module) -> int:
    """Width d_kv of one token's keys (= values): fewer than hidden under grouped-query attention."""
    config = model.config
    kv_heads = getattr(config, "num_key_value_heads", None)
    if kv_heads is None:
        return hidden_size(model)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return kv_heads * head_dim


def prefixed_blocks(model: nn.Module, layers: Sequence[int] | None) -> list[int]:
    """The block indices that get a prefix, ascending: all blocks for None, else `layers`, checked."""
    count = len(named_blocks(model)[1])
    if layers is None:
        return list(range(count))
    if not layers:
        raise RefimplError("layers: give at least one block index (or None for every block)")
    if outside := sorted({index for index in layers if not 0 <= index < count}):
        raise RefimplError(f"layers: no block {outside} in a model with {count} blocks (0..{count - 1})")
    if len(set(layers)) < len(layers):
        raise RefimplError(f"layers: a block index is repeated in {list(layers)}")
    return sorted(layers)


def add_attention_prefix(
    model: nn.Module,
    source: AttentionPrefix,
    shift_positions: bool = True,
    layers: Sequence[int] | None = None,
) -> None:
    """Prepend `source`'s keys and values in the attention of blocks `layers` (None: every block) of `model`;
    the i-th of those blocks, counted in ascending order, gets source(i, ...). All changes are undoable."""
    architecture = architecture_of(model)
    attention_path = architecture.key.rpartition(".")[0]
    length = source.length
    _, blocks = named_blocks(model)
    for slot, index in enumerate(prefixed_blocks(model, layers)):
        block = blocks[index]
        current: dict[str, torch.Tensor] = {}
        attention = block.get_submodule(attention_path)
        add_hook(model, attention.register_forward_pre_hook(_enter(slot, source, current), with_kwargs=True))
        add_hook(model, attention.register_forward_hook(_leave(length, current)))
        if architecture.fused_qkv:
            fused = block.get_submodule(architecture.key)
            add_hook(model, fused.register_forward_hook(_splice_fused(length, current)))
        else:
            for role in ("key", "value"):
                projection = block.get_submodule(getattr(architecture, role))
                add_hook(model, projection.register_forward_hook(_splice(length, current, role)))
    add_hook(model, model.register_forward_pre_hook(_model_inputs(length, shift_positions), with_kwargs=True))


def _enter(slot: int, source: AttentionPrefix, current: dict[str, torch.Tensor]):
    length = source.length

    def before(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict]:
        if any(kwargs.get(name) is not None for name in _CACHE_ARGUMENTS):
            raise RefimplError("attention prefixes are added without a key/value cache; pass use_cache=False")
        kwargs = dict(kwargs)
        hidden = args[0] if args else kwargs["hidden_states"]
        keys, values = source(slot, hidden)
        current["key"], current["value"] = keys.to(hidden.dtype), values.to(hidden.dtype)
        padded = torch.cat([hidden.new_zeros(hidden.shape[0], length, hidden.shape[2]), hidden], dim=1)
        if args:
            args = (padded, *args[1:])
        else:
            kwargs["hidden_states"] = padded
        if len(args) > 1:
            raise RefimplError(f"{type(module).__name__} called with positional attention arguments")
        kwargs["attention_mask"] = _pad_mask(kwargs.get("attention_mask"), length)
        if kwargs.get("position_embeddings") is not None:
            cos, sin = kwargs["position_embeddings"]
            # cos = 1, sin = 0: the rotary embedding leaves the prefix keys as they are.
            kwargs["position_embeddings"] = (
                F.pad(cos, (0, 0, length, 0), value=1.0),
                F.pad(sin, (0, 0, length, 0), value=0.0),
            )
        return args, kwargs

    return before


def _pad_mask(mask: torch.Tensor | None, length: int) -> torch.Tensor | None:
    """Let every query attend to the prefix; the placeholder query rows may attend anywhere (they are dropped).
    None (no masking, or causal masking left to the kernel) stays None: the square causal mask over
    [prefix; x] already shows the whole prefix to every token."""
    if mask is None:
        return None
    if mask.dim() != 4:
        raise RefimplError(f"attention prefix: expected a 4-d attention mask, got shape {tuple(mask.shape)}")
    allowed = True if mask.dtype == torch.bool else 0.0
    rows = length if mask.shape[-2] > 1 else 0
    return F.pad(mask, (length, 0, rows, 0), value=allowed)


def _splice(length: int, current: dict[str, torch.Tensor], role: str):
    def after(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        return torch.cat([current[role], output[:, length:]], dim=1)

    return after


def _splice_fused(length: int, current: dict[str, torch.Tensor]):
    """GPT-2's c_attn returns [q | k | v] along the features; only k and v of the placeholder rows change."""

    def after(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        queries = output[:, :length, : output.shape[-1] // 3]
        prefix_rows = torch.cat([queries, current["key"], current["value"]], dim=-1)
        return torch.cat([prefix_rows, output[:, length:]], dim=1)

    return after


def _leave(length: int, current: dict[str, torch.Tensor]):
    def after(module: nn.Module, args: tuple, output: tuple) -> tuple:
        current.clear()
        attended, *rest = output
        weights = [w[:, :, length:] if w is not None else None for w in rest[:1]]
        return (attended[:, length:], *weights, *rest[1:])

    return after


def _model_inputs(length: int, shift_positions: bool):
    def before(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict]:
        kwargs = dict(kwargs)
        if args:
            kwargs["input_ids"], args = args[0], args[1:]
        kwargs["use_cache"] = False
        if shift_positions:
            tokens = kwargs.get("input_ids")
            if tokens is None:
                tokens = kwargs["inputs_embeds"]
            positions = kwargs.get("position_ids")
            if positions is None:
                positions = torch.arange(tokens.shape[1], device=tokens.device).expand(tokens.shape[:2])
            kwargs["position_ids"] = positions + length
        return args, kwargs

    return before


class PrefixTable(AttentionPrefix):
    """The prefixes of `layers` prefixed blocks, stored directly (P) or produced by the reparameterisation MLP
    from P'."""

    def __init__(
        self, layers: int, length: int, kv_size: int, mid_dim: int | None, like: torch.Tensor
    ) -> None:
        super().__init__()
        self.layers, self.length, self.kv_size = layers, length, kv_size
        factory = {"dtype": like.dtype, "device": like.device}
        if mid_dim is None:
            self.prefix = nn.Parameter(torch.randn(length, layers * 2 * kv_size, **factory))
        else:
            self.embedding = nn.Parameter(torch.randn(length, kv_size, **factory))
            self.mlp = nn.Sequential(
                nn.Linear(kv_size, mid_dim, **factory),
                nn.Tanh(),
                nn.Linear(mid_dim, layers * 2 * kv_size, **factory),
            )

    @property
    def reparameterized(self) -> bool:
        return hasattr(self, "mlp")

    def layer_prefix(self, layer: int) -> torch.Tensor:
        """(n, 2·d_kv): prefixed block l's keys then values (the flat layout is (L, 2, d_kv), as in peft)."""
        width = 2 * self.kv_size
        if not self.reparameterized:
            return self.prefix[:, layer * width : (layer + 1) * width]
        up, _, down = self.mlp
        rows = slice(layer * width, (layer + 1) * width)
        return F.linear(torch.tanh(up(self.embedding)), down.weight[rows], down.bias[rows])

    def forward(self, layer: int, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = self.layer_prefix(layer).expand(hidden.shape[0], -1, -1).chunk(2, dim=-1)
        return keys, values

    @torch.no_grad()
    def fold(self) -> None:
        table = torch.cat([self.layer_prefix(layer) for layer in range(self.layers)], dim=1)
        del self.embedding, self.mlp
        self.prefix = nn.Parameter(table.clone())


class PrefixTuningOptions(MethodOptions):
    """The prefix's shape, shared by the methods that reuse prefix tuning (MAM adapter, UniPELT, S4)."""

    prefix_length: int = Field(10, gt=0, description="number of prefix positions n per layer")
    reparameterization: bool = Field(
        True, description="train P through P = MLP(P'), as the paper does for stability (fold it afterwards)"
    )
    mid_dim: int = Field(
        512, gt=0, description="hidden width of the reparameterisation MLP (authors' code: 512)"
    )


class PrefixTuningLayersOptions(PrefixTuningOptions):
    """prefix_tuning's own options: the prefix's shape and the blocks that get one."""

    layers: tuple[int, ...] | None = Field(
        None, description="indices of the blocks that get a prefix (None: every block, as in the paper)"
    )


def _chosen_layers(options: PrefixTuningOptions) -> tuple[int, ...] | None:
    # MAM adapter reuses prefix tuning with the shared options, which have no `layers`: every block.
    return options.layers if isinstance(options, PrefixTuningLayersOptions) else None


def add_prefix_tuning(
    model: nn.Module, options: PrefixTuningOptions, layers: Sequence[int] | None
) -> PrefixTable:
    """Prefix tuning in blocks `layers` (None: all): a table of exactly that many prefixes, attached to the
    model as `prefix_tuning`, and the hooks that put its rows in those blocks' attention."""
    blocks = prefixed_blocks(model, layers)  # checked before anything changes
    source = PrefixTable(
        len(blocks),
        options.prefix_length,
        key_value_size(model),
        options.mid_dim if options.reparameterization else None,
        like=next(model.parameters()),
    )
    attach_module(model, ATTRIBUTE, source)
    add_attention_prefix(model, source, layers=blocks)
    return source


def prefix_parameter_count(model: nn.Module, options: PrefixTuningOptions, layers: int) -> int:
    """Trainable parameters of a prefix table for `layers` blocks: n·layers·2·d_kv, or while reparameterised
    P' (n·d_kv) and the MLP (d_kv·h + h + h·T + T, T = layers·2·d_kv)."""
    n, kv, h = options.prefix_length, key_value_size(model), options.mid_dim
    table = layers * 2 * kv
    if not options.reparameterization:
        return n * table
    return n * kv + (kv * h + h) + (h * table + table)


@register
class PrefixTuning(Method):
    name = "prefix_tuning"
    category = "prompt"
    foundation_models = ("LLM",)
    papers = ("prefix-tuning",)
    summary = "Prepend n learned key/value vectors to the attention of every layer of a frozen model."
    update_rule = "Attn(x W_q, [P_k; x W_k], [P_v; x W_v]) in every layer (or those in `layers`),  P = MLP(P') while training"
    trainable = "P' and the reparameterisation MLP (after folding: the prefix P, n × L × 2·d_kv)"
    Options = PrefixTuningLayersOptions
    learning_rates = (("prefix_tuning.", 5e-5),)  # see the docstring

    def inject(self, model: nn.Module, options: PrefixTuningOptions) -> None:
        add_prefix_tuning(model, options, _chosen_layers(options))

    def expected_trainable(self, model: nn.Module, options: PrefixTuningOptions) -> int:
        """the prefix table's count (see prefix_parameter_count) for |layers| blocks (L by default)"""
        layers = _chosen_layers(options)
        count = model.config.num_hidden_layers if layers is None else len(layers)
        return prefix_parameter_count(model, options, count)


def fold_reparameterization(model: nn.Module) -> nn.Module:
    """Replace P' and the MLP by the prefix they produce: same outputs, n·L·2·d_kv parameters to store.
    The adapter's options become reparameterization=False, so saved adapters load as plain prefixes."""
    state = state_of(model)
    if state.method.name != PrefixTuning.name or not state.options.reparameterization:
        raise RefimplError(
            "fold_reparameterization needs a model adapted with a reparameterised prefix_tuning"
        )
    getattr(model, ATTRIBUTE).fold()
    state.options = state.options.model_copy(update={"reparameterization": False})
    return model
