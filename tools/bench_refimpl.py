"""Speed benchmark of the refimpl methods on CPU (a measurement to read, not a test).

    python tools/bench_refimpl.py [--models tiny,minilm] [--steps 15] [--warmup 3] [--method-steps 5]

Per training step (forward, backward, AdamW) on a tiny BERT (hidden 256, 4 layers, 4 heads) and on the real
MiniLM, batch 16 × 128 tokens, two threads. Variants run interleaved, one step each in turn (round robin), so
drifts in machine load hit them all alike; each time is the median step time after the warm-up steps, and each
ratio the median over rounds of the two variants' step-time ratio within the round (neighbouring steps see the
same machine load, so the paired ratio holds up on a busy machine where the times themselves do not).

Compared against targets (PASS/FAIL):
- refimpl LoRA (r=8 on query/value) over huggingface peft LoRA with the same configuration   ≤ 1.03
- refimpl LoRA over the activation-gradient floor: every weight frozen, inputs_embeds requiring
  grad, so the backward still runs through every layer to the input (no optimiser: nothing to update) ≤ 1.05
- inference with the LoRA merged over the base model's inference                                ≤ 1.02
- QLoRA's stored bytes for the adapted linear weights over their fp32 bytes (if QLoRA exists)    ≤ 0.16
Then the step time over the floor of every registered LLM method that applies to BERT, with default options,
so a method slower than its mechanism needs stands out.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from torch import nn
from transformers.utils import logging

import refimpl
from refimpl.core.layers import AdapterLayer
from refimpl.models import minilm, tiny_bert

BATCH, LENGTH = 16, 128
LORA = {"r": 8, "alpha": 16.0, "target_modules": ["query", "value"]}
FLOOR = "activation-gradient floor"
RATIOS = {  # (numerator, denominator) variant names -> target
    ("refimpl lora", "peft lora"): 1.03,
    ("refimpl lora", FLOOR): 1.05,
    ("merged lora inference", "base inference"): 1.02,
}
MODELS: dict[str, Callable[[], nn.Module]] = {
    "tiny": lambda: tiny_bert(hidden=256, layers=4),
    "minilm": minilm,
}


@dataclass
class Variant:
    name: str
    step: Callable[[], None]
    times: list[float] = field(default_factory=list)  # wall clock, seconds
    cpu_times: list[float] = field(default_factory=list)  # this process's CPU time, all threads

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu_times)

    def ratio(self, other: Variant, cpu: bool = False) -> float:
        """Median over rounds of this variant's step time over `other`'s in the same round."""
        mine, theirs = (self.cpu_times, other.cpu_times) if cpu else (self.times, other.times)
        return statistics.median(a / b for a, b in zip(mine, theirs, strict=True))


def make_batch(model: nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, model.config.vocab_size, (BATCH, LENGTH), generator=generator)
    labels = torch.randint(0, 2, (BATCH,), generator=generator)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}


def training_step(model: nn.Module, batch: dict[str, torch.Tensor]) -> Callable[[], None]:
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4, fused=True)
    model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model(**batch).loss.backward()
        optimizer.step()

    return step


def floor_step(model: nn.Module, batch: dict[str, torch.Tensor]) -> Callable[[], None]:
    """All weights frozen; the gradient flows back to the input embeddings through every layer."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    embeds = model.get_input_embeddings()(batch["input_ids"]).detach().requires_grad_(True)
    inputs = {"inputs_embeds": embeds, "attention_mask": batch["attention_mask"], "labels": batch["labels"]}
    model.train()

    def step() -> None:
        embeds.grad = None
        model(**inputs).loss.backward()

    return step


def inference_step(model: nn.Module, batch: dict[str, torch.Tensor]) -> Callable[[], None]:
    model.eval()

    def step() -> None:
        with torch.inference_mode():
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])

    return step


def peft_lora(model: nn.Module) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=LORA["r"], lora_alpha=LORA["alpha"], target_modules=LORA["target_modules"], lora_dropout=0.0
    )
    return get_peft_model(model, config)


def run_round_robin(variants: list[Variant], warmup: int, steps: int) -> None:
    for index in range(warmup + steps):
        for variant in variants:
            start, cpu_start = time.perf_counter(), time.process_time()
            variant.step()
            if index >= warmup:
                variant.times.append(time.perf_counter() - start)
                variant.cpu_times.append(time.process_time() - cpu_start)


def verdict(name: str, value: float, target: float, extra: str = "") -> bool:
    passed = value <= target
    print(f"  {name:<44} {value:7.3f}  (target <= {target:.2f})  {'PASS' if passed else 'FAIL'}{extra}")
    return passed


def qlora_storage_ratio(base: nn.Module) -> float | None:
    """Bytes QLoRA keeps for the adapted linear weights (quantised codes, scales, ...) over their fp32 bytes."""
    if "qlora" not in {info.name for info in refimpl.methods()}:
        return None
    model = refimpl.apply(copy.deepcopy(base), "qlora")
    adapted = [m for m in model.modules() if isinstance(m, AdapterLayer)]
    fp32 = quantised = 0
    for layer in adapted:
        in_features, out_features = layer.in_features, layer.out_features
        fp32 += 4 * in_features * out_features
        quantised += sum(
            t.numel() * t.element_size()
            for name, t in [*layer.named_buffers(), *layer.named_parameters()]
            if not (t.requires_grad or name.endswith("bias"))
        )
    return quantised / fp32 if fp32 else None


def bench_model(label: str, base: nn.Module, warmup: int, steps: int, method_steps: int) -> bool:
    batch = make_batch(base)
    lora = refimpl.apply(copy.deepcopy(base), "lora", **LORA)
    merged = refimpl.merge(refimpl.apply(copy.deepcopy(base), "lora", **LORA))
    core = [
        Variant(FLOOR, floor_step(copy.deepcopy(base), batch)),
        Variant("refimpl lora", training_step(lora, batch)),
        Variant("peft lora", training_step(peft_lora(copy.deepcopy(base)), batch)),
        Variant("base inference", inference_step(copy.deepcopy(base), batch)),
        Variant("merged lora inference", inference_step(merged, batch)),
    ]
    run_round_robin(core, warmup, steps)
    print(
        f"\n== {label}: {type(base).__name__}, hidden {base.config.hidden_size}, "
        f"{base.config.num_hidden_layers} layers, batch {BATCH} x {LENGTH}, "
        f"median of {steps} interleaved steps after {warmup} warm-up (ms)"
    )
    print(f"  {'variant':<44} {'wall':>9} {'wall min':>9} {'cpu':>9}")
    for variant in core:
        print(
            f"  {variant.name:<44} {1e3 * variant.median:9.1f} {1e3 * min(variant.times):9.1f}"
            f" {1e3 * variant.cpu_median:9.1f}"
        )
    by_name = {variant.name: variant for variant in core}
    print("  ratios (PASS/FAIL on the paired wall-clock ratio):")
    ok = True
    for (numerator, denominator), target in RATIOS.items():
        a, b = by_name[numerator], by_name[denominator]
        ok &= verdict(
            f"{numerator} / {denominator}",
            a.ratio(b),
            target,
            f"   cpu-time {a.ratio(b, cpu=True):6.3f}, of medians {a.median / b.median:6.3f},"
            f" of minima {min(a.times) / min(b.times):6.3f}",
        )
    storage = qlora_storage_ratio(base)
    if storage is None:
        print("  qlora stored bytes / fp32 bytes                  (no qlora method registered)")
    else:
        ok &= verdict("qlora stored weight bytes / fp32 bytes", storage, 0.16)
    if method_steps > 0:
        bench_methods(base, batch, warmup=1, steps=method_steps)
    return ok


def bench_methods(base: nn.Module, batch: dict[str, torch.Tensor], warmup: int, steps: int) -> None:
    """Every registered LLM method that applies to BERT, default options, against the floor."""
    floor = Variant("floor", floor_step(copy.deepcopy(base), batch))
    variants, trainable, failed = [floor], {}, {}
    for info in refimpl.methods():
        if "LLM" not in info.foundation_models or "bert" not in info.model_types:
            continue
        try:
            model = refimpl.apply(copy.deepcopy(base), info.name)
            trainable[info.name] = refimpl.trainable_parameters(model)[0]
            step = training_step(model, batch)
            step()  # fails here rather than in the middle of the measurement
            variants.append(Variant(info.name, step))
        except Exception as error:  # noqa: BLE001 (a benchmark reports a broken method and goes on)
            failed[info.name] = f"{type(error).__name__}: {error}"
    run_round_robin(variants, warmup, steps)
    print(f"  every LLM method on bert (default options), median of {steps} steps, over the floor:")
    print(f"    {'method':<24} {'wall ms':>9} {'/floor':>7} {'cpu /floor':>10} {'trainable':>11}")
    for variant in sorted(variants[1:], key=lambda v: v.ratio(floor)):
        print(
            f"    {variant.name:<24} {1e3 * variant.median:9.1f} {variant.ratio(floor):7.2f}"
            f" {variant.ratio(floor, cpu=True):10.2f} {trainable[variant.name]:>11,}"
        )
    for name, error in failed.items():
        print(f"    {name:<24} ERROR {error[:100]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny,minilm", help="comma-separated: " + ", ".join(MODELS))
    parser.add_argument("--steps", type=int, default=15, help="measured steps per core variant")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured steps first")
    parser.add_argument(
        "--method-steps", type=int, default=5, help="measured steps per method in the sweep (0: no sweep)"
    )
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.set_verbosity_error()
    ok = True
    for label in args.models.split(","):
        if label not in MODELS:
            parser.error(f"unknown model {label!r}; choose from {', '.join(MODELS)}")
        ok &= bench_model(label, MODELS[label](), args.warmup, args.steps, args.method_steps)
    print("\nall targets met" if ok else "\nsome targets missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
