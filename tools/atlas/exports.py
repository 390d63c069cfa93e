"""Machine-readable exports of the catalogue: catalog.json, papers.bib and papers.csv."""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from pathlib import Path

import pydantic_core

from atlas.fsutil import atomic_write_text
from atlas.loader import Catalog
from atlas.project import arxiv_url
from atlas.schema import BibtexType, Paper
from atlas.text import ascii_words, significant_words

EXPORT_FILES = ("catalog.json", "papers.bib", "papers.csv")

# --- JSON ------------------------------------------------------------------------------------


def catalog_json(catalog: Catalog) -> str:
    """The taxonomy and every paper (sorted by key), each exactly as the schema describes it."""
    document = {"taxonomy": catalog.taxonomy, "papers": list(catalog.papers)}
    # pydantic's serialiser writes indented JSON many times faster than json.dumps(indent=...).
    return pydantic_core.to_json(document, indent=2).decode("utf-8") + "\n"


# --- BibTeX ----------------------------------------------------------------------------------

_LATEX_SPECIALS = str.maketrans(
    {
        "\\": r"\textbackslash{}",
        "{": r"\textbraceleft{}",  # not \{ : BibTeX counts every brace, escaped or not
        "}": r"\textbraceright{}",
        "&": r"\&",
        "%": r"\%",
        "$": r"\$",
        "#": r"\#",
        "_": r"\_",
        "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}",
    }
)
# Characters a URL field must not carry raw: they would unbalance braces or end the field.
_URL_UNSAFE = str.maketrans({"{": "%7B", "}": "%7D", "\\": "%5C", " ": "%20"})


def latex_escape(text: str) -> str:
    return text.translate(_LATEX_SPECIALS)


def _bib_title(title: str) -> str:
    """Escape the title and brace every word holding a capital, so styles cannot lowercase it."""
    words = (latex_escape(word) for word in title.split())
    return " ".join(f"{{{word}}}" if any(c.isupper() for c in word) else word for word in words)


def _bib_author(name: str) -> str:
    escaped = latex_escape(" ".join(name.split()))
    # A literal "and" inside one name would split it into two authors.
    return f"{{{escaped}}}" if re.search(r"\band\b", name, re.IGNORECASE) else escaped


def _base_key(paper: Paper) -> str:
    first_author = paper.authors[0]
    surname = first_author.split(",")[0] if "," in first_author else first_author.split()[-1]
    title_words = significant_words(paper.title) or ascii_words(paper.title) or ["paper"]
    return "".join(ascii_words(surname)) + str(paper.display_year or "") + title_words[0]


def bibtex_keys(catalog: Catalog) -> dict[str, str]:
    """Paper key -> BibTeX key, unique: clashing derived keys get a, b, ... in paper-key order."""
    groups: dict[str, list[Paper]] = defaultdict(list)
    for paper in catalog.papers:
        groups[paper.bibtex.key or _base_key(paper)].append(paper)
    keys: dict[str, str] = {}
    for base, papers in groups.items():
        for index, paper in enumerate(papers):
            keys[paper.key] = base if len(papers) == 1 else base + _suffix(index)
    return keys


def _suffix(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("a") + rest) + letters
    return letters


def bibtex_key(paper: Paper, catalog: Catalog | None = None) -> str:
    """The paper's BibTeX key; pass the catalogue to get the disambiguated key used in papers.bib."""
    if catalog is not None:
        return bibtex_keys(catalog)[paper.key]
    return paper.bibtex.key or _base_key(paper)


def bibtex_entry(paper: Paper, catalog: Catalog | None = None, *, key: str | None = None) -> str:
    """One BibTeX entry for the paper (key as in papers.bib when the catalogue is given)."""
    bib = paper.bibtex
    venue = bib.venue_full or paper.venue
    authors = [_bib_author(name) for name in paper.authors] + ([] if paper.authors_complete else ["others"])
    fields: list[tuple[str, str | None]] = [
        ("title", _bib_title(paper.title)),
        ("author", " and ".join(authors)),
    ]
    if bib.type is BibtexType.inproceedings:
        fields.append(("booktitle", latex_escape(venue or paper.display_venue)))
    elif bib.type is BibtexType.article:
        fields.append(("journal", latex_escape(venue or paper.display_venue)))
    else:
        fields.append(("howpublished", latex_escape(venue) if venue else "arXiv preprint"))
    fields += [
        ("year", str(paper.display_year) if paper.display_year else None),
        ("volume", bib.volume and latex_escape(bib.volume)),
        ("number", bib.number and latex_escape(bib.number)),
        ("pages", bib.pages and latex_escape(bib.pages)),
        ("doi", bib.doi and latex_escape(bib.doi)),
        ("eprint", paper.links.arxiv),
        ("archivePrefix", "arXiv" if paper.links.arxiv else None),
        ("url", _paper_url(paper)),
    ]
    body = ",\n".join(f"  {name} = {{{value}}}" for name, value in fields if value)
    return f"@{bib.type.value}{{{key or bibtex_key(paper, catalog)},\n{body}\n}}\n"


def _paper_url(paper: Paper) -> str | None:
    url = paper.links.paper or (arxiv_url(paper.links.arxiv) if paper.links.arxiv else None)
    return url.translate(_URL_UNSAFE) if url else None


def papers_bib(catalog: Catalog) -> str:
    keys = bibtex_keys(catalog)
    return "\n".join(bibtex_entry(paper, key=keys[paper.key]) for paper in catalog.papers)


# --- CSV -------------------------------------------------------------------------------------

CSV_COLUMNS = (
    *(
        "key",
        "title",
        "authors",
        "authors_complete",
        "kind",
        "venue",
        "year",
        "display_venue",
        "display_year",
    ),
    *("category", "subcategory", "foundation_models", "paper_url", "arxiv", "code_url", "project_url"),
    *("refimpl_method", "refimpl_relation", "refimpl_also", "in_upstream_list", "bibtex_key", "summary"),
)


def _csv_row(paper: Paper, bib_key: str) -> list[str]:
    links = paper.links
    values: dict[str, object] = {
        "key": paper.key,
        "title": paper.title,
        "authors": "; ".join(paper.authors),
        "authors_complete": paper.authors_complete,
        "kind": paper.kind.value,
        "venue": paper.venue,
        "year": paper.year,
        "display_venue": paper.display_venue,
        "display_year": paper.display_year,
        "category": paper.category,
        "subcategory": paper.subcategory,
        "foundation_models": "; ".join(paper.foundation_models),
        "paper_url": links.paper,
        "arxiv": links.arxiv,
        "code_url": links.code,
        "project_url": links.project,
        "refimpl_method": paper.refimpl.method,
        "refimpl_relation": paper.refimpl.relation.value,
        "refimpl_also": "; ".join(paper.refimpl.also),
        "in_upstream_list": paper.in_upstream_list,
        "bibtex_key": bib_key,
        "summary": " ".join(paper.summary.split()),
    }
    return [_csv_cell(values[column]) for column in CSV_COLUMNS]


def _csv_cell(value: object) -> str:
    if value is None:
        return ""
    text = str(value).lower() if isinstance(value, bool) else str(value)
    # A spreadsheet would run a cell that starts like a formula; a leading quote keeps it text.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def papers_csv(catalog: Catalog) -> str:
    keys = bibtex_keys(catalog)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(_csv_row(paper, keys[paper.key]) for paper in catalog.papers)
    return buffer.getvalue()


def write_exports(catalog: Catalog, out_dir: Path) -> list[Path]:
    """Write catalog.json, papers.bib and papers.csv into `out_dir`, each file atomically.

    All three are rendered before the first is written, so a failure leaves every old file in place.
    """
    renderers = {"catalog.json": catalog_json, "papers.bib": papers_bib, "papers.csv": papers_csv}
    texts = {Path(out_dir) / name: renderers[name](catalog) for name in EXPORT_FILES}
    for path, text in texts.items():
        atomic_write_text(path, text)
    return list(texts)
