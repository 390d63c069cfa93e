"""NOAH — Zhang, Zhou and Liu, "Neural Prompt Search", TPAMI 2025 (catalogue: noah).

    block i:  VPT-deep prompts (t_i tokens) + LoRA on W_q, W_v (rank r_i) + adapter after the FFN (size m_i)
    search:   (t, r, m) per block = argmin of the supernet's validation loss over subnets; retrain the best

Neural prOmpt seArcH puts all three PEFT modules in every block of a frozen ViT and searches their sizes per
block by one-shot architecture search: a supernet holds each module at its largest size, every training step
samples a subnet whose modules use the leading slices of those weights (weight sharing), an evolutionary
search then scores subnets on validation data with the trained supernet, and the chosen subnet is retrained
from scratch. Here: `refimpl.apply(model, "noah", supernet=True)` builds the supernet (a new subnet is sampled
at every training-mode forward), `evolutionary_search(model, batch)` scores subnets on a validation batch and
returns the best configuration, and `refimpl.apply(model, "noah", **config)` builds and trains that subnet.
With no configuration the registered method applies a fixed mid-size subnet (5 everywhere). Trainable: the
modules the subnet uses and the classification head. LoRA here has no extra scale (alpha = r); size 0 means no
module of that kind in the block. The search space (adapter and LoRA sizes {0, 1, 5, 9}, prompt lengths
{0, 5, 10}) and the search's sizes are ours, small enough for tests.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..additive.bottleneck_adapter import Bottleneck
from ..core.api import add_hook, attach_module, replace_module
from ..core.architectures import block_sublayers, hidden_size, named_blocks, projection_names
from ..core.errors import RefimplError
from ..core.layers import SerialAdapter
from ..core.registry import Method, MethodOptions, register
from ..core.targeting import linear_dims
from ..core.vision import classifier_parameters
from ..models.specs import Batch
from ..prompt.vpt import insert_layer_prompts, prompt_init_bound
from ..reparameterization.lora import LoRALinear

SEARCH_SPACE: dict[str, tuple[int, ...]] = {
    "adapter_dims": (0, 1, 5, 9),
    "lora_ranks": (0, 1, 5, 9),
    "prompt_tokens": (0, 5, 10),
}
DEFAULT_SIZE = 5  # the fixed mid-size subnet applied when no configuration is given
Config = dict[str, list[int]]


class SlicedLoRALinear(LoRALinear):
    """LoRA whose active rank can be lowered to any leading slice of its factors (B[:, :a] A[:a])."""

    def __init__(self, base: nn.Module, r: int) -> None:
        super().__init__(base, r=r, alpha=r)
        self.active = r

    def delta_weight(self) -> torch.Tensor:
        return self.lora_B[:, : self.active] @ self.lora_A[: self.active]

    def adapter_output(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.linear(x, self.lora_A[: self.active]), self.lora_B[:, : self.active])


class SlicedBottleneck(Bottleneck):
    """A bottleneck adapter whose active width is a leading slice of its largest one; width 0 adds nothing."""

    def __init__(self, hidden: int, size: int, like: torch.Tensor) -> None:
        super().__init__(hidden, size, init="zeros", like=like)
        self.active = size

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.active == 0:
            return torch.zeros_like(h)
        down = F.linear(h, self.down.weight[: self.active], self.down.bias[: self.active])
        return F.linear(self.activation(down), self.up.weight[:, : self.active], self.up.bias)


class PromptSlices(nn.Module):
    """VPT-deep prompts of each block's size (none for size 0), used through their first `active[i]`."""

    def __init__(self, tokens: Sequence[int], hidden: int, bound: float, like: torch.Tensor) -> None:
        super().__init__()
        self.prompts = nn.ParameterDict(
            {
                str(index): nn.Parameter(
                    torch.empty(count, hidden, dtype=like.dtype, device=like.device).uniform_(-bound, bound)
                )
                for index, count in enumerate(tokens)
                if count
            }
        )
        self.active = list(tokens)
        self.hidden = hidden

    def layer_prompt(self, index: int) -> torch.Tensor:
        if str(index) not in self.prompts:  # no prompt: the block sees [CLS] and the patches only
            return torch.zeros(0, self.hidden)
        return self.prompts[str(index)][: self.active[index]]


class NOAHOptions(MethodOptions):
    adapter_dims: list[int] | None = Field(
        None, description="adapter size m_i per block (0: none); default 5"
    )
    lora_ranks: list[int] | None = Field(
        None, description="LoRA rank r_i on W_q, W_v per block (0: none); default 5"
    )
    prompt_tokens: list[int] | None = Field(
        None, description="VPT-deep prompt length t_i per block; default 5"
    )
    supernet: bool = Field(
        False, description="build every module at its largest size and sample a subnet per step"
    )
    train_head: bool = Field(True, description="also train the classification head")


def subnet_sizes(model: nn.Module, options: NOAHOptions) -> Config:
    """Per-block sizes the model is built with: the largest choices for a supernet, else the given subnet."""
    blocks = len(named_blocks(model)[1])
    sizes = {}
    for field, choices in SEARCH_SPACE.items():
        given = getattr(options, field)
        if options.supernet:
            sizes[field] = [max(choices)] * blocks
        elif given is None:
            sizes[field] = [DEFAULT_SIZE] * blocks
        elif len(given) != blocks or min(given) < 0:
            raise RefimplError(
                f"noah: option {field!r}: need {blocks} sizes ≥ 0 (one per block), got {given}"
            )
        else:
            sizes[field] = list(given)
    return sizes


class NOAHModules(nn.Module):
    """The prompts, and handles on the per-block LoRA layers and adapters, to set the active subnet."""

    def __init__(
        self, prompts: PromptSlices, lora: dict[int, list[SlicedLoRALinear]], adapters: dict
    ) -> None:
        super().__init__()
        self.prompts = prompts
        self.__dict__["lora"], self.__dict__["adapters"] = lora, adapters  # already sub-modules of the model

    def set_subnet(self, config: Config) -> None:
        for index, size in enumerate(config["lora_ranks"]):
            for layer in self.lora.get(index, []):
                layer.active = size
        for index, size in enumerate(config["adapter_dims"]):
            if index in self.adapters:
                self.adapters[index].active = size
        self.prompts.active = list(config["prompt_tokens"])


def sample_config(blocks: int, rng: random.Random) -> Config:
    return {field: [rng.choice(choices) for _ in range(blocks)] for field, choices in SEARCH_SPACE.items()}


def set_subnet(model: nn.Module, config: Config) -> None:
    """Make the supernet compute the subnet `config` (per-block sizes, each at most the built size)."""
    model.noah_modules.set_subnet(config)


@torch.no_grad()
def subnet_loss(model: nn.Module, batch: Batch, config: Config) -> float:
    was_training = model.training
    model.eval()
    set_subnet(model, config)
    loss = float(model(**batch).loss)
    model.train(was_training)
    return loss


def evolutionary_search(
    model: nn.Module,
    batch: Batch,
    population: int = 8,
    generations: int = 3,
    mutation: float = 0.3,
    seed: int = 0,
) -> tuple[Config, float, list[tuple[Config, float]]]:
    """Score subnets of a trained supernet by their loss on a validation batch and evolve them: keep the
    better half, refill with uniform crossovers of two survivors, each size re-drawn with probability
    `mutation`. Returns the best configuration, its loss and every (configuration, loss) evaluated."""
    rng = random.Random(seed)
    blocks = len(named_blocks(model)[1])
    history: list[tuple[Config, float]] = []

    def scored(config: Config) -> tuple[Config, float]:
        history.append((config, subnet_loss(model, batch, config)))
        return history[-1]

    members = [scored(sample_config(blocks, rng)) for _ in range(population)]
    for _ in range(generations):
        survivors = sorted(members, key=lambda item: item[1])[: max(1, population // 2)]
        children = []
        while len(survivors) + len(children) < population:
            (first, _), (second, _) = rng.choice(survivors), rng.choice(survivors)
            child = {
                field: [
                    rng.choice(choices) if rng.random() < mutation else rng.choice((a, b))
                    for a, b in zip(first[field], second[field])
                ]
                for field, choices in SEARCH_SPACE.items()
            }
            children.append(scored(child))
        members = survivors + children
    best, loss = min(history, key=lambda item: item[1])
    return best, loss, history


@register
class NOAH(Method):
    name = "noah"
    category = "hybrid"
    foundation_models = ("VFM",)
    papers = ("noah",)
    summary = (
        "Adapter, LoRA and VPT in every ViT block, their per-block sizes found by one-shot supernet search."
    )
    update_rule = "block i: VPT-deep (t_i) + LoRA on W_q, W_v (r_i) + FFN adapter (m_i); (t, r, m) searched"
    trainable = "the subnet's prompts, LoRA factors and adapters, and the classification head"
    model_types = ("vit",)
    Options = NOAHOptions

    def inject(self, model: nn.Module, options: NOAHOptions) -> None:
        sizes = subnet_sizes(model, options)
        like = next(model.parameters())
        blocks_name, _ = named_blocks(model)
        lora: dict[int, list[SlicedLoRALinear]] = {}
        for index, rank in enumerate(sizes["lora_ranks"]):
            for suffix in projection_names(model, ("query", "value")) if rank else []:
                name = f"{blocks_name}.{index}.{suffix}"
                layer = SlicedLoRALinear(model.get_submodule(name), rank)
                replace_module(model, name, layer)
                lora.setdefault(index, []).append(layer)
        adapters: dict[int, SlicedBottleneck] = {}
        for index, ((name, ffn), width) in enumerate(
            zip(block_sublayers(model, "ffn_output"), sizes["adapter_dims"])
        ):
            if width:
                adapters[index] = SlicedBottleneck(hidden_size(model), width, like)
                replace_module(model, name, SerialAdapter(ffn, adapters[index]))
        prompts = PromptSlices(sizes["prompt_tokens"], hidden_size(model), prompt_init_bound(model), like)
        modules = attach_module(model, "noah_modules", NOAHModules(prompts, lora, adapters))
        blocks = len(sizes["prompt_tokens"])
        insert_layer_prompts(model, {i: lambda i=i: prompts.layer_prompt(i) for i in range(blocks)})
        if options.supernet:
            rng = random.Random(0)

            def sample(module: nn.Module, args: tuple) -> None:
                if module.training:
                    modules.set_subnet(sample_config(blocks, rng))

            add_hook(model, model.register_forward_pre_hook(sample))
        for parameter in classifier_parameters(model) if options.train_head else []:
            parameter.requires_grad_(True)

    def expected_trainable(self, model: nn.Module, options: NOAHOptions) -> int:
        d, sizes = hidden_size(model), subnet_sizes(model, options)
        adapters = sum(Bottleneck.parameter_count(d, m) if m else 0 for m in sizes["adapter_dims"])
        projections = projection_names(model, ("query", "value"))
        lora = sum(
            rank * sum(linear_dims(block.get_submodule(suffix)))
            for rank, block in zip(sizes["lora_ranks"], named_blocks(model)[1])
            for suffix in projections
        )
        prompts = sum(sizes["prompt_tokens"]) * d
        head = sum(p.numel() for p in classifier_parameters(model)) if options.train_head else 0
        return adapters + lora + prompts + head
