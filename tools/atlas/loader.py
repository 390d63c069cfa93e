"""Load catalog/taxonomy.yaml and catalog/papers/*.yaml into validated models.

Every problem in every file is collected before anything is raised, each as
`path:line: field: message`, so one run of `atlas validate` shows all that needs fixing.
"""

from __future__ import annotations

import gc
import importlib
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from atlas.schema import KEY, METHOD_NAME, Category, FoundationModelType, Paper, Subcategory, Taxonomy
from atlas.text import normalise_title
from atlas.yamlsafe import MAX_FILE_BYTES, Document, Location, YamlProblem, read_yaml

TAXONOMY_FILE = Path("catalog/taxonomy.yaml")
PAPERS_DIR = Path("catalog/papers")
_TAXONOMY, _PAPERS = TAXONOMY_FILE.as_posix(), PAPERS_DIR.as_posix()
PLACEHOLDER = "TODO"  # what scaffolds put in fields still to fill; never valid

_FRIENDLY_PATTERNS = {
    KEY: "must be lowercase letters and digits joined by single hyphens, e.g. low-rank",
    METHOD_NAME: "must be a lowercase Python identifier, e.g. lora",
}


@dataclass(frozen=True)
class Problem:
    path: Path
    line: int
    field: str
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.field}: {self.message}"


class CatalogError(Exception):
    """The catalogue has errors; `problems` holds all of them (and the warnings)."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(map(str, self.problems)))


@dataclass(frozen=True)
class Catalog:
    root: Path
    taxonomy: Taxonomy
    papers: tuple[Paper, ...]
    warnings: tuple[Problem, ...] = ()

    @cached_property
    def _papers_by_key(self) -> dict[str, Paper]:
        return {paper.key: paper for paper in self.papers}

    @cached_property
    def _categories(self) -> dict[str, Category]:
        return {category.id: category for category in self.taxonomy.categories}

    @cached_property
    def _foundation_models(self) -> dict[str, FoundationModelType]:
        return {fm.id: fm for fm in self.taxonomy.foundation_models}

    def paper(self, key: str) -> Paper:
        return _lookup(self._papers_by_key, key, "paper")

    def category(self, id: str) -> Category:
        return _lookup(self._categories, id, "category")

    def foundation_model(self, id: str) -> FoundationModelType:
        return _lookup(self._foundation_models, id, "foundation model type")

    def subcategory(self, category_id: str, sub_id: str) -> Subcategory:
        subs = {sub.id: sub for sub in self.category(category_id).subcategories}
        return _lookup(subs, sub_id, f"subcategory of {category_id}")


def _lookup(table: dict, key: str, what: str):
    try:
        return table[key]
    except KeyError:
        raise KeyError(f"no {what} {key!r}") from None


def load_catalog(root: Path | str = ".") -> Catalog:
    """The validated catalogue of the project at `root`; raises CatalogError listing every error."""
    catalog, problems = check_catalog(root)
    if catalog is None:
        raise CatalogError(problems)
    return catalog


def check_catalog(root: Path | str = ".") -> tuple[Catalog | None, list[Problem]]:
    """All problems (errors and warnings, sorted) and the catalogue, which is None when any error exists."""
    checker = _Checker(Path(root))
    with _collector_paused():
        taxonomy = checker.taxonomy()
        papers = checker.papers(taxonomy)
    problems = sorted(checker.problems, key=lambda p: (str(p.path), p.line, p.field, p.message))
    warnings = tuple(p for p in problems if p.severity == "warning")
    if taxonomy is None or len(warnings) < len(problems):
        return None, problems
    return Catalog(Path(root), taxonomy, tuple(sorted(papers, key=lambda p: p.key)), warnings), problems


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while thousands of models pile up: they hold no cycles,
    and its repeated full scans would otherwise cost a third of the loading time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def load_taxonomy(root: Path | str = ".") -> Taxonomy:
    """Only the taxonomy (for tools that must work while some paper entries are unfinished)."""
    checker = _Checker(Path(root))
    taxonomy = checker.taxonomy()
    if taxonomy is None:
        raise CatalogError(checker.problems)
    return taxonomy


def field_name(location: Location) -> str:
    """('links', 'arxiv') -> links.arxiv; ('authors', 0) -> authors[0]."""
    name = ""
    for part in location:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "(document)"


@dataclass(frozen=True)
class RefimplMethods:
    registered: frozenset[str]
    planned: frozenset[str]


def refimpl_methods() -> RefimplMethods | None:
    """What refimpl registers and plans, or None while it offers no `methods()` (all count as planned)."""
    try:
        refimpl = importlib.import_module("refimpl")
    except ImportError:
        return None
    methods = getattr(refimpl, "methods", None)
    if not callable(methods):
        return None
    planned = getattr(refimpl, "planned_methods", None)
    return RefimplMethods(
        frozenset(info.name for info in methods()), frozenset(planned() if callable(planned) else ())
    )


class _Checker:
    # Paths are plain strings relative to the root while checking (pathlib is slow in a 10,000-file
    # loop); a Problem gets a Path.
    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self.problems: list[Problem] = []

    def add(self, path: str, line: int, field: str, message: str, severity: str = "error") -> None:
        self.problems.append(Problem(Path(path), line, field, message, severity))  # type: ignore[arg-type]

    def read(self, path: str) -> Document | None:
        """The YAML mapping in `path`, or None after recording why it cannot be used."""
        try:
            with open(os.path.join(self.root, path), "rb") as file:
                raw = file.read(MAX_FILE_BYTES + 1)
            document = read_yaml(raw, mark=PLACEHOLDER)
        except OSError as error:
            self.add(path, 1, "(file)", f"cannot read: {error.strerror or error}")
            return None
        except YamlProblem as problem:
            self.add(path, problem.line, "(file)", problem.message)
            return None
        if not isinstance(document.data, dict):
            self.add(path, document.line_of(()), "(document)", "must be a mapping of field names to values")
            return None
        for location, line, first_line in document.duplicate_keys:
            self.add(path, line, field_name(location), f"duplicate key (first given on line {first_line})")
        return document

    def validate(self, model: type, document: Document, path: str):
        """The model built from the document, or None after recording each schema error at its line.

        Placeholders left by a scaffold are errors too, unless the schema already objected there.
        """
        refused: set[Location] = set()
        try:
            result = model.model_validate(document.data)
        except ValidationError as error:
            result = None
            for detail in error.errors(include_url=False):
                location = detail["loc"]
                refused.add(location)
                self.add(path, document.line_of(location), field_name(location), _message(detail))
        for location in document.marked:
            if location not in refused:
                self.add(path, document.line_of(location), field_name(location), _PLACEHOLDER_MESSAGE)
        return result

    def taxonomy(self) -> Taxonomy | None:
        document = self.read(_TAXONOMY)
        if document is None:
            return None
        taxonomy = self.validate(Taxonomy, document, _TAXONOMY)
        if taxonomy is None:
            return None
        unique_before = len(self.problems)
        self._unique_ids(document, ("categories",), [c.id for c in taxonomy.categories])
        self._unique_ids(document, ("foundation_models",), [fm.id for fm in taxonomy.foundation_models])
        for index, category in enumerate(taxonomy.categories):
            location = ("categories", index, "subcategories")
            self._unique_ids(document, location, [sub.id for sub in category.subcategories])
        return taxonomy if len(self.problems) == unique_before else None

    def _unique_ids(self, document: Document, location: Location, ids: list[str]) -> None:
        seen: set[str] = set()
        for index, id in enumerate(ids):
            if id in seen:
                line = document.line_of((*location, index, "id"))
                self.add(_TAXONOMY, line, field_name((*location, index, "id")), f"duplicate id {id!r}")
            seen.add(id)

    def papers(self, taxonomy: Taxonomy | None) -> list[Paper]:
        papers: list[Paper] = []
        try:
            methods = refimpl_methods()
        except Exception as error:  # noqa: BLE001 - a half-edited refimpl must not stop catalogue work
            methods = None
            message = f"refimpl fails to load ({type(error).__name__}: {error}); its methods count as planned"
            self.add("refimpl", 1, "(import)", message, "warning")
        entries = _PaperChecks(self, taxonomy, methods)
        for path in self._paper_files():
            document = self.read(path)
            if document is None:
                continue
            paper = self.validate(Paper, document, path)
            entries.check(path, document)
            if paper is not None:
                papers.append(paper)
        return papers

    def _paper_files(self) -> Iterator[str]:
        try:
            folder = os.scandir(os.path.join(self.root, _PAPERS))
            names = sorted(entry.name for entry in folder if entry.is_file())
        except OSError as error:
            self.add(_PAPERS, 1, "(folder)", f"cannot list: {error.strerror or error}")
            return
        for name in names:
            if name.endswith(".yaml"):
                yield f"{_PAPERS}/{name}"
            elif not name.startswith("."):
                self.add(f"{_PAPERS}/{name}", 1, "(file)", "paper files must be named <key>.yaml")


_METHOD_NAME = re.compile(METHOD_NAME)
_PLACEHOLDER_MESSAGE = f"still the {PLACEHOLDER} placeholder of the scaffold: fill it in"


def _message(detail: dict) -> str:
    kind, message = detail["type"], detail["msg"]
    if kind == "missing":
        return "missing required field"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "value_error":
        return message.removeprefix("Value error, ")
    if kind == "string_pattern_mismatch":
        return _FRIENDLY_PATTERNS.get(detail["ctx"]["pattern"], message)
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_type" and isinstance(detail.get("input"), (int, float)):
        return f'{message}: quote it, e.g. "{detail["input"]}"'
    return message


class _PaperChecks:
    """Checks across fields and files: taxonomy references, uniqueness, file names, refimpl methods.

    They read the raw YAML data (type-guarded) so an entry with schema errors is still checked.
    """

    def __init__(self, checker: _Checker, taxonomy: Taxonomy | None, methods: RefimplMethods | None) -> None:
        self.add = checker.add
        self.methods = methods
        self.subcategories = (
            {c.id: {s.id for s in c.subcategories} for c in taxonomy.categories} if taxonomy else None
        )
        self.fm_ids = {fm.id for fm in taxonomy.foundation_models} if taxonomy else None
        self.first_seen: dict[tuple[str, str], str] = {}

    def check(self, path: str, document: Document) -> None:
        data: dict = document.data  # type: ignore[assignment]
        line = document.line_of
        key = data.get("key")
        name = path.rpartition("/")[2]
        if isinstance(key, str) and name != f"{key}.yaml":
            message = f"file name must be {key}.yaml (or the key {name.removesuffix('.yaml')})"
            self.add(path, line(("key",)), "key", message)
        links = data.get("links")
        arxiv = links.get("arxiv") if isinstance(links, dict) else None
        title = data.get("title")
        for kind, value, location in (
            ("key", key, ("key",)),
            ("title", normalise_title(title) if isinstance(title, str) else None, ("title",)),
            ("arXiv id", arxiv, ("links", "arxiv")),
        ):
            if isinstance(value, str) and value:
                first = self.first_seen.setdefault((kind, value), path)
                if first != path:
                    self.add(path, line(location), field_name(location), f"same {kind} as {first}")
        self._taxonomy_references(path, data, line)
        self._methods(path, data, line)

    def _taxonomy_references(self, path: str, data: dict, line) -> None:
        if self.subcategories is None or self.fm_ids is None:
            return
        category, subcategory = data.get("category"), data.get("subcategory")
        if isinstance(category, str):
            if category not in self.subcategories:
                known = ", ".join(self.subcategories)
                self.add(path, line(("category",)), "category", f"unknown category {category!r} ({known})")
            elif isinstance(subcategory, str) and subcategory not in self.subcategories[category]:
                known = ", ".join(sorted(self.subcategories[category])) or "none"
                self.add(
                    path,
                    line(("subcategory",)),
                    "subcategory",
                    f"{subcategory!r} is not a subcategory of {category} ({known})",
                )
        fms = data.get("foundation_models")
        for index, fm in enumerate(fms if isinstance(fms, list) else ()):
            if isinstance(fm, str) and fm not in self.fm_ids:
                location = ("foundation_models", index)
                known = ", ".join(sorted(self.fm_ids))
                self.add(path, line(location), field_name(location), f"unknown FM type {fm!r} ({known})")

    def _methods(self, path: str, data: dict, line) -> None:
        refimpl = data.get("refimpl")
        if not isinstance(refimpl, dict):
            return
        also = refimpl.get("also")
        named = [(("refimpl", "method"), refimpl.get("method"))]
        named += [
            (("refimpl", "also", i), name) for i, name in enumerate(also if isinstance(also, list) else ())
        ]
        for location, name in named:
            if not (isinstance(name, str) and _METHOD_NAME.fullmatch(name)):
                continue
            if self.methods is None or name in self.methods.planned:
                message = f"planned method {name!r}: refimpl does not implement it yet"
                self.add(path, line(location), field_name(location), message, "warning")
            elif name not in self.methods.registered:
                message = f"refimpl has no method {name!r} (neither registered nor planned)"
                self.add(path, line(location), field_name(location), message)
