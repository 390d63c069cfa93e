"""Run one method on a task and measure it against the task's two references, computed by the same loop."""

from __future__ import annotations

import copy
import ctypes
import gc
import resource
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.api import apply, merge, prepare, trainable_parameters, training_callback
from ..core.registry import MethodInfo, TaskData, get_method
from . import Task, choose_task
from .base import Fit, fit, training_step
from .cache import cached_json

FULL, FROZEN = "full fine-tuning", "frozen baseline"


def release_freed_memory() -> None:
    """Collect garbage and hand the C heap's free pages back to the kernel (glibc's malloc_trim), so that memory an
    earlier run freed but the allocator kept does not count in the next run's resident set."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the window then also holds what the allocator kept
        pass


def reset_peak_memory() -> str:
    """Start a fresh peak-memory window where the kernel allows it; returns what `peak_memory_mb` then measures."""
    release_freed_memory()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: resets VmHWM, the peak resident set size
        return "peak resident set size (VmHWM) from model build to evaluation"
    except OSError:
        return "peak resident set size of the whole process so far (getrusage ru_maxrss)"


def peak_memory_mb() -> float:
    try:
        status = Path("/proc/self/status").read_text()
        return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def trained_reference(task: Task, kind: str, steps: int, seed: int) -> nn.Module:
    """The task's pre-trained model trained as the reference `kind` says: every parameter at the task's full
    fine-tuning rate, or only the task head at its rate (the frozen baseline)."""
    model = task.build_model(seed)
    if kind == FROZEN:
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        for parameter in task.head_parameters(model):
            parameter.requires_grad_(True)
    fit(model, task.train_batches(seed), steps, task.full_lr if kind == FULL else task.lr, kind, task.loss)
    return model


def _train_reference(task: Task, kind: str, steps: int, seed: int) -> dict[str, Any]:
    model = trained_reference(task, kind, steps, seed)
    trainable, total = trainable_parameters(model)
    return {"metric": task.evaluate(model), "trainable": trainable, "total": total}


def task_data(task: Task, steps: int, seed: int) -> TaskData:
    """The task's data for a method's `prepare`; its fine-tuned model is trained as the full fine-tuning reference."""
    return TaskData(
        batches=lambda: task.train_batches(seed),
        loss=task.loss,
        fine_tuned=lambda: trained_reference(task, FULL, steps, seed),
        source_batches=lambda: task.source_batches(seed),
    )


def reference(task: Task, kind: str, steps: int, seed: int) -> dict[str, Any]:
    """Full fine-tuning or the frozen baseline on this task, steps and seed: computed once, then read from cache.
    Only results that do not depend on the machine's state are cached; step times are measured afresh."""
    key = {**task.config(), "reference": kind, "steps": steps, "seed": seed, "torch": torch.__version__}
    key["lr"] = task.full_lr if kind == FULL else task.lr
    return cached_json("reference", key, lambda: _train_reference(task, kind, steps, seed))


TIMING_ROUNDS = 10  # paired steps: enough for a stable median ratio, few enough to cost seconds


def adapted_model(task: Task, method: str, seed: int) -> nn.Module:
    """The task's pre-trained model adapted with `method` (default options), its own initialisation seeded."""
    model = task.build_model(seed)
    torch.manual_seed(seed)
    # A head the task adds is new and must be trained whatever the method (peft's modules_to_save convention).
    return apply(model, method, **({"train_head": True} if task.head_parameters(model) else {}))


@dataclass
class PairedSteps:
    """Training-step times of a method and of full fine-tuning, taken in alternation on the same batches."""

    method: list[float]
    full: list[float]

    @property
    def ratio(self) -> float:
        """The median over rounds of the method's step time over full fine-tuning's in the same round."""
        return statistics.median(m / f for m, f in zip(self.method, self.full, strict=True))


def paired_step_times(task: Task, method: str, lr: float, seed: int, steps: int) -> PairedSteps:
    """Time an adapted model and a fully fine-tuned one step by step in alternation on the same batches, so that
    both see the same machine state (the first round, which allocates, is dropped). The adapted model is a fresh
    one, so the trained adapter is left as it was evaluated and saved. A method's step does the same work at every
    point of its training unless its training callback changes what it trains (AutoFreeze freezes blocks,
    IncreLoRA grows ranks): such a method trains a whole run of `steps` here, its rounds spread evenly over it."""
    adapted, rates = adapted_model(task, method, seed), get_method(method).info().learning_rates
    method_step = training_step(adapted, lr, task.loss, rates, task.head_parameters(adapted))
    full_step = training_step(task.build_model(seed), task.full_lr, task.loss)
    stride = max(1, steps // TIMING_ROUNDS) if training_callback(adapted) else 1
    batches = task.train_batches(seed)
    times = PairedSteps([], [])
    for step in range(TIMING_ROUNDS * stride + 1):
        batch = next(batches)
        seconds = method_step(batch)[1]
        if step % stride == 0:
            times.method.append(seconds)
            times.full.append(full_step(batch)[1])
    return PairedSteps(times.method[1:], times.full[1:])


@torch.no_grad()
def merged_inference_ratio(task: Task, adapted: nn.Module, seed: int, repeats: int = 30) -> float:
    """Inference time of the adapted model, merged, over the base model's on a test batch: the median over rounds
    of the two forwards' ratio in each round, so both see the same machine state. A copy is merged: W + ΔW − ΔW is
    not bit-exact W."""
    base = task.build_model(seed).eval()
    merged = merge(copy.deepcopy(adapted)).eval()
    batch = task.test_batches()[0]
    ratios = []
    for _ in range(repeats + 1):
        times = []
        for model in (base, merged):
            start = time.perf_counter()
            task.predict(model, batch)
            times.append(time.perf_counter() - start)
        ratios.append(times[1] / times[0])
    return statistics.median(ratios[1:])  # the first round allocates


def learning_rate(task: Task, info: MethodInfo) -> float:
    """The task's rate for new parameters, or its full fine-tuning rate for a method that trains pretrained weights."""
    return task.full_lr if info.trains_pretrained_weights else task.lr


@dataclass
class Outcome:
    method: str
    task: Task
    steps: int
    lr: float
    # The method's own rates by parameter-name prefix, where it declares them.
    learning_rates: dict[str, float]
    seed: int
    trainable: int
    total: int
    fit: Fit
    metric: float
    references: dict[str, dict[str, Any]]
    step_times: PairedSteps  # the method against full fine-tuning, in alternation after training
    # Merged inference time over the base model's; None if the method cannot merge.
    merged_vs_base: float | None
    wall_s: float  # build, adapt, train and evaluate the method (references excluded)
    cpu_s: float  # CPU time of the same, all threads: less sensitive than wall time to a busy machine
    peak_memory_mb: float
    memory_source: str
    model: nn.Module

    def figures(self) -> dict[str, Any]:
        """The figures `refimpl run` prints, as saved in metrics.json."""
        losses = self.fit.losses
        return {
            "method": self.method,
            "model": self.task.model_type,
            "task": self.task.name,
            "steps": self.steps,
            "lr": self.lr,
            "learning_rates": self.learning_rates,
            "seed": self.seed,
            "trainable": self.trainable,
            "total": self.total,
            "trainable_percent": 100 * self.trainable / self.total,
            "loss": {"first": losses[0], "min": min(losses), "last": losses[-1]} if losses else None,
            "metric": {
                "name": self.task.metric,
                "higher_is_better": self.task.higher_is_better,
                "value": self.metric,
                FULL: self.references[FULL]["metric"],
                FROZEN: self.references[FROZEN]["metric"],
            },
            "median_step_s": statistics.median(self.step_times.method),
            "full_fine_tuning_median_step_s": statistics.median(self.step_times.full),
            "step_time_vs_full": self.step_times.ratio,
            "training_median_step_s": self.fit.median_step,
            "merged_inference_vs_base": self.merged_vs_base,
            "wall_s": self.wall_s,
            "cpu_s": self.cpu_s,
            "peak_memory_mb": self.peak_memory_mb,
            "peak_memory_source": self.memory_source,
        }


def execute(
    method: str,
    model_type: str | None = None,
    task_name: str | None = None,
    steps: int | None = None,
    seed: int = 0,
    lr: float | None = None,
) -> Outcome:
    """Adapt the task's pre-trained model with `method` (default options), prepare it on the task's training data
    where the method needs that (`Method.prepare`), train it and score it; wall time and memory include both."""
    info = get_method(method).info()
    task = choose_task(info, model_type, task_name)
    steps = task.steps if steps is None else steps
    lr = learning_rate(task, info) if lr is None else lr
    references = {kind: reference(task, kind, steps, seed) for kind in (FULL, FROZEN)}
    memory_source = reset_peak_memory()
    start, cpu_start = time.perf_counter(), time.process_time()
    model = adapted_model(task, method, seed)
    prepare(model, task_data(task, steps, seed))
    trainable, total = trainable_parameters(model)
    head = task.head_parameters(model)
    result = fit(model, task.train_batches(seed), steps, lr, method, task.loss, info.learning_rates, head)
    metric = task.evaluate(model)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    memory = peak_memory_mb()
    merged = merged_inference_ratio(task, model, seed) if info.mergeable else None
    step_times = paired_step_times(task, method, lr, seed, steps)
    return Outcome(
        method,
        task,
        steps,
        lr,
        info.learning_rates,
        seed,
        trainable,
        total,
        result,
        metric,
        references,
        step_times,
        merged,
        wall,
        cpu,
        memory,
        memory_source,
        model,
    )
