"""Fixtures for the catalogue engine: temporary projects built from a minimal taxonomy and two entries."""

from __future__ import annotations

import shutil
from pathlib import Path

import atlas.loader
import pytest
from atlas.loader import RefimplMethods

FIXTURES = Path(__file__).parent / "fixtures"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
UPSTREAM_LIST = FIXTURES / "upstream-awesome-list.md"
REAL_REFIMPL_METHODS = atlas.loader.refimpl_methods

# A new, valid entry; tests corrupt one line at a time and expect the problem on that line.
NOVEL = """\
key: novel
title: A Novel Method Used Only in Tests
authors: [Ada Lovelace]
venue: ICLR
year: 2023
category: selective
subcategory: specific-selection
foundation_models: [LLM]
links:
  arxiv: "2301.00001"
  code: https://example.org/code
summary: Trains a small thing.
refimpl:
  method: bitfit
  relation: uses
bibtex:
  type: misc
"""


@pytest.fixture(autouse=True)
def fake_refimpl(monkeypatch: pytest.MonkeyPatch) -> RefimplMethods:
    """refimpl as the tests assume it, independent of which methods are implemented so far."""
    methods = RefimplMethods(registered=frozenset({"lora", "bitfit"}), planned=frozenset({"vpt"}))
    monkeypatch.setattr(atlas.loader, "refimpl_methods", lambda: methods)
    return methods


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project root with catalog/taxonomy.yaml and two valid papers (lora, bitfit)."""
    shutil.copytree(FIXTURES / "catalog", tmp_path / "catalog")
    return tmp_path


def write_paper(root: Path, name: str, text: str) -> Path:
    path = root / "catalog" / "papers" / name
    path.write_text(text, encoding="utf-8")
    return path


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root` with its content, to prove a command wrote nothing."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
