"""The user cache of things tasks compute once: pre-trained task backbones and reference results.

Files live in `$REFIMPL_CACHE` (default `~/.cache/refimpl`), named by what they are and a hash of the
configuration that produced them, so a changed config or seed gives a new file and a missing or unreadable file
is simply rebuilt. Every file is written to a temporary name and renamed, so readers never see half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

Tensors = dict[str, torch.Tensor]


def cache_dir() -> Path:
    return Path(os.environ.get("REFIMPL_CACHE") or Path.home() / ".cache" / "refimpl")


def cache_path(kind: str, config: dict[str, Any], suffix: str) -> Path:
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return cache_dir() / f"{kind}-{digest}{suffix}"


def _write_atomically(path: Path, write: Callable[[str], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, scratch = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(handle)
    try:
        write(scratch)
        os.replace(scratch, path)
    except BaseException:
        os.unlink(scratch)
        raise


def cached_tensors(kind: str, config: dict[str, Any], build: Callable[[], Tensors]) -> Tensors:
    """The tensors `build()` returns for this config, from the cache when present (e.g. pre-trained weights)."""
    path = cache_path(kind, config, ".safetensors")
    try:
        return load_file(path)
    except (FileNotFoundError, SafetensorError, OSError):
        pass
    tensors = {
        name: t.detach().clone().contiguous() for name, t in build().items()
    }  # clones untie shared weights
    _write_atomically(path, lambda scratch: save_file(tensors, scratch))
    return tensors


def cached_json(kind: str, config: dict[str, Any], compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The record `compute()` returns for this config, from the cache unless missing or unreadable."""
    path = cache_path(kind, config, ".json")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        pass
    record = compute()
    text = json.dumps(record, indent=2, sort_keys=True) + "\n"
    _write_atomically(path, lambda scratch: Path(scratch).write_text(text, encoding="utf-8"))
    return record
