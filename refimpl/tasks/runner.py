"""Run one method on a task and measure it against the task's two references, computed by the same loop."""

from __future__ import annotations

import copy
import resource
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.api import apply, merge, trainable_parameters
from ..core.registry import MethodInfo, get_method
from . import Task, choose_task
from .base import Fit, fit
from .cache import cached_json

FULL, FROZEN = "full fine-tuning", "frozen baseline"


def reset_peak_memory() -> str:
    """Start a fresh peak-memory window where the kernel allows it; returns what `peak_memory_mb` then measures."""
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


def _train_reference(task: Task, kind: str, steps: int, seed: int) -> dict[str, Any]:
    model = task.build_model(seed)
    if kind == FROZEN:
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        for parameter in task.head_parameters(model):
            parameter.requires_grad_(True)
    trainable, total = trainable_parameters(model)
    fit(model, task.train_batches(seed), steps, task.full_lr if kind == FULL else task.lr, kind, task.loss)
    return {"metric": task.evaluate(model), "trainable": trainable, "total": total}


def reference(task: Task, kind: str, steps: int, seed: int) -> dict[str, Any]:
    """Full fine-tuning or the frozen baseline on this task, steps and seed: computed once, then read from cache.
    Only results that do not depend on the machine's state are cached; step times are measured afresh."""
    key = {**task.config(), "reference": kind, "steps": steps, "seed": seed, "torch": torch.__version__}
    key["lr"] = task.full_lr if kind == FULL else task.lr
    return cached_json("reference", key, lambda: _train_reference(task, kind, steps, seed))


TIMING_STEPS = 6  # per timing run: enough for a stable median, few enough to cost seconds


def full_fine_tuning_step_times(task: Task, seed: int) -> list[float]:
    """Step times of full fine-tuning on this machine now (the first step, which allocates, is dropped)."""
    model = task.build_model(seed)
    return fit(
        model, task.train_batches(seed), TIMING_STEPS + 1, task.full_lr, "timing full fine-tuning", task.loss
    ).step_times[1:]


@torch.no_grad()
def merged_inference_ratio(task: Task, adapted: nn.Module, seed: int, repeats: int = 15) -> float:
    """Inference time of the adapted model, merged, over the base model's on a test batch: medians of
    interleaved forwards, so both see the same machine state. A copy is merged: W + ΔW − ΔW is not bit-exact W."""
    base = task.build_model(seed).eval()
    merged = merge(copy.deepcopy(adapted)).eval()
    batch = task.test_batches()[0]
    times: dict[str, list[float]] = {"base": [], "merged": []}
    for _ in range(repeats + 1):
        for name, model in (("base", base), ("merged", merged)):
            start = time.perf_counter()
            task.predict(model, batch)
            times[name].append(time.perf_counter() - start)
    return statistics.median(times["merged"][1:]) / statistics.median(times["base"][1:])


def learning_rate(task: Task, info: MethodInfo) -> float:
    """The task's rate for new parameters, or its full fine-tuning rate for a method that trains pretrained weights."""
    return task.full_lr if info.trains_pretrained_weights else task.lr


@dataclass
class Outcome:
    method: str
    task: Task
    steps: int
    lr: float
    seed: int
    trainable: int
    total: int
    fit: Fit
    metric: float
    references: dict[str, dict[str, Any]]
    full_step_s: float  # full fine-tuning's median step, timed just before and just after the method
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
            "median_step_s": self.fit.median_step,
            "full_fine_tuning_median_step_s": self.full_step_s,
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
    """Adapt the task's pre-trained model with `method` (default options), train it and score it."""
    info = get_method(method).info()
    task = choose_task(info, model_type, task_name)
    steps = task.steps if steps is None else steps
    lr = learning_rate(task, info) if lr is None else lr
    references = {kind: reference(task, kind, steps, seed) for kind in (FULL, FROZEN)}
    full_steps = full_fine_tuning_step_times(task, seed)
    memory_source = reset_peak_memory()
    start, cpu_start = time.perf_counter(), time.process_time()
    model = task.build_model(seed)
    torch.manual_seed(seed)  # the method's own initialisation
    # A head the task adds is new and must be trained whatever the method (peft's modules_to_save convention).
    apply(model, method, **({"train_head": True} if task.head_parameters(model) else {}))
    trainable, total = trainable_parameters(model)
    result = fit(model, task.train_batches(seed), steps, lr, method, task.loss)
    metric = task.evaluate(model)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    memory = peak_memory_mb()
    merged = merged_inference_ratio(task, model, seed) if info.mergeable else None
    # Full fine-tuning timed before and after the method: a change in the machine's load during the run
    # shows in both sides of the ratio instead of one.
    full_step = statistics.median(full_steps + full_fine_tuning_step_times(task, seed))
    return Outcome(
        method,
        task,
        steps,
        lr,
        seed,
        trainable,
        total,
        result,
        metric,
        references,
        full_step,
        merged,
        wall,
        cpu,
        memory,
        memory_source,
        model,
    )
