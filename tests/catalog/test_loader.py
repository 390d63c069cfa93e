"""The validator reports every problem as `path:line: field: message`, at the line of the YAML node."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from atlas.loader import CatalogError, Problem, check_catalog, load_catalog

from .conftest import NOVEL, snapshot, write_paper

NEXT_YEAR = dt.date.today().year + 1
NOVEL_FILE = "catalog/papers/novel.yaml"


def errors(root: Path) -> list[str]:
    _, problems = check_catalog(root)
    return [str(p) for p in problems if p.severity == "error"]


def test_the_fixture_catalogue_is_valid(project: Path) -> None:
    catalog = load_catalog(project)
    assert [p.key for p in catalog.papers] == ["bitfit", "lora"]
    assert catalog.paper("lora").display_venue == "ICLR"
    assert catalog.subcategory("reparameterization", "low-rank").name == "Low-Rank Decomposition"
    assert catalog.foundation_model("LLM").name == "Large Language Model"
    with pytest.raises(KeyError, match="no paper 'nope'"):
        catalog.paper("nope")


# (case, replace this line of NOVEL, with this, expected "line: field: message" of novel.yaml)
BAD_ENTRIES = [
    ("unknown field", "summary: T", "colour: red\nsummary: T", ["12: colour: unknown field"]),
    (
        "wrong type",
        "year: 2023",
        "year: soon",
        ["5: year: Input should be a valid integer, unable to parse string as an integer"],
    ),
    (
        "list expected",
        "authors: [Ada Lovelace]",
        "authors: Ada Lovelace",
        ["3: authors: Input should be a valid list"],
    ),
    ("missing field", "summary: Trains a small thing.\n", "", ["1: summary: missing required field"]),
    (
        "unknown category",
        "category: selective",
        "category: chosen",
        ["6: category: unknown category 'chosen' (selective, reparameterization)"],
    ),
    (
        "subcategory of another category",
        "subcategory: specific-selection",
        "subcategory: low-rank",
        ["7: subcategory: 'low-rank' is not a subcategory of selective (specific-selection)"],
    ),
    ("unknown FM type", "[LLM]", "[LLM, XFM]", ["8: foundation_models[1]: unknown FM type 'XFM' (LLM, VLM)"]),
    (
        "malformed arXiv id",
        '"2301.00001"',
        '"2301.00001v2"',
        ["10: links.arxiv: must be a new-style arXiv id such as 2106.09685 (no version suffix)"],
    ),
    (
        "unquoted arXiv id read as a number",
        '"2301.00001"',
        "2301.00010",
        ['10: links.arxiv: Input should be a valid string: quote it, e.g. "2301.0001"'],
    ),
    (
        "javascript: URL",
        "https://example.org/code",
        "javascript:alert(1)",
        ["11: links.code: must be an http(s) URL"],
    ),
    ("data: URL", "https://example.org/code", "data:text/html,x", ["11: links.code: must be an http(s) URL"]),
    (
        "ftp: URL",
        "https://example.org/code",
        "ftp://example.org/x",
        ["11: links.code: must be an http(s) URL"],
    ),
    ("year too early", "year: 2023", "year: 1989", [f"5: year: must be between 1990 and {NEXT_YEAR}"]),
    (
        "year too late",
        "year: 2023",
        f"year: {NEXT_YEAR + 1}",
        [f"5: year: must be between 1990 and {NEXT_YEAR}"],
    ),
    ("empty summary", "summary: Trains a small thing.", 'summary: "  "', ["12: summary: must not be empty"]),
    (
        "scaffold placeholder",
        "summary: Trains a small thing.",
        "summary: 'TODO: write it'",
        ["12: summary: still the TODO placeholder of the scaffold: fill it in"],
    ),
    (
        "duplicate key in one mapping",
        "  code: https://example.org/code",
        "  code: https://example.org/code\n  code: https://example.org/other",
        ["12: links.code: duplicate key (first given on line 11)"],
    ),
    (
        "unknown refimpl method",
        "method: bitfit",
        "method: bitfitt",
        ["14: refimpl.method: refimpl has no method 'bitfitt' (neither registered nor planned)"],
    ),
    (
        "malformed method name",
        "method: bitfit",
        "method: Bit-Fit",
        ["14: refimpl.method: must be a lowercase Python identifier, e.g. lora"],
    ),
    (
        "key that is not a slug",
        "key: novel",
        "key: Novel",
        [
            "1: key: file name must be Novel.yaml (or the key novel)",
            "1: key: must be lowercase letters and digits joined by single hyphens, e.g. low-rank",
        ],
    ),
    (
        "several problems at once",
        "year: 2023\ncategory: selective",
        "year: 1800\ncategory: chosen",
        [
            "5: year: must be between 1990 and " + str(NEXT_YEAR),
            "6: category: unknown category 'chosen' (selective, reparameterization)",
        ],
    ),
]


@pytest.mark.parametrize(
    ("old", "new", "expected"), [case[1:] for case in BAD_ENTRIES], ids=[c[0] for c in BAD_ENTRIES]
)
def test_each_bad_entry_yields_exactly_its_problem_lines(
    project: Path, old: str, new: str, expected: list[str]
) -> None:
    assert old in NOVEL
    write_paper(project, "novel.yaml", NOVEL.replace(old, new, 1))
    before = snapshot(project)
    assert errors(project) == [f"{NOVEL_FILE}:{line}" for line in expected]
    assert snapshot(project) == before  # validation writes nothing


def test_the_unchanged_novel_entry_is_valid(project: Path) -> None:
    write_paper(project, "novel.yaml", NOVEL)
    assert errors(project) == []


@pytest.mark.parametrize(
    ("old", "new", "field", "what"),
    [
        ("key: novel", "key: bitfit", "key", "key"),
        (
            "title: A Novel Method Used Only in Tests",
            (
                "title: ' bitfit:  simple PARAMETER-efficient fine-tuning for "
                "transformer-based masked language-models'"
            ),
            "title",
            "title",
        ),
        ('"2301.00001"', '"2106.10199"', "links.arxiv", "arXiv id"),
    ],
)
def test_duplicates_across_files_are_errors(project: Path, old: str, new: str, field: str, what: str) -> None:
    text = NOVEL.replace(old, new)
    write_paper(project, "zz.yaml", text if field == "key" else text.replace("key: novel", "key: zz"))
    line = {"key": 1, "title": 2, "links.arxiv": 10}[field]
    problems = [p for p in errors(project) if "file name" not in p]
    assert problems == [f"catalog/papers/zz.yaml:{line}: {field}: same {what} as catalog/papers/bitfit.yaml"]


def test_file_name_must_match_key(project: Path) -> None:
    write_paper(project, "other.yaml", NOVEL)
    assert errors(project) == [
        "catalog/papers/other.yaml:1: key: file name must be novel.yaml (or the key other)"
    ]


def test_a_planned_refimpl_method_is_a_warning_only(project: Path) -> None:
    write_paper(project, "novel.yaml", NOVEL.replace("method: bitfit", "method: vpt"))
    catalog, problems = check_catalog(project)
    assert catalog is not None
    assert [str(p) for p in catalog.warnings] == [
        f"{NOVEL_FILE}:14: refimpl.method: planned method 'vpt': refimpl does not implement it yet"
    ]
    assert problems == list(catalog.warnings)


def test_without_a_refimpl_registry_every_method_is_planned(project: Path, monkeypatch) -> None:
    monkeypatch.setattr("atlas.loader.refimpl_methods", lambda: None)
    catalog = load_catalog(project)
    assert {p.field for p in catalog.warnings} == {"refimpl.method"}
    assert len(catalog.warnings) == 2


def test_a_refimpl_that_fails_to_load_is_a_warning_not_a_crash(project: Path, monkeypatch) -> None:
    def broken() -> None:
        raise NameError("name 'X' is not defined")

    monkeypatch.setattr("atlas.loader.refimpl_methods", broken)
    catalog = load_catalog(project)
    assert str(catalog.warnings[-1]) == (
        "refimpl:1: (import): refimpl fails to load (NameError: name 'X' is not defined); "
        "its methods count as planned"
    )
    assert len(catalog.warnings) == 3  # and both papers' methods are planned


def test_every_problem_in_every_file_is_reported_at_once(project: Path) -> None:
    write_paper(project, "novel.yaml", NOVEL.replace("year: 2023", "year: 1800"))
    write_paper(
        project, "zz.yaml", NOVEL.replace("key: novel", "key: zz").replace("title: A", "title: Another")
    )
    (project / "catalog/papers/stray.yml").write_text("key: stray\n")
    with pytest.raises(CatalogError) as raised:
        load_catalog(project)
    lines = str(raised.value).splitlines()
    assert lines == [
        f"{NOVEL_FILE}:5: year: must be between 1990 and {NEXT_YEAR}",
        "catalog/papers/stray.yml:1: (file): paper files must be named <key>.yaml",
        "catalog/papers/zz.yaml:10: links.arxiv: same arXiv id as catalog/papers/novel.yaml",
    ]
    assert all(isinstance(p, Problem) for p in raised.value.problems)


def test_taxonomy_problems_name_their_line(project: Path) -> None:
    taxonomy = project / "catalog/taxonomy.yaml"
    text = taxonomy.read_text()
    taxonomy.write_text(
        text.replace("id: reparameterization", "id: selective").replace('"#ca8a04"', "yellow")
    )
    assert errors(project) == [
        "catalog/taxonomy.yaml:25: foundation_models[1].color: String should match pattern '^#[0-9a-fA-F]{6}$'"
    ]
    taxonomy.write_text(text.replace("id: reparameterization", "id: selective"))
    assert errors(project) == ["catalog/taxonomy.yaml:10: categories[1].id: duplicate id 'selective'"]


def test_a_missing_taxonomy_is_reported(project: Path) -> None:
    (project / "catalog/taxonomy.yaml").unlink()
    assert errors(project) == ["catalog/taxonomy.yaml:1: (file): cannot read: No such file or directory"]
