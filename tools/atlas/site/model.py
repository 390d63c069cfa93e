"""The catalogue regrouped the way the site shows it: by category, subcategory, FM type and method."""

from __future__ import annotations

import importlib
import inspect
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atlas.loader import Catalog
from atlas.schema import Paper
from atlas.site.bench import BenchResults

RUN_COMMAND = "python -m refimpl run {method}"


def paper_url(key: str) -> str:
    return f"papers/{key}/"


def category_url(category_id: str) -> str:
    return f"taxonomy/{category_id}/"


def subcategory_url(category_id: str, subcategory_id: str) -> str:
    return f"taxonomy/{category_id}/{subcategory_id}/"


def fm_url(fm_id: str) -> str:
    return f"foundation-models/{fm_id.lower()}/"


def method_url(name: str) -> str:
    return f"methods/{name}/"


COMPARE_URL = "methods/compare/"


@dataclass(frozen=True)
class Option:
    name: str
    default: str  # repr of the default value
    description: str


@dataclass(frozen=True)
class Source:
    path: str  # as the package lays it out: refimpl/<category>/<module>.py
    text: str


@dataclass
class Method:
    """A reference implementation named by the catalogue, with the papers that point to it."""

    name: str
    papers: list[tuple[Paper, str]] = field(default_factory=list)  # (paper, relation)
    info: Any = None  # refimpl's MethodInfo when refimpl is importable and registers the method

    @property
    def command(self) -> str:
        return RUN_COMMAND.format(method=self.name)

    def options(self) -> list[Option]:
        """The method's options as its code declares them (refimpl's Options model); [] when unregistered."""
        if self.info is None:
            return []
        fields = importlib.import_module("refimpl").get_method(self.name).Options.model_fields
        return [
            Option(name, repr(self.info.options[name]), field.description or "")
            for name, field in fields.items()
        ]

    def source(self) -> Source | None:
        """The module that implements the method, read from the code itself."""
        if self.info is None:
            return None
        module = importlib.import_module(self.info.module)
        package_root = Path(inspect.getfile(importlib.import_module(self.info.module.split(".")[0]))).parents[
            1
        ]
        path = Path(inspect.getfile(module)).relative_to(package_root)
        return Source(path.as_posix(), inspect.getsource(module))


def registered_methods() -> dict[str, Any] | None:
    """refimpl's MethodInfo by name, or None when refimpl (or its registry) is not available."""
    try:
        refimpl = importlib.import_module("refimpl")
    except ImportError:
        return None
    methods = getattr(refimpl, "methods", None)
    if not callable(methods):
        return None
    return {info.name: info for info in methods()}


@dataclass
class SiteModel:
    catalog: Catalog
    registry: dict[str, Any] | None  # None: refimpl not importable in this build
    bench: BenchResults | None  # None: no results file in this build
    by_category: dict[str, list[Paper]]
    by_subcategory: dict[tuple[str, str], list[Paper]]
    by_fm: dict[str, list[Paper]]
    methods: dict[str, Method]

    @classmethod
    def build(
        cls, catalog: Catalog, registry: dict[str, Any] | None, bench: BenchResults | None = None
    ) -> SiteModel:
        by_category: dict[str, list[Paper]] = defaultdict(list)
        by_subcategory: dict[tuple[str, str], list[Paper]] = defaultdict(list)
        by_fm: dict[str, list[Paper]] = defaultdict(list)
        methods: dict[str, Method] = {}
        for paper in catalog.papers:
            by_category[paper.category].append(paper)
            if paper.subcategory:
                by_subcategory[(paper.category, paper.subcategory)].append(paper)
            for fm in paper.foundation_models:
                by_fm[fm].append(paper)
            for name in (paper.refimpl.method, *paper.refimpl.also):  # `also` shares the paper's relation
                method = methods.setdefault(name, Method(name, info=(registry or {}).get(name)))
                method.papers.append((paper, paper.refimpl.relation.value))
        return cls(
            catalog=catalog,
            registry=registry,
            bench=bench,
            by_category=dict(by_category),
            by_subcategory=dict(by_subcategory),
            by_fm=dict(by_fm),
            methods=dict(sorted(methods.items())),
        )

    def grouped_by_fm(self, papers: list[Paper]) -> list[tuple[Any, list[Paper]]]:
        """(FM type, papers) in taxonomy order; a paper for several FM types appears under each."""
        return [
            (fm, [p for p in papers if fm.id in p.foundation_models])
            for fm in self.catalog.taxonomy.foundation_models
            if any(fm.id in p.foundation_models for p in papers)
        ]

    def grouped_by_category(self, papers: list[Paper]) -> list[tuple[Any, list[Paper]]]:
        return [
            (category, [p for p in papers if p.category == category.id])
            for category in self.catalog.taxonomy.categories
            if any(p.category == category.id for p in papers)
        ]
