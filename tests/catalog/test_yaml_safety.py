"""Hostile YAML is refused with a line number: no code runs, no memory or time is exhausted."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest
from atlas.loader import check_catalog
from atlas.yamlsafe import MAX_NODES, YamlProblem, read_yaml

from .conftest import NOVEL, write_paper

BILLION_LAUGHS = "\n".join(
    [f"a0: &a0 [{', '.join(['lol'] * 9)}]"]
    + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
)


def problems_of(root: Path, name: str) -> list[str]:
    _, problems = check_catalog(root)
    return [f"{p.line}: {p.field}: {p.message}" for p in problems if p.path.name == name]


@pytest.mark.parametrize(
    "tag", ["!!python/object/apply:os.system", "!!python/object/new:os.system", "!!python/name:os.system"]
)
def test_python_tags_are_refused_without_running(project: Path, tag: str) -> None:
    marker = project / "pwned"
    write_paper(
        project, "novel.yaml", NOVEL.replace("summary: Trains", f'summary: {tag} ["touch {marker}"]\nx: ')
    )
    assert problems_of(project, "novel.yaml") == [
        f"12: (file): YAML tag {tag.split(':os')[0]}:os.system is not allowed"
    ]
    assert not marker.exists()


def test_an_alias_bomb_is_refused_quickly(project: Path) -> None:
    write_paper(project, "bomb.yaml", BILLION_LAUGHS)
    started = time.perf_counter()
    problems = problems_of(project, "bomb.yaml")
    assert time.perf_counter() - started < 1.0
    assert len(problems) == 1
    assert f"more than {MAX_NODES:,} YAML nodes" in problems[0]


def test_a_recursive_alias_is_refused() -> None:
    with pytest.raises(YamlProblem, match="nested more than"):
        read_yaml(b"a: &a [*a]\n")


def test_a_huge_file_is_refused_without_being_read(project: Path) -> None:
    path = write_paper(project, "huge.yaml", "summary: '" + "a" * 10_000_000 + "'\n")
    tracemalloc.start()
    problems = problems_of(project, "huge.yaml")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert problems == ["1: (file): file is larger than 1,000,000 bytes"]
    assert peak < 3_000_000  # only the first megabyte was read
    assert path.stat().st_size > 10_000_000


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"a: [" * 2000, "invalid YAML"),  # libyaml stops at its nesting limit
        (b"a:\n" + b"".join(b" " * i + b"- \n" for i in range(1, 60)), "nested more than"),
        (b"base: &b {x: 1}\nother:\n  <<: *b\n", "no tags, complex keys or << merges"),
        (b"? [a, b]\n: c\n", "no tags, complex keys or << merges"),
        (b"key: \xff\xfe\n", "invalid YAML"),
        (b"a: 1\n---\nb: 2\n", "invalid YAML"),
        (b"", "file is empty"),
        (b"key: !!binary aGVsbG8=\n", "YAML tag !!binary is not allowed"),
    ],
    ids=[
        "deep flow nesting",
        "deep block nesting",
        "merge key",
        "complex key",
        "not UTF-8",
        "two documents",
        "empty",
        "binary",
    ],
)
def test_malformed_or_unusual_yaml_is_refused(text: bytes, message: str) -> None:
    with pytest.raises(YamlProblem, match=message):
        read_yaml(text)


def test_core_scalars_keep_their_yaml_types() -> None:
    document = read_yaml(b"a: 1\nb: true\nc: ~\nd: 1.5\ne: '1'\nf: 2024-01-02\n")
    assert document.data == {"a": 1, "b": True, "c": None, "d": 1.5, "e": "1", "f": "2024-01-02"}
    assert document.line_of(("d",)) == 4
    assert document.line_of(("missing",)) == 1
