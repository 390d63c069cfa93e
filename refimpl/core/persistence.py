"""Adapter files: `adapter_model.safetensors` (the adapter's tensors, no pickle) and `adapter_config.json`
(method, options, and the base model's class and config, so loading onto the wrong base fails clearly)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, ValidationError
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from .api import adapter_tensors, apply, remove, state_of
from .errors import RefimplError

FORMAT_VERSION = 1
WEIGHTS_FILE = "adapter_model.safetensors"
CONFIG_FILE = "adapter_config.json"
# Config entries that describe where a model came from or how it was last called, not what it computes.
_PROVENANCE_KEYS = {
    "_name_or_path",
    "transformers_version",
    "torch_dtype",
    "dtype",
    "_attn_implementation_autoset",
    "problem_type",  # set by the first forward with labels, not part of the architecture
    "use_cache",  # a generation-time switch (the Trainer turns it off), not part of the architecture
}


class AdapterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format_version: int
    method: str
    options: dict[str, Any]
    train_head: bool = False  # apply's core-level train_head, for methods without an option of their own
    base_model_class: str
    base_config: dict[str, Any]
    base_config_sha256: str
    tensors: dict[str, list[int]]


def _base_config(model: nn.Module) -> dict[str, Any]:
    config = getattr(model, "config", None)
    if config is None:
        return {}
    entries = config.to_dict() if hasattr(config, "to_dict") else dict(config)  # diffusers: a FrozenDict
    return {k: v for k, v in sorted(entries.items()) if k not in _PROVENANCE_KEYS}


def _fingerprint(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def save_adapter(model: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Write the adapter of `model` to the folder `path` (created if needed); returns the folder.

    Under torch.distributed, call it on every rank: sharded tensors are gathered collectively, rank 0 writes."""
    state = state_of(model)
    folder = Path(path)
    tensors = {name: _full_cpu_copy(t) for name, t in adapter_tensors(model).items()}
    if torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
        return folder  # every rank gathers sharded tensors above (a collective); rank 0 alone writes
    folder.mkdir(parents=True, exist_ok=True)
    base_config = _base_config(model)
    config = AdapterConfig(
        format_version=FORMAT_VERSION,
        method=state.method.name,
        options=state.options.model_dump(mode="json"),
        train_head=state.trains_head,
        base_model_class=type(model).__name__,
        base_config=json.loads(json.dumps(base_config, default=str)),
        base_config_sha256=_fingerprint(base_config),
        tensors={name: list(t.shape) for name, t in tensors.items()},
    )
    # Both files are written to temporary names first, so an interrupted save never leaves a half-written adapter.
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        save_file(
            tensors,
            os.path.join(scratch, WEIGHTS_FILE),
            metadata={"format": "pt", "method": state.method.name},
        )
        Path(scratch, CONFIG_FILE).write_text(config.model_dump_json(indent=2) + "\n", encoding="utf-8")
        os.replace(os.path.join(scratch, WEIGHTS_FILE), folder / WEIGHTS_FILE)
        os.replace(os.path.join(scratch, CONFIG_FILE), folder / CONFIG_FILE)
    return folder


def _full_cpu_copy(tensor: torch.Tensor) -> torch.Tensor:
    """A plain CPU tensor, gathering an FSDP-sharded DTensor first."""
    if hasattr(tensor, "full_tensor"):
        tensor = tensor.full_tensor()
    return tensor.detach().to("cpu").contiguous().clone()


def read_adapter_config(path: str | os.PathLike[str]) -> AdapterConfig:
    config_path = Path(path) / CONFIG_FILE
    try:
        config = AdapterConfig.model_validate_json(config_path.read_bytes())
    except FileNotFoundError:
        raise RefimplError(f"{config_path}: no adapter config found") from None
    except ValidationError as error:
        fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise RefimplError(f"{config_path}: invalid adapter config: {fields}") from None
    if config.format_version != FORMAT_VERSION:
        raise RefimplError(
            f"{config_path}: format_version {config.format_version}, this refimpl reads {FORMAT_VERSION}"
        )
    return config


def _read_tensors(weights_path: Path) -> dict[str, torch.Tensor]:
    try:
        with safe_open(weights_path, framework="pt") as handle:
            return {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118 (not a dict)
    except FileNotFoundError:
        raise RefimplError(f"{weights_path}: no adapter weights found") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise RefimplError(f"{weights_path}: not a valid safetensors file ({error})") from None


def _config_differences(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    keys = sorted(set(expected) | set(actual))
    return [
        f"{k}: adapter has {expected.get(k)!r}, model has {actual.get(k)!r}"
        for k in keys
        if expected.get(k) != actual.get(k)
    ]


def load_adapter(base_model: nn.Module, path: str | os.PathLike[str]) -> nn.Module:
    """Re-apply the saved method to a fresh base model and load the adapter's tensors into it.

    Everything is checked before the model is touched where possible; if the tensors do not fit after applying,
    the method is removed again, so a failed load leaves the model as it was.
    """
    folder = Path(path)
    config = read_adapter_config(folder)
    if type(base_model).__name__ != config.base_model_class:
        raise RefimplError(
            f"{folder}: adapter was saved from a {config.base_model_class}, not a {type(base_model).__name__}"
        )
    base_config = _base_config(base_model)
    if _fingerprint(base_config) != config.base_config_sha256:
        differences = _config_differences(
            config.base_config, json.loads(json.dumps(base_config, default=str))
        )
        raise RefimplError(f"{folder}: base model config differs: " + "; ".join(differences[:8]))
    tensors = _read_tensors(folder / WEIGHTS_FILE)
    saved_shapes = {name: list(t.shape) for name, t in tensors.items()}
    if saved_shapes != config.tensors:
        raise RefimplError(
            f"{folder}: weights do not match the tensor list in {CONFIG_FILE} (corrupted or mixed files)"
        )
    apply(base_model, config.method, **config.options, **({"train_head": True} if config.train_head else {}))
    try:
        _copy_into(base_model, tensors, folder)
    except Exception:
        remove(base_model)
        raise
    return base_model


@torch.no_grad()
def _copy_into(model: nn.Module, tensors: dict[str, torch.Tensor], folder: Path) -> None:
    targets = adapter_tensors(model)
    missing, unexpected = sorted(set(targets) - set(tensors)), sorted(set(tensors) - set(targets))
    if missing or unexpected:
        raise RefimplError(
            f"{folder}: adapter tensors do not fit: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for name, target in targets.items():
        if target.shape != tensors[name].shape:
            raise RefimplError(
                f"{folder}: tensor {name!r} has shape {tuple(tensors[name].shape)}, the model expects {tuple(target.shape)}"
            )
    for name, target in targets.items():
        target.copy_(tensors[name].to(device=target.device, dtype=target.dtype))
