"""`python -m refimpl run`: what it prints is what it saves, runs repeat under a seed, adapters reload exactly."""

from __future__ import annotations

import json

import pytest
import torch

from refimpl import load_adapter, save_adapter, tasks
from refimpl.cli import main
from refimpl.tasks.runner import FROZEN, FULL, execute
from refimpl.tasks.sentiment import Sentiment

from .conftest import private_cache

STEPS = "3"


@pytest.fixture(scope="module", autouse=True)
def fresh_cache(tmp_path_factory):
    with private_cache(tmp_path_factory):
        yield


def run(method: str, out, capsys, *extra: str) -> tuple[str, dict]:
    assert main(["run", method, "--steps", STEPS, "--out", str(out), *extra]) == 0
    return capsys.readouterr().out, json.loads((out / "metrics.json").read_text())


@pytest.mark.parametrize("method", ["lora", "bitfit", "prompt_tuning", "bottleneck_adapter"])
def test_printed_figures_are_the_saved_ones(method, tmp_path, capsys):
    printed, saved = run(method, tmp_path, capsys)
    metric, loss = saved["metric"], saved["loss"]
    assert (saved["method"], saved["task"], saved["model"], saved["steps"]) == (
        method,
        "sentiment",
        "bert",
        3,
    )
    assert f"{saved['trainable']:,} of {saved['total']:,} ({saved['trainable_percent']:.4f}%)" in printed
    assert f"first {loss['first']:.4f}, min {loss['min']:.4f}, last {loss['last']:.4f}" in printed
    assert (
        f"{method} {metric['value']:.4f} | full fine-tuning {metric[FULL]:.4f} | frozen baseline {metric[FROZEN]:.4f}"
        in printed
    )
    assert f"peak memory: {saved['peak_memory_mb']:.1f} MB" in printed
    assert 0 < saved["trainable"] < saved["total"] and 0 <= metric["value"] <= 1
    assert (tmp_path / "adapter_model.safetensors").is_file()


def test_same_seed_gives_the_same_figures(tmp_path, capsys):
    _, first = run("lora", tmp_path / "a", capsys)
    _, again = run("lora", tmp_path / "b", capsys)
    assert f"{first['metric']['value']:.4f}" == f"{again['metric']['value']:.4f}"
    assert first["loss"] == again["loss"] and first["trainable"] == again["trainable"]


def test_saved_adapter_reloads_onto_a_fresh_base_with_identical_outputs(tmp_path):
    outcome = execute("lora", steps=3, seed=0)
    save_adapter(outcome.model, tmp_path)
    reloaded = load_adapter(outcome.task.build_model(seed=0), tmp_path).eval()
    batch = {k: v for k, v in outcome.task.test_batches()[0].items() if k != "labels"}
    with torch.no_grad():
        assert torch.equal(reloaded(**batch).logits, outcome.model(**batch).logits)


def test_model_type_without_a_task_exits_2_naming_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(
        tasks, "TASKS", {name: task for name, task in tasks.TASKS.items() if name != "digits"}
    )
    assert main(["run", "lora", "--model", "vit", "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "no task yet" in error and "vit" in error and error.count("\n") == 1


def test_a_new_task_head_is_trained_and_saved_with_any_method(tmp_path, capsys):
    run("lora", tmp_path, capsys)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["train_head"] and any(name.startswith("classifier.") for name in config["tensors"])


def test_bench_writes_one_record_per_method_against_full_fine_tuning(tmp_path, monkeypatch):
    monkeypatch.setattr(Sentiment, "steps", 2)
    out = tmp_path / "bench.json"
    assert main(["bench", "lora", "bitfit", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [row["method"] for row in report["runs"]] == ["lora", "bitfit"]
    assert list(report["tasks"]) == ["sentiment/bert"]
    references = report["tasks"]["sentiment/bert"]
    assert (
        0 <= references[FULL]["metric"] <= 1
        and references[FROZEN]["trainable"] < references[FULL]["trainable"]
    )
    lora, bitfit = report["runs"]
    assert lora["merged_inference_vs_base"] > 0 and bitfit["merged_inference_vs_base"] is None
    assert (lora["category"], bitfit["category"]) == ("reparameterization", "selective")
    for row in report["runs"]:
        assert (row["task"], row["model"], row["metric"]) == ("sentiment", "bert", "accuracy")
        assert (
            row["step_time_vs_full"] > 0 and row["metric_vs_full"] > 0 and 0 < row["trainable_percent"] < 100
        )
    assert {"torch", "transformers"} <= set(report["environment"]["packages"])
    assert report["environment"]["torch_threads"] >= 1
