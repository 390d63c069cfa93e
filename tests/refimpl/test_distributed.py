"""Training at scale: an adapter trained on 2 processes (torchrun, gloo) equals single-process training on the
same global batch, under DDP for one method of each category and under FSDP for LoRA and a bottleneck adapter;
and refimpl models train with the Hugging Face Trainer."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

import refimpl
from refimpl.core.persistence import WEIGHTS_FILE
from refimpl.distributed import train_single

from .conftest import tiny_batch

ONE_PER_CATEGORY = ["bitfit", "bottleneck_adapter", "prompt_tuning", "lora", "compacter"]
STEPS, LR, GLOBAL_BATCH, SEED = 3, 1e-2, 8, 0


def torchrun(method: str, mode: str, out) -> None:
    # One elastic restart: on a loaded machine a gloo worker has, rarely, aborted while the process group was torn
    # down. A restart reruns the same seeded training from scratch, so the comparison below is unaffected.
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "--max-restarts",
        "1",
    ]
    command += ["-m", "refimpl.distributed", "--method", method, "--mode", mode, "--out", str(out)]
    command += [
        "--steps",
        str(STEPS),
        "--lr",
        str(LR),
        "--global-batch",
        str(GLOBAL_BATCH),
        "--seed",
        str(SEED),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for _ in range(3):
        result = subprocess.run(command, check=False, capture_output=True, text=True, env=env, timeout=120)
        # Gloo's TCP mesh has, on a loaded machine, failed to connect before any step was taken (in both elastic
        # attempts); a fresh launch is the same seeded run. Any other failure is reported at once.
        if result.returncode == 0 or "connectFullMesh failed" not in result.stderr:
            break
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize(
    ("method", "mode"),
    [(m, "ddp") for m in ONE_PER_CATEGORY] + [("lora", "fsdp"), ("bottleneck_adapter", "fsdp")],
)
def test_two_processes_train_the_same_adapter_as_one(method, mode, tmp_path):
    torchrun(method, mode, tmp_path)
    distributed = load_file(tmp_path / WEIGHTS_FILE)
    single = refimpl.core.api.adapter_tensors(train_single(method, "bert", STEPS, LR, GLOBAL_BATCH, SEED))
    assert distributed.keys() == single.keys()
    for name, tensor in single.items():
        torch.testing.assert_close(distributed[name], tensor.detach(), rtol=0, atol=1e-6, msg=name)


def test_hugging_face_trainer_trains_a_refimpl_model_and_the_adapter_reloads(fresh, tmp_path):
    from transformers import Trainer, TrainingArguments

    model = refimpl.apply(fresh("bert"), "lora")
    rows = [{k: v[i] for k, v in tiny_batch("bert", seed=s).items()} for s in range(4) for i in range(4)]
    arguments = TrainingArguments(
        output_dir=str(tmp_path / "trainer"),
        max_steps=4,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    Trainer(model=model, args=arguments, train_dataset=rows).train()
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters() if p.requires_grad)
    refimpl.save_adapter(model, tmp_path / "adapter")
    loaded = refimpl.load_adapter(fresh("bert"), tmp_path / "adapter")
    batch = tiny_batch("bert", seed=9)
    with torch.no_grad():
        assert torch.equal(
            loaded(input_ids=batch["input_ids"]).logits, model(input_ids=batch["input_ids"]).logits
        )
