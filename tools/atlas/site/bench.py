"""The measured comparison of the reference implementations: `python -m refimpl bench` writes it, the site reads it.

The file may be missing (the site then says how to produce it), older (fields missing: the registry fills in
what it can) or newer (unknown fields are ignored). A field that is present with the wrong type is an error
that names the file and the field, never a silently wrong page.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_FILE = Path("bench") / "results.json"
BENCH_COMMAND = "python -m refimpl bench --out bench/results.json"
FULL = "full fine-tuning"
FROZEN = "frozen baseline"


class BenchFileError(ValueError):
    """The results file is not what `refimpl bench` writes; the message names the file and the field."""


class _Record:
    """Typed access to one JSON object of the file; `where` is its place in the file, for errors."""

    def __init__(self, path: Path, where: str, data: Any) -> None:
        if not isinstance(data, dict):
            raise BenchFileError(f"{path}: {where}: expected an object, got {type(data).__name__}")
        self.path, self.where, self.data = path, where, data

    def typed(self, name: str, kinds: tuple[type, ...], label: str) -> Any:
        value = self.data.get(name)
        if value is None:
            return None
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            raise BenchFileError(
                f"{self.path}: {self.where}.{name}: expected {label}, got {json.dumps(value)[:60]}"
            )
        return value

    def number(self, name: str) -> float | None:
        return self.typed(name, (int, float), "a number")

    def text(self, name: str) -> str | None:
        return self.typed(name, (str,), "a string")

    def flag(self, name: str) -> bool | None:
        return self.typed(name, (bool,), "true or false")

    def texts(self, name: str) -> tuple[str, ...] | None:
        values = self.typed(name, (list,), "a list of strings")
        if values is not None and not all(isinstance(v, str) for v in values):
            raise BenchFileError(f"{self.path}: {self.where}.{name}: expected a list of strings")
        return None if values is None else tuple(values)

    def rates(self, name: str) -> tuple[tuple[str, float], ...]:
        """An object of numbers (a method's learning rates by parameter-name prefix) as (key, number) pairs."""
        values = self.typed(name, (dict,), "an object of numbers") or {}
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values.values()):
            raise BenchFileError(f"{self.path}: {self.where}.{name}: expected an object of numbers")
        return tuple(values.items())

    def record(self, name: str) -> _Record | None:
        value = self.data.get(name)
        return None if value is None else _Record(self.path, f"{self.where}.{name}", value)


@dataclass(frozen=True)
class Reference:
    """Full fine-tuning or the frozen model on one task."""

    metric: float | None
    trainable: float | None
    total: float | None
    median_step_s: float | None


@dataclass(frozen=True)
class Task:
    key: str  # "<task>/<model>", as runs refer to it
    task: str
    model: str
    foundation_model: str | None  # the survey's FM type of the task's model (None in older files)
    description: str
    metric: str
    higher_is_better: bool | None
    steps: float | None
    full: Reference | None
    frozen: Reference | None


@dataclass(frozen=True)
class Run:
    """One method on its default task, or the reason it was not run (`error`)."""

    method: str
    error: str = ""
    task: str = ""
    model: str = ""
    category: str | None = None
    foundation_models: tuple[str, ...] | None = None
    trainable: float | None = None
    trainable_percent: float | None = None
    lr: float | None = None
    learning_rates: tuple[tuple[str, float], ...] = ()  # the method's own, by parameter-name prefix
    median_step_s: float | None = None
    step_time_vs_full: float | None = None
    peak_memory_mb: float | None = None
    metric: str = ""
    higher_is_better: bool | None = None
    value: float | None = None
    metric_vs_full: float | None = None
    merged_inference_vs_base: float | None = None
    slower_than_full_fine_tuning: str | None = None  # None: the file does not say; see the registry
    wall_s: float | None = None

    @property
    def task_key(self) -> str:
        return f"{self.task}/{self.model}"


@dataclass(frozen=True)
class BenchResults:
    path: Path
    machine: str
    date: str
    tasks: dict[str, Task]
    runs: dict[str, Run]  # by method name


def _reference(record: _Record | None) -> Reference | None:
    if record is None:
        return None
    return Reference(
        record.number("metric"),
        record.number("trainable"),
        record.number("total"),
        record.number("median_step_s"),
    )


def _task(record: _Record, key: str) -> Task:
    return Task(
        key=key,
        task=record.text("task") or key.split("/")[0],
        model=record.text("model") or key.rpartition("/")[2],
        foundation_model=record.text("foundation_model"),
        description=record.text("description") or "",
        metric=record.text("metric") or "",
        higher_is_better=record.flag("higher_is_better"),
        steps=record.number("steps"),
        full=_reference(record.record(FULL)),
        frozen=_reference(record.record(FROZEN)),
    )


def _run(record: _Record) -> Run:
    method = record.text("method")
    if not method:
        raise BenchFileError(f"{record.path}: {record.where}.method: missing")
    if error := record.text("error"):
        return Run(method, error=error)
    numbers = (
        "trainable",
        "trainable_percent",
        "lr",
        "median_step_s",
        "step_time_vs_full",
        "peak_memory_mb",
        "value",
        "metric_vs_full",
        "merged_inference_vs_base",
        "wall_s",
    )
    return Run(
        method,
        task=record.text("task") or "",
        model=record.text("model") or "",
        category=record.text("category"),
        foundation_models=record.texts("foundation_models"),
        metric=record.text("metric") or "",
        higher_is_better=record.flag("higher_is_better"),
        slower_than_full_fine_tuning=record.text("slower_than_full_fine_tuning"),
        learning_rates=record.rates("learning_rates"),
        **{name: record.number(name) for name in numbers},
    )


def _machine(environment: _Record | None) -> str:
    if environment is None:
        return "an unrecorded machine"
    cpu = environment.text("cpu") or "an unnamed CPU"
    details = [
        f"{count:g} CPUs" if (count := environment.number("cpu_count")) is not None else "",
        f"{threads:g} torch threads" if (threads := environment.number("torch_threads")) is not None else "",
        f"Python {python}" if (python := environment.text("python")) else "",
    ]
    packages = environment.record("packages")
    if packages is not None:
        details += [f"{name} {packages.text(name)}" for name in packages.data if packages.text(name)]
    return cpu + (f" ({', '.join(d for d in details if d)})" if any(details) else "")


def load_bench(path: Path) -> BenchResults | None:
    """The results file at `path`, or None when there is none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise BenchFileError(f"{path}:{error.lineno}: not valid JSON: {error.msg}") from error
    root = _Record(path, "results", data)
    environment = root.record("environment")
    tasks = root.record("tasks")
    runs_data = root.typed("runs", (list,), "a list of runs") or []
    runs = [_run(_Record(path, f"runs[{i}]", item)) for i, item in enumerate(runs_data)]
    return BenchResults(
        path=path,
        machine=_machine(environment),
        date=(environment and environment.text("date")) or "an unrecorded date",
        tasks={}
        if tasks is None
        else {key: _task(task, key) for key in tasks.data if (task := tasks.record(key))},
        runs={run.method: run for run in runs},
    )


@dataclass(frozen=True)
class Row:
    """A method as the comparison shows it: its measurement (if any) with what the registry adds."""

    method: str
    category: str  # category id
    foundation_models: tuple[str, ...]
    mergeable: bool | None
    slower_reason: str  # the paper's reason a step may cost more than full fine-tuning's; "" if none
    run: Run | None
    task: Task | None

    @property
    def measured(self) -> bool:
        return self.run is not None and not self.run.error

    @property
    def quality_vs_full(self) -> float | None:
        """The metric relative to full fine-tuning's, turned so that above 1 is always better."""
        ratio = self.run and self.run.metric_vs_full
        if not ratio:
            return None
        higher_is_better = self.run.higher_is_better
        if higher_is_better is None and self.task:
            higher_is_better = self.task.higher_is_better
        return ratio if higher_is_better is not False else 1 / ratio

    @property
    def slower_unexplained(self) -> bool:
        """Measured slower than full fine-tuning with no reason from the paper: worth a visible flag."""
        ratio = self.run and self.run.step_time_vs_full
        return ratio is not None and ratio > 1 and not self.slower_reason


def comparison_rows(
    methods: list[str], registry: dict[str, Any] | None, bench: BenchResults | None
) -> list[Row]:
    """One row per method named by the catalogue or the results file; the file's own fields come first."""
    runs = bench.runs if bench else {}
    rows = []
    for name in sorted({*methods, *runs}):
        run, info = runs.get(name), (registry or {}).get(name)
        reason = run.slower_than_full_fine_tuning if run else None
        rows.append(
            Row(
                method=name,
                category=(run and run.category) or getattr(info, "category", ""),
                foundation_models=(run and run.foundation_models)
                or tuple(getattr(info, "foundation_models", ())),
                mergeable=getattr(info, "mergeable", None),
                slower_reason=reason
                if reason is not None
                else getattr(info, "slower_than_full_fine_tuning", ""),
                run=run,
                task=bench.tasks.get(run.task_key) if bench and run else None,
            )
        )
    return rows
