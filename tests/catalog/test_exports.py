"""catalog.json, papers.bib and papers.csv: complete, parseable, escaped; written atomically."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import bibtexparser
import jsonschema
import pytest
from atlas import exports
from atlas.exports import bibtex_entry, bibtex_key, catalog_json, papers_bib, papers_csv, write_exports
from atlas.fsutil import atomic_write_text, replace_directory
from atlas.loader import load_catalog
from atlas.schema import Paper, Taxonomy

from .conftest import NOVEL, snapshot, write_paper

SPECIAL_TITLE = r"Fast & Cheap: 100% {Robust} $x^2$ Tuning_with ~ \ #1 Über-Model"
SPECIAL = (
    NOVEL.replace("title: A Novel Method Used Only in Tests", f"title: '{SPECIAL_TITLE}'")
    .replace(
        "authors: [Ada Lovelace]", "authors: ['=HYPERLINK(\"x\")', Ben and Jerry]\nauthors_complete: false"
    )
    .replace(
        "  type: misc",
        "  type: article\n  venue_full: Journal of Tests & Trials\n  pages: 1--9\n  doi: 10.1000/xyz",
    )
)
_LATEX = re.compile(r"(\\text\w+\{\})|\\([&%$#_])|[{}]")
_MACROS = {
    r"\textbackslash{}": "\\",
    r"\textbraceleft{}": "{",
    r"\textbraceright{}": "}",
    r"\textasciitilde{}": "~",
    r"\textasciicircum{}": "^",
}


def unlatex(text: str) -> str:
    """Undo our escaping and the protective braces, as a reader of the bibliography sees the text."""
    return _LATEX.sub(lambda m: _MACROS[m[1]] if m[1] else (m[2] or ""), text)


@pytest.fixture
def catalog(project: Path):
    write_paper(project, "novel.yaml", SPECIAL)
    return load_catalog(project)


def test_json_holds_the_taxonomy_and_every_paper_as_the_schema_describes(catalog) -> None:
    document = json.loads(catalog_json(catalog))
    assert [p["key"] for p in document["papers"]] == ["bitfit", "lora", "novel"]
    jsonschema.validate(document["taxonomy"], Taxonomy.model_json_schema())
    for paper in document["papers"]:
        jsonschema.validate(paper, Paper.model_json_schema())
    assert document["papers"][2]["title"] == SPECIAL_TITLE
    assert catalog_json(catalog) == catalog_json(catalog)  # stable


def test_bibtex_parses_back_to_the_same_titles_years_and_authors(catalog) -> None:
    entries = {e["ID"]: e for e in bibtexparser.loads(papers_bib(catalog)).entries}
    assert sorted(entries) == ["hu2022lora", "hyperlinkx2023fast", "zaken2022bitfit"]
    for paper in catalog.papers:
        entry = entries[bibtex_key(paper, catalog)]
        assert unlatex(entry["title"]) == paper.title
        assert entry["year"] == str(paper.display_year)
    assert entries["hu2022lora"]["author"] == "Edward J. Hu and Yelong Shen and others"
    assert entries["hu2022lora"]["booktitle"] == "International Conference on Learning Representations"
    special = entries["hyperlinkx2023fast"]
    assert special["ENTRYTYPE"] == "article"
    assert special["journal"] == r"Journal of Tests \& Trials"
    assert (special["pages"], special["doi"]) == ("1--9", "10.1000/xyz")
    assert special["author"] == r'=HYPERLINK("x") and {Ben and Jerry} and others'
    assert (special["eprint"], special["archiveprefix"]) == ("2301.00001", "arXiv")


def test_bibtex_titles_protect_capitals_and_escape_latex(catalog) -> None:
    entry = bibtex_entry(catalog.paper("novel"))
    assert (
        r"title = {{Fast} \& {Cheap:} 100\% {\textbraceleft{}Robust\textbraceright{}} \$x\textasciicircum{}2\$"
        in entry
    )
    assert r"{Tuning\_with} \textasciitilde{} \textbackslash{} \#1 {Über-Model}}" in entry  # UTF-8 kept


def test_bibtex_misc_entries_name_arxiv(project: Path) -> None:
    write_paper(project, "novel.yaml", NOVEL.replace("venue: ICLR\n", ""))
    entry = bibtex_entry(load_catalog(project).paper("novel"))
    assert "@misc{lovelace2023novel," in entry
    assert "howpublished = {arXiv preprint}" in entry and "archivePrefix = {arXiv}" in entry


def test_clashing_bibtex_keys_get_letters(project: Path) -> None:
    write_paper(project, "novel.yaml", NOVEL)
    second = NOVEL.replace("key: novel", "key: novel-two").replace("Used Only", "Seen Only")
    write_paper(project, "novel-two.yaml", second.replace('"2301.00001"', '"2301.00002"'))
    catalog = load_catalog(project)
    assert bibtex_key(catalog.paper("novel")) == "lovelace2023novel"
    assert exports.bibtex_keys(catalog) == {
        "bitfit": "zaken2022bitfit",
        "lora": "hu2022lora",
        "novel": "lovelace2023novela",
        "novel-two": "lovelace2023novelb",
    }
    assert [e["ID"] for e in bibtexparser.loads(papers_bib(catalog)).entries].count("lovelace2023novelb") == 1


def test_csv_has_one_flat_row_per_paper_and_no_formulas(catalog) -> None:
    rows = list(csv.DictReader(io.StringIO(papers_csv(catalog))))
    assert [row["key"] for row in rows] == ["bitfit", "lora", "novel"]
    novel = rows[2]
    assert novel["authors"] == '\'=HYPERLINK("x"); Ben and Jerry'
    assert novel["title"] == SPECIAL_TITLE
    assert rows[0]["authors"] == "Elad Ben Zaken; Shauli Ravfogel; Yoav Goldberg"
    assert (novel["year"], novel["authors_complete"], novel["bibtex_key"]) == (
        "2023",
        "false",
        "hyperlinkx2023fast",
    )
    for row in rows:
        assert not any(cell[:1] in "=+-@" and cell for cell in row.values())


@pytest.mark.parametrize("start", ["=", "+", "-", "@"])
def test_every_formula_prefix_is_neutralised(project: Path, start: str) -> None:
    title = "A Novel Method Used Only in Tests"
    write_paper(project, "novel.yaml", NOVEL.replace(f"title: {title}", f"title: '{start}{title}'"))
    rows = list(csv.DictReader(io.StringIO(papers_csv(load_catalog(project)))))
    assert rows[2]["title"] == f"'{start}A Novel Method Used Only in Tests"


def test_write_exports_writes_all_three_or_nothing(catalog, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "exports"
    written = write_exports(catalog, out)
    assert [p.name for p in written] == ["catalog.json", "papers.bib", "papers.csv"]
    assert (out / "papers.bib").read_text(encoding="utf-8") == papers_bib(catalog)
    before = snapshot(out)
    monkeypatch.setattr(exports, "papers_csv", lambda catalog: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        write_exports(load_catalog(catalog.root), out)
    assert snapshot(out) == before


def test_atomic_write_leaves_no_temporary_file_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    atomic_write_text(path, "old")
    with pytest.raises(TypeError):
        atomic_write_text(path, None)  # type: ignore[arg-type]
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_replace_directory_swaps_in_only_a_complete_build(tmp_path: Path) -> None:
    target = tmp_path / "site"

    def build(version: str):
        def fill(folder: Path) -> None:
            (folder / "index.html").write_text(version)
            if version == "broken":
                raise RuntimeError("build failed half-way")

        return fill

    replace_directory(build("one"), target)
    replace_directory(build("two"), target)
    assert (target / "index.html").read_text() == "two"
    with pytest.raises(RuntimeError):
        replace_directory(build("broken"), target)
    assert (target / "index.html").read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["site"]
