"""Read an awesome-list README (the upstream shape) and compare it with the catalogue.

Shape: `### [Selective PEFT](#content)` category headings, `![LLM](badge)` FM lines, `##### Sub`
subheadings, and numbered items `1. **Title**. **Venue Year**.` followed by `*authors*` and
`[[paper]](url)` / `[[code]](url)` lines. Known papers are matched by normalised title (ours or
the upstream one), arXiv id or paper URL; new ones can be scaffolded, existing files never change.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

from atlas.loader import Catalog
from atlas.scaffold import Draft, derive_key, existing_keys, todo, write_scaffold
from atlas.schema import Paper, Taxonomy
from atlas.text import normalise_title

_CATEGORY = re.compile(r"^###\s+(?:\[(?P<linked>[^\]]+)\]\([^)]*\)|(?P<plain>[^#].*?))\s*$")
_SECTION_END = re.compile(r"^#{1,2}\s")
_BADGE = re.compile(r"^!\[(?P<fm>[A-Za-z]+)\]\(")
_SUBHEADING = re.compile(r"^#####\s+(?P<name>.+?)\s*$")
_ITEM_START = re.compile(r"^(?P<number>\d+)\.\s+\*\*")
_ITEM = re.compile(
    r"^(?P<number>\d+)\.\s+\*\*(?P<title>.+?)\*\*\s*\.?\s*(?:\*\*(?P<venue>.+?)\*\*)?"
    r"(?:.*?(?<!\*)\*(?!\*)(?P<authors>[^*]+?)\*(?!\*))?"
)
_LINK = re.compile(r"\[\[(?P<label>paper|code)\]\]\((?P<url>[^)\s]+)\)")
_VENUE_YEAR = re.compile(r"^(?P<venue>.*?)[\s,]*(?P<year>(?:19|20)\d\d)$")
_PREPRINT_SERVERS = {"arXiv", "CoRR"}
_ARXIV_URL = re.compile(r"arxiv\.org/(?:abs|pdf)/(?P<id>\d{4}\.\d{4,5})")


@dataclass(frozen=True)
class ListedPaper:
    """One numbered item of the list, as printed."""

    line: int
    category: str
    foundation_model: str
    subheading: str | None
    position: int
    title: str
    venue_as_listed: str | None
    authors: tuple[str, ...]
    paper_url: str | None
    code_url: str | None

    @property
    def venue_and_year(self) -> tuple[str | None, int | None]:
        match = _VENUE_YEAR.match(self.venue_as_listed or "")
        if not match:
            return self.venue_as_listed, None
        return match["venue"] or None, int(match["year"])

    @property
    def arxiv(self) -> str | None:
        match = _ARXIV_URL.search(self.paper_url or "")
        return match["id"] if match else None


def parse_awesome(text: str) -> list[ListedPaper]:
    """Every numbered item under a category heading, in document order."""
    items: list[ListedPaper] = []
    context: dict[str, str | None] = {"category": None, "fm": None, "sub": None}
    block: list[str] = []
    block_line = 0

    def flush() -> None:
        if block and context["category"]:
            items.append(_item(" ".join(block), block_line, context))
        block.clear()

    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if category := _CATEGORY.match(stripped):
            flush()
            context.update(category=category["linked"] or category["plain"], fm=None, sub=None)
        elif _SECTION_END.match(stripped):
            flush()
            context.update(category=None, fm=None, sub=None)
        elif badge := _BADGE.match(stripped):
            flush()
            context.update(fm=badge["fm"], sub=None)
        elif sub := _SUBHEADING.match(stripped):
            flush()
            context["sub"] = sub["name"]
        elif _ITEM_START.match(stripped):
            flush()
            block.append(stripped)
            block_line = number
        elif block and stripped:
            block.append(stripped)
    flush()
    return items


def _item(text: str, line: int, context: dict[str, str | None]) -> ListedPaper:
    match = _ITEM.match(text)
    assert match, text  # _ITEM_START matched, and every group after the title is optional
    links = {m["label"]: m["url"] for m in _LINK.finditer(text)}
    venue = " ".join((match["venue"] or "").split()).rstrip(". ") or None
    authors = tuple(a.strip() for a in (match["authors"] or "").split(",") if a.strip())
    return ListedPaper(
        line=line,
        category=context["category"] or "",
        foundation_model=context["fm"] or "",
        subheading=context["sub"],
        position=int(match["number"]),
        title=" ".join(match["title"].split()),
        venue_as_listed=venue,
        authors=authors,
        paper_url=links.get("paper"),
        code_url=links.get("code"),
    )


@dataclass(frozen=True)
class Match:
    listed: ListedPaper
    paper: Paper
    differences: tuple[str, ...]  # "field: list '...', catalogue '...'" not recorded in `upstream`


@dataclass(frozen=True)
class NewPaper:
    listed: ListedPaper
    key: str
    path: Path | None  # where the scaffold was written; None in a dry run


@dataclass(frozen=True)
class ImportReport:
    listed: tuple[ListedPaper, ...]
    matches: tuple[Match, ...]
    new: tuple[NewPaper, ...]


def import_awesome(catalog: Catalog, text: str, write: bool = False) -> ImportReport:
    listed = parse_awesome(text)
    index = _Index(catalog.papers)
    taken = existing_keys(catalog.root) | {p.key for p in catalog.papers}
    matches, new = [], []
    for item in listed:
        paper = index.find(item)
        if paper is not None:
            matches.append(Match(item, paper, tuple(_differences(item, paper))))
            continue
        key = derive_key(item.title, taken)
        taken.add(key)
        path = None
        if write:
            path, _ = write_scaffold(catalog.root, _draft(item, catalog.taxonomy), key)
        new.append(NewPaper(item, key, path))
    return ImportReport(tuple(listed), tuple(matches), tuple(new))


class _Index:
    def __init__(self, papers: tuple[Paper, ...]) -> None:
        self.by_value: dict[str, Paper] = {}
        for paper in papers:
            titles = [paper.title] + (
                [paper.upstream.title] if paper.upstream and paper.upstream.title else []
            )
            for title in titles:
                self.by_value.setdefault("title:" + normalise_title(title), paper)
            if paper.links.arxiv:
                self.by_value.setdefault("arxiv:" + paper.links.arxiv, paper)
            if paper.links.paper:
                self.by_value.setdefault("url:" + paper.links.paper, paper)

    def find(self, item: ListedPaper) -> Paper | None:
        for probe in ("title:" + normalise_title(item.title), f"arxiv:{item.arxiv}", f"url:{item.paper_url}"):
            if probe in self.by_value:
                return self.by_value[probe]
        return None


def _differences(item: ListedPaper, paper: Paper) -> list[str]:
    """Fields where the list and the catalogue disagree and `upstream` does not record it."""
    upstream = paper.upstream
    ours_venue = f"{paper.display_venue} {paper.display_year or ''}".strip()
    checks = [
        ("title", item.title, [paper.title, upstream and upstream.title]),
        ("venue", item.venue_as_listed, [ours_venue, upstream and upstream.venue]),
        ("authors", ", ".join(item.authors), [", ".join(paper.authors), upstream and upstream.authors]),
        ("links.paper", item.paper_url, [paper.links.paper]),
        ("links.code", item.code_url, [paper.links.code, paper.links.project]),  # lists mix the two
    ]
    differences = []
    for name, listed, known in checks:
        if not listed:
            continue
        known_values = [value for value in known if value]
        listed_words = normalise_title(listed)
        same = {normalise_title(value) for value in known_values}
        # Where ours lists only the first author(s), the list may name more.
        partial = name == "authors" and not paper.authors_complete
        if listed_words not in same and not (partial and any(listed_words.startswith(v) for v in same)):
            ours = known_values[0] if known_values else "(none)"
            differences.append(f"{name}: list {listed!r}, catalogue {ours!r}")
    return differences


def _closest(name: str, choices: dict[str, str]) -> str | None:
    """The id whose normalised name is closest to `name` (tolerates typos such as 'Addictive')."""
    found = difflib.get_close_matches(normalise_title(name), list(choices), n=1, cutoff=0.75)
    return choices[found[0]] if found else None


def _draft(item: ListedPaper, taxonomy: Taxonomy) -> Draft:
    category = _closest(item.category, {normalise_title(c.name): c.id for c in taxonomy.categories})
    subcategory = None
    if category and item.subheading:
        subs = next(c.subcategories for c in taxonomy.categories if c.id == category)
        subcategory = _closest(item.subheading, {normalise_title(s.name): s.id for s in subs})
    venue, year = item.venue_and_year
    if venue in _PREPRINT_SERVERS:  # not a peer-reviewed venue: the schema leaves `venue` empty
        venue = None
    upstream = {
        "category": item.category,
        "foundation_model": item.foundation_model,
        "subheading": item.subheading,
        "position": item.position,
    }
    fm_ids = {fm.id for fm in taxonomy.foundation_models}
    return Draft(
        title=item.title,
        authors=list(item.authors),
        venue=venue,
        year=year,
        category=category,
        subcategory=subcategory,
        foundation_models=[item.foundation_model] if item.foundation_model in fm_ids else [],
        arxiv=item.arxiv,
        paper_url=item.paper_url
        if item.paper_url and item.paper_url.startswith(("http://", "https://"))
        else None,
        code_url=item.code_url
        if item.code_url and item.code_url.startswith(("http://", "https://"))
        else None,
        upstream={name: value for name, value in upstream.items() if value},
        notes=[todo("check title, authors, venue and year against the paper itself; the list has errors")],
    )
