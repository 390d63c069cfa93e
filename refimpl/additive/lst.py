"""LST — Sung, Cho and Bansal, "LST: Ladder Side-Tuning for Parameter and Memory Efficient Transfer Learning",
NeurIPS 2022 (catalogue: lst).

    s_0 = D_0(h_0);   s_i = f_i(μ_i D_i(h_i) + (1 − μ_i) s_{i−1}),   μ_i = sigmoid(α_i / T);   ĥ_L = U(s_L)

A side network of L small transformer blocks f_i (every width divided by `reduction_factor` r) runs beside the
frozen backbone. Ladders feed it each backbone block's output h_i, down-projected by D_i, mixed with the side
stream by a learned gate μ_i (α_i = 0, T = 0.1). Its output, projected up by U, replaces the backbone's last
hidden state, so the final norm / pooler and the task head read the side network. The backbone's activations
are detached: no gradient flows through the backbone, so training stores no backbone activations for backward
(the paper's memory saving). Trainable: the side blocks, D_0..D_L, the gates α, U and the task head.
Simplified: the side blocks are generic pre-norm transformer blocks (causal for decoders), randomly
initialised rather than from the pruned backbone, and no side layers are dropped; the side network sees only
the tokens of the current call, so incremental decoding with a key-value cache is not supported. What the
authors' released code does instead (github.com/ylsung/Ladder-Side-Tuning, read for these facts): side blocks of
the backbone's own block class with every width divided by r and as many heads; weights from the backbone pruned
by Fisher information on task data, each matrix keeping the rows with the largest L1 norm of their scores (query,
key and value chosen jointly) and the columns that the previous matrix kept; layer norms cut to match; samplers
drawn from N(0, 0.01²); and, in its GLUE scripts, every fourth side layer dropped.

Initialisation (ours): the paper starts the side network from the pruned backbone's weights, so its first output
already depends on the input the way the backbone does. Random blocks do not: their random attention output and
FFN branches add input-independent vectors to the side stream, and the head, which reads only the side network,
starts from a representation dominated by them (on MiniLM's sentiment task the mean-pooled side output varied by
0.30 across sentences at the start, 0.04 after 8 steps, and the loss stayed at ln 2). So each block's attention
output projection and second FFN linear start at zero: every side block starts as the identity, the side output
as U(LN(Σ_i c_i D_i(h_i))) (c_i from the gates), a projection of the backbone's states, and the blocks grow from
there, as a zero-initialised LoRA B does.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import nn
from transformers.activations import ACT2FN

from ..core.api import add_hook, attach_module
from ..core.architectures import hidden_size, transformer_blocks
from ..core.errors import RefimplError
from ..core.registry import Method, MethodOptions, register
from ..core.targeting import task_head_parameters

CAUSAL_MODEL_TYPES = ("gpt2", "llama")


class LSTOptions(MethodOptions):
    reduction_factor: int = Field(8, gt=0, description="r: the side network's widths are the backbone's / r")
    side_heads: int = Field(1, gt=0, description="attention heads of each side block")
    temperature: float = Field(0.1, gt=0, description="T in the ladder gate μ = sigmoid(α / T)")
    activation: str = Field("gelu", description="non-linearity of the side FFNs (a transformers ACT2FN name)")
    train_head: bool = Field(True, description="also train the task head")


def _intermediate_size(model: nn.Module) -> int:
    config = model.config
    return (
        getattr(config, "intermediate_size", None)
        or getattr(config, "n_inner", None)
        or 4 * hidden_size(model)
    )


class SideBlock(nn.Module):
    """A small pre-norm transformer block: x + Attn(LN(x)), then + FFN(LN(x))."""

    def __init__(self, width: int, ffn: int, heads: int, activation: str, like: torch.Tensor) -> None:
        super().__init__()
        factory = {"dtype": like.dtype, "device": like.device}
        self.attention_norm = nn.LayerNorm(width, **factory)
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True, **factory)
        self.ffn_norm = nn.LayerNorm(width, **factory)
        self.ffn = nn.Sequential(
            nn.Linear(width, ffn, **factory), ACT2FN[activation], nn.Linear(ffn, width, **factory)
        )
        # Ours: both residual branches start at zero, so the block starts as the identity (see the docstring).
        with torch.no_grad():
            for projection in (self.attention.out_proj, self.ffn[2]):
                projection.weight.zero_()
                projection.bias.zero_()

    def forward(
        self, x: torch.Tensor, padding: torch.Tensor | None, causal: torch.Tensor | None
    ) -> torch.Tensor:
        normed = self.attention_norm(x)
        attended, _ = self.attention(
            normed, normed, normed, key_padding_mask=padding, attn_mask=causal, need_weights=False
        )
        x = x + attended
        return x + self.ffn(self.ffn_norm(x))

    @staticmethod
    def parameter_count(width: int, ffn: int) -> int:
        norms, attention = 2 * 2 * width, 4 * width * width + 4 * width
        return norms + attention + 2 * width * ffn + ffn + width


class LadderSideNetwork(nn.Module):
    def __init__(self, model: nn.Module, options: LSTOptions, like: torch.Tensor) -> None:
        super().__init__()
        d, blocks = hidden_size(model), len(transformer_blocks(model))
        width, ffn = d // options.reduction_factor, _intermediate_size(model) // options.reduction_factor
        factory = {"dtype": like.dtype, "device": like.device}
        self.downs = nn.ModuleList(nn.Linear(d, width, **factory) for _ in range(blocks + 1))
        self.gate_logits = nn.Parameter(torch.zeros(blocks, **factory))
        self.blocks = nn.ModuleList(
            SideBlock(width, ffn, options.side_heads, options.activation, like) for _ in range(blocks)
        )
        self.norm = nn.LayerNorm(width, **factory)
        self.up = nn.Linear(width, d, **factory)
        self.temperature = options.temperature

    def gates(self) -> torch.Tensor:
        return torch.sigmoid(self.gate_logits / self.temperature)

    def forward(self, states: list[torch.Tensor], padding: torch.Tensor | None, causal: bool) -> torch.Tensor:
        """states: the backbone's block input h_0 and every block's output h_1..h_L (detached)."""
        length = states[0].shape[1]
        mask = (
            torch.ones(length, length, dtype=torch.bool, device=states[0].device).triu(1) if causal else None
        )
        side, gates = self.downs[0](states[0]), self.gates()
        for gate, down, block, h in zip(gates, self.downs[1:], self.blocks, states[1:], strict=True):
            side = block(gate * down(h) + (1 - gate) * side, padding, mask)
        return self.up(self.norm(side))

    @staticmethod
    def parameter_count(hidden: int, blocks: int, width: int, ffn: int) -> int:
        ladders = (blocks + 1) * (hidden * width + width) + blocks
        return ladders + blocks * SideBlock.parameter_count(width, ffn) + 2 * width + width * hidden + hidden


def _hidden_states(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


def _side_dims(model: nn.Module, options: LSTOptions) -> tuple[int, int]:
    width = hidden_size(model) // options.reduction_factor
    if width == 0 or width % options.side_heads:
        raise RefimplError(
            f"option 'side_heads': side width {width} (hidden {hidden_size(model)} / reduction_factor "
            f"{options.reduction_factor}) must be positive and divisible by {options.side_heads} heads"
        )
    return width, _intermediate_size(model) // options.reduction_factor


def _attach_ladders(model: nn.Module, side: LadderSideNetwork) -> None:
    """Hooks: keep the padding mask, collect detached block states, swap the last one for the side output."""
    blocks = transformer_blocks(model)
    causal = model.config.model_type in CAUSAL_MODEL_TYPES
    call: dict[str, Any] = {}

    def start(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        mask = kwargs.get("attention_mask")
        call["padding"] = None if mask is None else mask == 0

    def block_input(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        call["states"] = [_hidden_states(args, kwargs).detach()]

    def block_output(module: nn.Module, args: Any, output: Any) -> Any:
        hidden = output[0] if isinstance(output, tuple) else output
        call["states"].append(hidden.detach())
        if module is not blocks[-1]:
            return None
        result = side(call.pop("states"), call.get("padding"), causal).to(hidden.dtype)
        return (result, *output[1:]) if isinstance(output, tuple) else result

    add_hook(model, model.register_forward_pre_hook(start, with_kwargs=True))
    add_hook(model, blocks[0].register_forward_pre_hook(block_input, with_kwargs=True))
    for block in blocks:
        add_hook(model, block.register_forward_hook(block_output))


@register
class LST(Method):
    name = "lst"
    category = "additive"
    foundation_models = ("LLM", "VLM")
    papers = ("lst",)
    summary = (
        "Train a small ladder side network fed by down-projected, detached backbone activations; "
        "no backward pass through the backbone."
    )
    update_rule = (
        "s_i = f_i(μ_i D_i(h_i) + (1−μ_i) s_{i−1}), μ_i = sigmoid(α_i/T);  output U(s_L) to the head"
    )
    trainable = "side blocks, ladder down-projections D_i, gates α_i, up-projection U and the task head"
    Options = LSTOptions

    def inject(self, model: nn.Module, options: LSTOptions) -> None:
        _side_dims(model, options)
        side = attach_module(
            model, "lst_side_network", LadderSideNetwork(model, options, next(model.parameters()))
        )
        _attach_ladders(model, side)
        if options.train_head:
            for parameter in task_head_parameters(model):
                parameter.requires_grad_(True)

    def expected_trainable(self, model: nn.Module, options: LSTOptions) -> int:
        width, ffn = _side_dims(model, options)
        side = LadderSideNetwork.parameter_count(
            hidden_size(model), len(transformer_blocks(model)), width, ffn
        )
        head = sum(p.numel() for p in task_head_parameters(model)) if options.train_head else 0
        return side + head
