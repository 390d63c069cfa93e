"""Scaffold new catalogue entries: every field present, unknown ones marked with the placeholder.

The loader rejects any value still starting with the placeholder, so an unfinished scaffold can
never pass validation unnoticed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from atlas.fsutil import create_text
from atlas.loader import PAPERS_DIR, PLACEHOLDER
from atlas.schema import ARXIV_ID, KEY, Taxonomy
from atlas.text import ascii_words, significant_words


class ScaffoldError(ValueError):
    """Bad input for a scaffold (unknown category, malformed id, existing file)."""


@dataclass
class Draft:
    """What is known about a paper before anyone has checked it."""

    title: str
    authors: list[str] = field(default_factory=list)
    venue: str | None = None
    year: int | None = None
    category: str | None = None
    subcategory: str | None = None
    foundation_models: list[str] = field(default_factory=list)
    arxiv: str | None = None
    paper_url: str | None = None
    code_url: str | None = None
    upstream: dict[str, object] | None = None
    notes: list[str] = field(default_factory=list)


def todo(what: str) -> str:
    return f"{PLACEHOLDER}: {what}"


def derive_key(title: str, taken: Iterable[str] = ()) -> str:
    """A file key from the title: the name before a colon when short ("LoRA: ..." -> lora),
    else its first five significant words; numbered when already taken."""
    name, colon, _ = title.partition(":")
    words = ascii_words(name) if colon and len(name.split()) <= 3 else significant_words(title)[:5]
    base = "-".join(words or ascii_words(title)[:4]) or "paper"
    taken = set(taken)
    key, number = base, 2
    while key in taken:
        key, number = f"{base}-{number}", number + 1
    return key


def existing_keys(root: Path) -> set[str]:
    folder = root / PAPERS_DIR
    return {path.stem for path in folder.glob("*.yaml")} if folder.is_dir() else set()


def check_draft(draft: Draft, taxonomy: Taxonomy, key: str) -> None:
    """Refuse values that are wrong rather than merely unknown."""
    if not re.fullmatch(KEY, key):
        raise ScaffoldError(f"key {key!r}: use lowercase letters and digits joined by hyphens")
    if draft.arxiv is not None and not ARXIV_ID.match(draft.arxiv):
        raise ScaffoldError(f"arXiv id {draft.arxiv!r}: expected a new-style id such as 2106.09685")
    categories = {c.id: c for c in taxonomy.categories}
    if draft.category is not None and draft.category not in categories:
        raise ScaffoldError(f"unknown category {draft.category!r}; choose one of: {', '.join(categories)}")
    fm_ids = [fm.id for fm in taxonomy.foundation_models]
    for fm in draft.foundation_models:
        if fm not in fm_ids:
            raise ScaffoldError(f"unknown FM type {fm!r}; choose from: {', '.join(fm_ids)}")


def scaffold_yaml(draft: Draft, key: str) -> tuple[str, list[str]]:
    """The YAML text of the new entry and the dotted names of the fields still to fill."""
    entry: dict[str, object] = {
        "key": key,
        "title": " ".join(draft.title.split()),
        "authors": draft.authors or [todo("first author as printed on the paper")],
        "authors_complete": True,
        "venue": draft.venue or todo("short venue, e.g. ICLR (delete the line if none is verified)"),
        "year": draft.year or todo("publication year (delete the line if none is verified)"),
        "category": draft.category or todo("a category id of catalog/taxonomy.yaml"),
        "subcategory": draft.subcategory or todo("a subcategory id of that category (or delete the line)"),
        "foundation_models": draft.foundation_models or [todo("an FM type id, e.g. LLM")],
        "links": {
            name: value
            for name, value in (("paper", draft.paper_url), ("arxiv", draft.arxiv), ("code", draft.code_url))
            if value
        },
        "upstream": draft.upstream,
        "summary": todo("two to four sentences, in your own words: what is trained and why it is cheap"),
        "refimpl": {"method": todo("the refimpl method name, e.g. lora"), "relation": "implements"},
        "notes": draft.notes,
        "bibtex": {"type": "inproceedings" if draft.venue else "misc"},
    }
    entry = {name: value for name, value in entry.items() if value not in (None, {}, [])}
    header = (
        "# yaml-language-server: $schema=../schema/paper.schema.json\n"
        f"# Scaffolded by atlas: replace every {PLACEHOLDER} value, then run `atlas validate && atlas readme`.\n"
    )
    text = header + yaml.safe_dump(entry, sort_keys=False, allow_unicode=True, width=100)
    return text, _placeholder_fields(entry)


def _placeholder_fields(value: object, prefix: str = "") -> list[str]:
    if isinstance(value, dict):
        return [f for name, item in value.items() for f in _placeholder_fields(item, f"{prefix}{name}.")]
    if isinstance(value, list):
        return [f for item in value for f in _placeholder_fields(item, prefix)]
    return [prefix.rstrip(".")] if isinstance(value, str) and value.startswith(PLACEHOLDER) else []


def write_scaffold(root: Path, draft: Draft, key: str) -> tuple[Path, list[str]]:
    """Create catalog/papers/<key>.yaml; never overwrites. Returns the path and the fields to fill."""
    text, to_fill = scaffold_yaml(draft, key)
    path = root / PAPERS_DIR / f"{key}.yaml"
    try:
        create_text(path, text)
    except FileExistsError:
        raise ScaffoldError(f"{path} already exists; choose another --key") from None
    return path, to_fill
