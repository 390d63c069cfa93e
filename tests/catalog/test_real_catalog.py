"""The real catalogue: all 82 papers load, export and round-trip; generated files are fresh."""

from __future__ import annotations

import shutil
from pathlib import Path

import atlas.loader
import bibtexparser
import pytest
from atlas.cli import main
from atlas.exports import bibtex_keys, papers_bib
from atlas.importer import import_awesome, parse_awesome
from atlas.loader import Catalog, check_catalog, load_catalog
from atlas.readme import readme_diff
from atlas.schemafiles import stale_schemas
from atlas.text import normalise_title

from .conftest import PROJECT_ROOT, REAL_REFIMPL_METHODS, UPSTREAM_LIST
from .test_exports import unlatex

PAPERS = 82


@pytest.fixture
def real(monkeypatch: pytest.MonkeyPatch) -> Catalog:
    """The real catalogue; refimpl links count as planned here (their own test is below)."""
    monkeypatch.setattr(atlas.loader, "refimpl_methods", lambda: None)
    return load_catalog(PROJECT_ROOT)


def test_the_catalogue_holds_exactly_the_82_surveyed_papers(real: Catalog) -> None:
    assert len(list((PROJECT_ROOT / "catalog/papers").glob("*.yaml"))) == PAPERS
    assert len(real.papers) == PAPERS


def test_every_refimpl_link_is_registered_or_planned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(atlas.loader, "refimpl_methods", REAL_REFIMPL_METHODS)
    _, problems = check_catalog(PROJECT_ROOT)
    assert [str(p) for p in problems if p.severity == "error"] == []


def test_papers_bib_parses_back_into_the_same_titles_and_years(real: Catalog) -> None:
    entries = bibtexparser.loads(papers_bib(real)).entries
    keys = bibtex_keys(real)
    assert len(entries) == PAPERS and len({e["ID"] for e in entries}) == PAPERS
    by_key = {entry["ID"]: entry for entry in entries}
    for paper in real.papers:
        entry = by_key[keys[paper.key]]
        assert unlatex(entry["title"]) == paper.title
        assert entry.get("year") == (str(paper.display_year) if paper.display_year else None)


def test_every_paper_exports(real: Catalog, tmp_path: Path, capsys) -> None:
    assert main(["export", "--root", str(PROJECT_ROOT), "--out", str(tmp_path)]) == 0
    csv_lines = (tmp_path / "papers.csv").read_text(encoding="utf-8").splitlines()
    assert len(csv_lines) >= PAPERS + 1


def test_the_importer_recovers_the_75_upstream_titles(real: Catalog) -> None:
    listed = parse_awesome(UPSTREAM_LIST.read_text(encoding="utf-8"))
    in_list = {normalise_title(p.upstream.title or p.title) for p in real.papers if p.upstream}
    assert len(listed) == 75
    assert {normalise_title(item.title) for item in listed} == in_list
    report = import_awesome(real, UPSTREAM_LIST.read_text(encoding="utf-8"))
    assert report.new == () and len({match.paper.key for match in report.matches}) == 75


def test_the_committed_json_schemas_are_fresh() -> None:
    assert stale_schemas(PROJECT_ROOT) == []


def test_the_committed_readme_is_fresh(real: Catalog) -> None:
    assert readme_diff(real) == [], "README.md is stale: run `atlas readme`"


def test_readme_check_notices_an_edited_entry_in_a_copy(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(atlas.loader, "refimpl_methods", lambda: None)
    for name in ("catalog", "refimpl"):
        shutil.copytree(PROJECT_ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PROJECT_ROOT / "README.md", tmp_path / "README.md")
    root = ["--root", str(tmp_path)]
    main(["readme", *root])
    assert main(["readme", "--check", *root]) == 0
    lora = tmp_path / "catalog/papers/lora.yaml"
    lora.write_text(lora.read_text(encoding="utf-8").replace("year: 2022", "year: 2023"), encoding="utf-8")
    assert main(["readme", "--check", *root]) == 1
    assert main(["readme", *root]) == 0
    assert main(["readme", "--check", *root]) == 0
