"""Throw-away copies of the project for tests and benchmarks: copy, change the catalogue, build the site.

A copy holds what a site build reads: mkdocs.yml, site_src/, catalog/, CONTRIBUTING.md and bench/, plus a link
to tools/ (the hook and theme override that mkdocs.yml names). Synthetic entries are variations of the
real ones, so every field stays valid: same taxonomy, same refimpl methods, other keys, titles and years.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from atlas.loader import Catalog

SITE_INPUTS = ("mkdocs.yml", "site_src", "catalog", "CONTRIBUTING.md", "bench")


def copy_project(source: Path, target: Path) -> Path:
    """Copy the site's inputs from project `source` into `target` (created) and return `target`."""
    target.mkdir(parents=True, exist_ok=True)
    for name in SITE_INPUTS:
        path = source / name
        if path.is_dir():
            shutil.copytree(path, target / name)
        elif path.is_file():
            shutil.copy2(path, target / name)
    (target / "tools").symlink_to((source / "tools").resolve(), target_is_directory=True)
    return target


def write_paper(root: Path, entry: dict) -> Path:
    path = root / "catalog" / "papers" / f"{entry['key']}.yaml"
    path.write_text(yaml.dump(entry, Dumper=yaml.CSafeDumper, sort_keys=False, allow_unicode=True), "utf-8")
    return path


def synthetic_catalog(root: Path, real: Catalog, count: int, seed: int = 0) -> None:
    """Replace the papers of the project copy at `root` by `count` variations of the real entries."""
    papers_dir = root / "catalog" / "papers"
    shutil.rmtree(papers_dir)
    papers_dir.mkdir()
    rng = random.Random(seed)
    templates = [paper.model_dump(mode="json", exclude_none=True) for paper in real.papers]
    for index in range(count):
        entry = dict(templates[index % len(templates)])
        entry["key"] = f"{entry['key']}-s{index}"
        entry["title"] = f"{entry['title']} (synthetic variant {index})"
        entry["year"] = rng.randint(2017, 2025)
        entry.pop("upstream", None)  # upstream positions and arXiv ids are unique to the real entries
        entry["links"] = {k: v for k, v in entry["links"].items() if k != "arxiv"}
        entry["bibtex"] = {k: v for k, v in entry["bibtex"].items() if k != "key"}
        write_paper(root, entry)


class SiteBuildError(Exception):
    """`mkdocs build --strict` failed; the message holds its output."""


def build_site(project: Path, site_dir: Path) -> Path:
    """`mkdocs build --strict` of the project at `project` into `site_dir`, run from another folder."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "-q",
            "-f",
            str(project / "mkdocs.yml"),
            "-d",
            str(site_dir),
        ],
        check=False,
        cwd=site_dir.parent,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
    )
    if result.returncode:
        raise SiteBuildError(f"mkdocs build failed for {project}:\n{result.stdout}\n{result.stderr}")
    return site_dir
