"""Training refimpl adapters on several processes: DistributedDataParallel, FSDP (fully_shard), and the check
that distributed training equals single-process training on the same global batch.

    torchrun --nproc_per_node 2 -m refimpl.distributed --method lora --steps 3 --out runs/ddp-lora

Adapter parameters are ordinary `nn.Parameter`s, so DDP and FSDP need nothing special, with two caveats:
- DDP's default `find_unused_parameters=False` requires every trainable parameter to get a gradient in every step;
  the property suite guarantees that for every method at its defaults (methods with stochastic routing, such as
  AdapterDrop's robust mode, need `find_unused_parameters=True`).
- FSDP shards parameters into DTensors; `refimpl.save_adapter` gathers them with `full_tensor()`, which is a
  collective: call it on every rank (only rank 0 writes).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .core.api import apply
from .core.architectures import transformer_blocks
from .core.persistence import save_adapter
from .models import TINY_MODELS, Batch, tiny_model


def shard(model: nn.Module) -> nn.Module:
    """FSDP2: shard each transformer block, then the root. fully_shard keeps the original parameters (what FSDP1
    calls use_orig_params=True), so frozen and trainable parameters may share a block, and it runs on CPU/gloo,
    which FSDP1 does not."""
    from torch.distributed.fsdp import fully_shard

    for block in transformer_blocks(model):
        fully_shard(block)
    fully_shard(model)
    return model


def rank_slice(batch: Batch, rank: int, world_size: int) -> Batch:
    """This rank's equal share of a global batch (tensors split along the batch dimension)."""
    size = next(v for v in batch.values() if torch.is_tensor(v)).shape[0]
    if size % world_size:
        raise ValueError(f"global batch {size} does not split evenly over {world_size} ranks")
    share = size // world_size
    return {k: v[rank * share : (rank + 1) * share] if torch.is_tensor(v) else v for k, v in batch.items()}


def train(model: nn.Module, model_type: str, batch: Batch, steps: int, lr: float) -> None:
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0, fused=True
    )
    loss_of = TINY_MODELS[model_type].loss
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        loss_of(model, batch).backward()
        optimizer.step()
    model.eval()


def train_single(
    method: str, model_type: str, steps: int, lr: float, global_batch: int, seed: int
) -> nn.Module:
    """The reference: one process, the whole global batch."""
    model = apply(tiny_model(model_type), method)
    train(model, model_type, TINY_MODELS[model_type].batch(seed, global_batch), steps, lr)
    return model


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Train a method under torchrun and save its adapter from rank 0."
    )
    parser.add_argument("--method", required=True)
    parser.add_argument("--model", default="bert", choices=sorted(TINY_MODELS))
    parser.add_argument("--mode", default="ddp", choices=["ddp", "fsdp"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--global-batch", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    dist.init_process_group("gloo")
    rank, world_size = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(1)
    model = apply(tiny_model(args.model), args.method)  # same seed on every rank: identical replicas
    batch = rank_slice(TINY_MODELS[args.model].batch(args.seed, args.global_batch), rank, world_size)
    if args.mode == "ddp":
        train(DistributedDataParallel(model), args.model, batch, args.steps, args.lr)
    else:
        train(shard(model), args.model, batch, args.steps, args.lr)
    save_adapter(model, args.out)
    dist.barrier()  # rank 0 is still writing; tearing the group down under it can abort the process
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
