"""Writes that never leave a half-written file or folder behind."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to a temporary file beside `path`, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as file:
            file.write(text)
        # mkstemp creates the file private (0600); give it the mode an ordinary new file would get.
        os.chmod(temporary, _existing_mode(path) or 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def create_text(path: Path, text: str) -> None:
    """Like atomic_write_text, but never replaces an existing file (FileExistsError instead)."""
    path = Path(path)
    staging = path.parent / f".{path.name}.new-{os.getpid()}"
    atomic_write_text(staging, text)
    try:
        os.link(staging, path)  # fails if `path` exists, so no check-then-write race
    finally:
        staging.unlink()


def replace_directory(build: Callable[[Path], None], target: Path) -> None:
    """Let `build` fill a fresh temporary sibling of `target`; swap it in only if `build` returns.

    If `build` raises, the previous `target` is untouched and the temporary folder is removed.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.build-"))
    try:
        build(staging)
        staging.chmod(0o777 & ~_umask())
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    previous = target.parent / f".{target.name}.previous-{os.getpid()}"
    if target.exists():
        os.replace(target, previous)
    try:
        os.replace(staging, target)
    except BaseException:
        if previous.exists():
            os.replace(previous, target)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(previous, ignore_errors=True)


def _existing_mode(path: Path) -> int | None:
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        return None


def _umask() -> int:
    # os.umask can only be read by setting it; restore it at once.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
