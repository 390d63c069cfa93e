"""The tasks behind `refimpl run`: shipped data, the digits transfer split, the backbone cache, task choice."""

from __future__ import annotations

import platform
from collections import Counter
from pathlib import Path

import pytest
import torch

import refimpl
from refimpl import RefimplError, get_method, methods, tasks
from refimpl.core.registry import FOUNDATION_MODELS
from refimpl.models import minilm, tiny_bert
from refimpl.tasks import choose_task, runner
from refimpl.tasks.base import parameter_groups
from refimpl.tasks.cache import cache_path, cached_json, cached_tensors
from refimpl.tasks.digits import SOURCE_CLASSES, TARGET_CLASSES, digits, indices_of, target_indices
from refimpl.tasks.make_text_dataset import LABELS, generate
from refimpl.tasks.runner import PairedSteps, execute, learning_rate, release_freed_memory
from refimpl.tasks.sentiment import examples


def test_shipped_dataset_is_large_split_disjointly_and_balanced():
    rows = examples()
    assert len(rows) >= 1000
    train = {row.text for row in rows if row.split == "train"}
    test = {row.text for row in rows if row.split == "test"}
    assert len(train) + len(test) == len(rows) and not train & test
    counts = Counter((row.split, row.label) for row in rows)
    for split in ("train", "test"):
        assert counts[(split, 0)] == counts[(split, 1)] > 0


def test_shipped_file_is_what_the_generator_writes():
    generated = [(r["split"], r["domain"], LABELS.index(r["label"]), r["text"]) for r in generate()]
    assert generated == [(row.split, row.domain, row.label, row.text) for row in examples()]


def test_dataset_needs_more_than_word_polarity():
    texts = {row.text: row.label for row in examples()}
    negated = [text for text in texts if " not " in text or "hardly" in text or "far from" in text]
    contrasted = [text for text in texts if ", but " in text or text.startswith("although ")]
    assert len(negated) > 200 and len(contrasted) > 200
    assert {texts[text] for text in contrasted} == {0, 1}


def test_digits_are_pretrained_on_0_to_4_and_adapted_on_5_to_9():
    labels = digits()[1]
    assert set(labels[indices_of(SOURCE_CLASSES)].tolist()) == {0, 1, 2, 3, 4}
    train, test = target_indices("train"), target_indices("test")
    assert set(labels[train].tolist()) == set(labels[test].tolist()) == {5, 6, 7, 8, 9} == set(TARGET_CLASSES)
    assert not set(train.tolist()) & set(test.tolist())
    assert sorted(train.tolist() + test.tolist()) == indices_of(TARGET_CLASSES).tolist()


def test_cache_is_keyed_by_config_and_rebuilt_when_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("REFIMPL_CACHE", str(tmp_path))
    builds = []

    def build(value: float):
        builds.append(value)
        return {"weight": torch.full((2,), value)}

    first = cached_tensors("backbone", {"seed": 0}, lambda: build(1.0))
    again = cached_tensors("backbone", {"seed": 0}, lambda: build(2.0))
    assert builds == [1.0] and torch.equal(first["weight"], again["weight"])
    other = cached_tensors("backbone", {"seed": 1}, lambda: build(3.0))
    assert builds == [1.0, 3.0] and other["weight"][0] == 3.0
    cache_path("backbone", {"seed": 0}, ".safetensors").unlink()
    rebuilt = cached_tensors("backbone", {"seed": 0}, lambda: build(4.0))
    assert builds == [1.0, 3.0, 4.0] and rebuilt["weight"][0] == 4.0
    assert cached_json("reference", {"steps": 3}, lambda: {"metric": 0.5}) == {"metric": 0.5}
    assert cached_json("reference", {"steps": 3}, lambda: {"metric": 0.9}) == {"metric": 0.5}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary files left


@pytest.mark.parametrize(
    ("method", "task", "model_type"),
    [("lora", "sentiment", "bert"), ("dart", "generation", "gpt2"), ("adaptformer", "digits", "vit")],
)
def test_default_task_follows_the_methods_model_types(method, task, model_type):
    chosen = choose_task(get_method(method).info())
    assert (chosen.name, chosen.model_type) == (task, model_type)


def test_model_type_without_a_task_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(
        tasks, "TASKS", {name: task for name, task in tasks.TASKS.items() if name != "digits"}
    )
    with pytest.raises(RefimplError, match="no task yet for method 'lora' on model type\\(s\\) vit"):
        tasks.choose_task(get_method("lora").info(), model_type="vit")


def test_every_registered_method_has_a_default_task():
    assert [info.name for info in methods() if not _has_task(info)] == []


def _has_task(info, model_type=None) -> bool:
    try:
        choose_task(info, model_type)
    except RefimplError:
        return False
    return True


@pytest.mark.parametrize(
    ("method", "rate"),
    [
        ("lora", "lr"),
        ("bitfit", "lr"),
        ("child_tuning", "full_lr"),
        ("freeze_layers", "full_lr"),
        ("pet", "full_lr"),
    ],
)
def test_methods_that_train_pretrained_weights_take_full_fine_tunings_rate(method, rate):
    info = get_method(method).info()
    task = choose_task(info)
    assert learning_rate(task, info) == getattr(task, rate)
    assert task.full_lr < task.lr  # so the choice matters on every task these methods run on


def test_mean_pooling_is_the_masked_mean_of_the_token_states():
    model = minilm()
    batch = next(tasks.TASKS["sentiment"]("bert").train_batches(0))
    assert (batch["attention_mask"] == 0).any()  # padding is present, so the mask matters
    with torch.no_grad():
        states = model.bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    weights = batch["attention_mask"].unsqueeze(-1).float()
    expected = (states.last_hidden_state * weights).sum(1) / weights.sum(1)
    torch.testing.assert_close(states.pooler_output, expected)
    assert model.bert.pooler.mask is None  # nothing of one forward pass is left for the next


def test_a_method_is_measured_on_a_task_of_its_own_foundation_model_type_where_one_exists():
    assert {task.foundation_model for task in tasks.TASKS.values()} <= set(FOUNDATION_MODELS)
    elsewhere = {}
    for info in methods():
        candidates = [
            choose_task(info, model_type) for model_type in info.model_types if _has_task(info, model_type)
        ]
        own = [task.name for task in candidates if task.foundation_model in info.foundation_models]
        if own and choose_task(info).foundation_model not in info.foundation_models:
            elsewhere[info.name] = own
    assert elsewhere == {}


def test_step_time_against_full_fine_tuning_is_the_median_of_same_round_ratios():
    # A slow round hits both sides; the ratio of the two medians (2 / 1 here) would miss that.
    assert PairedSteps(method=[1.0, 2.0, 10.0], full=[1.0, 4.0, 1.0]).ratio == 1.0


@pytest.mark.parametrize(("method", "steps_taken"), [("bitfit", 3), ("autofreeze", 7)])
def test_a_method_whose_callback_changes_its_training_is_timed_along_a_whole_run(
    monkeypatch, method, steps_taken
):
    # AutoFreeze freezes blocks as it trains: its 2 rounds are spread over a run of 6 steps (every third step,
    # plus a first round to drop). BitFit's step does the same work throughout: 3 rounds in a row.
    taken: Counter[str] = Counter()
    training_step = runner.training_step

    def counted_training_step(model, *args, **kwargs):
        step, side = training_step(model, *args, **kwargs), "method" if refimpl.is_adapted(model) else "full"

        def counted(batch):
            taken[side] += 1
            return step(batch)

        return counted

    monkeypatch.setattr(runner, "TIMING_ROUNDS", 2)
    monkeypatch.setattr(runner, "training_step", counted_training_step)
    task = choose_task(get_method(method).info(), "gpt2")
    times = runner.paired_step_times(task, method, task.lr, 0, steps=6)
    assert (len(times.method), len(times.full)) == (2, 2)
    assert taken == {"method": steps_taken, "full": 3}


def resident_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")) / 1024


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="reads /proc and calls glibc's malloc_trim")
def test_memory_an_earlier_run_freed_leaves_the_resident_set_before_the_next_is_measured():
    # 64 KiB tensors sit on the C heap (below glibc's mmap threshold); a live one allocated after them pins the
    # heap's top, so free() alone keeps their pages resident, as a finished bench run's tensors would be.
    blocks = [torch.ones(16 * 1024) for _ in range(2000)]
    pin = torch.ones(16)
    held = resident_mb()
    del blocks
    release_freed_memory()
    assert resident_mb() < held - 100  # of the ~125 MB freed
    assert pin.sum() == 16


def test_a_methods_declared_rates_apply_to_its_parameters_by_name_prefix_and_the_new_head_keeps_the_tasks():
    model = refimpl.apply(tiny_bert(), "s4", train_head=True)
    head = [model.classifier.weight, model.classifier.bias]
    rates = {
        id(p): group["lr"]
        for group in parameter_groups(model, 2e-3, {"prefix_tuning.": 5e-5}, head)
        for p in group["params"]
    }
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            assert rates[id(parameter)] == (5e-5 if name.startswith("prefix_tuning.") else 2e-3), name
    assert set(rates.values()) == {5e-5, 2e-3}
    everything = parameter_groups(model, 2e-3, {"": 1e-4}, head)
    assert {group["lr"]: len(group["params"]) for group in everything}[2e-3] == len(head)


@pytest.mark.parametrize(
    ("method", "rates"),
    [  # Li & Liang 2021 §5.3 (prefix tuning; S4's prefix); He et al. 2022 App. A.2, Table 8 (MAM)
        ("prefix_tuning", {"prefix_tuning.": 5e-5}),
        ("s4", {"prefix_tuning.": 5e-5}),
        ("mam_adapter", {"": 1e-4}),
    ],
)
def test_prefix_methods_declare_their_papers_rates(method, rates):
    assert get_method(method).info().learning_rates == rates


def test_run_prepares_a_method_on_the_tasks_training_data_before_training():
    outcome = execute("dam_vp", steps=1)  # prepare fits the clusters; without it every centroid stays zero
    centroids = outcome.model.diverse_prompts.centroids
    assert centroids.abs().sum() > 0 and len(set(map(tuple, centroids.tolist()))) == len(centroids)
