"""Generate README.md: the hand-written header from the template, then the list built from the catalogue."""

from __future__ import annotations

import difflib
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from atlas.fsutil import atomic_write_text
from atlas.loader import Catalog
from atlas.project import SITE_URL, SURVEY_ARXIV, SURVEY_AUTHORS, SURVEY_TITLE, arxiv_url, method_page_url
from atlas.schema import FoundationModelType, Paper, PaperKind
from atlas.text import normalise_title

README = Path("README.md")
TEMPLATES = Path(__file__).parent / "templates"

# Markdown punctuation is backslash-escaped; HTML and the table/strike-through characters become
# entities, which every renderer (GitHub, Python-Markdown) shows literally.
_MARKDOWN_ESCAPES = str.maketrans(
    {
        **{char: "\\" + char for char in "\\`*_[]()#!{}"},
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        "|": "&#124;",
        "~": "&#126;",
    }
)
_URL_UNSAFE = str.maketrans({" ": "%20", "(": "%28", ")": "%29", "<": "%3C", ">": "%3E"})
_KIND_NOTES = {
    PaperKind.analysis: "analysis, not a method",
    PaperKind.backbone: "backbone model, not a PEFT method",
    PaperKind.off_topic: "off-topic entry of the upstream list",
}


def md(text: object) -> str:
    """Catalogue text shown literally by a Markdown renderer (no emphasis, links or HTML)."""
    return " ".join(str(text).split()).translate(_MARKDOWN_ESCAPES)


def md_url(url: str) -> str:
    return url.translate(_URL_UNSAFE)


def badge_url(fm: FoundationModelType) -> str:
    return f"https://img.shields.io/badge/{fm.id}-{fm.color.lstrip('#')}"


@dataclass
class _Group:
    heading: str | None
    papers: list[Paper] = field(default_factory=list)


@dataclass
class _Section:
    heading: str
    anchor: str
    badge: str = ""
    definition: str = ""
    groups: list[_Group] = field(default_factory=list)
    children: list[_Section] = field(default_factory=list)
    count: int = 0


class _Slugger:
    """GitHub's heading anchors: lowercase, punctuation dropped, spaces to '-', repeats numbered."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()

    def __call__(self, heading: str) -> str:
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        count = self.seen[slug]
        self.seen[slug] += 1
        return f"{slug}-{count}" if count else slug


def _sections(catalog: Catalog) -> list[_Section]:
    slug = _Slugger()
    sections = []
    for category in catalog.taxonomy.categories:
        in_category = sorted(
            (p for p in catalog.papers if p.category == category.id),
            key=lambda p: (p.display_year or 9999, normalise_title(p.title), p.key),
        )
        section = _Section(category.name, slug(category.name), definition=category.definition)
        section.count = len(in_category)
        for fm in catalog.taxonomy.foundation_models:
            papers = [p for p in in_category if fm.id in p.foundation_models]
            if not papers:
                continue
            heading = f"{fm.name} ({fm.id})"
            child = _Section(heading, slug(heading), badge=badge_url(fm), count=len(papers))
            child.groups.append(_Group(None, [p for p in papers if not p.subcategory]))
            for sub in category.subcategories:
                child.groups.append(_Group(sub.name, [p for p in papers if p.subcategory == sub.id]))
            child.groups = [group for group in child.groups if group.papers]
            section.children.append(child)
        sections.append(section)
    return sections


def _counts(catalog: Catalog) -> list[list[object]]:
    """Rows: category name, papers per FM type, distinct papers; a last row with the totals."""
    fms = [fm.id for fm in catalog.taxonomy.foundation_models]
    rows: list[list[object]] = []
    for category in catalog.taxonomy.categories:
        papers = [p for p in catalog.papers if p.category == category.id]
        rows.append(
            [category.name, *(sum(fm in p.foundation_models for p in papers) for fm in fms), len(papers)]
        )
    totals = [sum(row[i + 1] for row in rows) for i in range(len(fms))]  # type: ignore[misc]
    rows.append(["All", *totals, len(catalog.papers)])
    return rows


def _source_files(root: Path) -> dict[str, str]:
    """Method name -> path of refimpl/**/<method>.py relative to the project root."""
    files: dict[str, str] = {}
    for path in sorted((root / "refimpl").rglob("*.py"), key=lambda p: (len(p.parts), p.as_posix())):
        files.setdefault(path.stem, path.relative_to(root).as_posix())
    return files


def _links(paper: Paper, sources: dict[str, str]) -> str:
    """The entry's link line: [[paper]](...) [[arXiv]](...) ... for the links it has."""
    arxiv = paper.links.arxiv and arxiv_url(paper.links.arxiv)
    links = [
        ("paper", paper.links.paper if paper.links.paper != arxiv else None),  # no twin links
        ("arXiv", arxiv),
        ("code", paper.links.code),
        ("project", paper.links.project),
        (
            "reference implementation",
            sources.get(paper.refimpl.method) or method_page_url(paper.refimpl.method),
        ),
    ]
    return " ".join(f"[[{label}]]({md_url(url)})" for label, url in links if url)


def render_readme(catalog: Catalog) -> str:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=False,  # Markdown, escaped explicitly with the md filter
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["md"] = md
    sources = _source_files(catalog.root)
    text = environment.get_template("README.md.j2").render(
        survey_title=SURVEY_TITLE,
        survey_url=arxiv_url(SURVEY_ARXIV),
        survey_authors=SURVEY_AUTHORS,
        site_url=SITE_URL,
        taxonomy=catalog.taxonomy,
        fm_badges={fm.id: badge_url(fm) for fm in catalog.taxonomy.foundation_models},
        sections=_sections(catalog),
        counts=_counts(catalog),
        total=len(catalog.papers),
        links=lambda paper: _links(paper, sources),
        authors=lambda paper: ", ".join(paper.authors) + ("" if paper.authors_complete else ", et al."),
        kind_note=lambda paper: _KIND_NOTES.get(paper.kind),
    )
    # The template's loops leave runs of blank lines; one blank line is all Markdown needs.
    return re.sub(r"\n{3,}", "\n\n", text).rstrip("\n") + "\n"


def write_readme(catalog: Catalog) -> Path:
    path = catalog.root / README
    atomic_write_text(path, render_readme(catalog))
    return path


def readme_diff(catalog: Catalog, context_lines: int = 20) -> list[str]:
    """The head of a unified diff from README.md on disk to the generated one; empty when fresh."""
    path = catalog.root / README
    current = path.read_text(encoding="utf-8") if path.exists() else ""
    diff = difflib.unified_diff(
        current.splitlines(keepends=True),
        render_readme(catalog).splitlines(keepends=True),
        "README.md (on disk)",
        "README.md (generated)",
    )
    return [line.rstrip("\n") for _, line in zip(range(context_lines), diff)]
