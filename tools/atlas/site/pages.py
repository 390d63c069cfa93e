"""Every generated page of the site, as ready HTML rendered from Jinja templates (autoescape on)."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from markupsafe import Markup, escape
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

from atlas import exports
from atlas.project import SURVEY_ARXIV, SURVEY_AUTHORS, SURVEY_BIBTEX, SURVEY_TITLE, SURVEY_YEAR, arxiv_url
from atlas.schema import Paper, PaperKind, Relation
from atlas.site import charts
from atlas.site.bench import BENCH_COMMAND, BENCH_FILE, Row, comparison_rows
from atlas.site.model import (
    COMPARE_URL,
    Method,
    SiteModel,
    category_url,
    fm_url,
    method_url,
    paper_url,
    subcategory_url,
)

RELATED_LIMIT = 8
# Matching rows the explorer lists before "list them all": laying out thousands of rows takes seconds.
EXPLORER_SHOWN_AT_ONCE = 100
# (sort key or "" when the column does not sort, heading); explorer.js knows the same sort keys.
EXPLORER_COLUMNS = [
    ("title", "Title"),
    ("authors", "Authors"),
    ("year", "Year"),
    ("venue", "Venue"),
    ("category", "Category"),
    ("", "FM"),
    ("", "Code"),
    ("method", "Reference implementation"),
]
_HTTP = re.compile(r"^https?://", re.IGNORECASE)

RELATION_PHRASES = {
    Relation.implements.value: "implements this paper's method",
    Relation.uses.value: "the method this paper applies or builds on",
    Relation.related.value: "the closest implementation to this paper's content",
}
# The same relation seen from a method page.
PAPER_RELATIONS = {
    Relation.implements.value: "proposes this method",
    Relation.uses.value: "applies or builds on this method",
    Relation.related.value: "proposes no method of its own; this is the closest implementation",
}
KIND_NOTES = {
    PaperKind.analysis: "an analysis paper; it proposes no PEFT method",
    PaperKind.backbone: "a foundation model that PEFT methods build on, not a PEFT method",
    PaperKind.off_topic: "listed upstream by mistake; not about PEFT",
}


@dataclass
class Page:
    """One generated page: `uri` is its source path in the docs folder (always a folder index)."""

    uri: str
    title: str  # plain text; escaped once where it becomes mkdocs' (HTML) page title
    body: str  # ready HTML, or Markdown when `markdown` is set
    meta: dict[str, Any] = field(default_factory=dict)
    in_nav: bool = True
    markdown: bool = False
    search_html: str | None = None  # what the search index sees instead of `body`, to keep it lean


def http_only(url: str) -> str:
    """The last guard before an href: the validator already refuses other schemes."""
    if not _HTTP.match(url):
        raise ValueError(f"refusing to link to a non-http(s) URL: {url!r}")
    return url


def script_json(data: Any) -> Markup:
    """JSON that is safe inside <script type="application/json">: no raw <, > or &."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return Markup(text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e"))


def times(value: float | None) -> str:
    """A ratio to a reference, as the comparison prints it."""
    return "not measured" if value is None else f"{value:.2f}×"


def percent(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.3g}%"


def number(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.4g}"


def point_series(row: Row) -> str:
    """The FM type of the model a method was measured on (its task's), else the task itself."""
    return (row.task and row.task.foundation_model) or row.run.task_key


def run_summary(row: Row) -> str:
    """One line on a measured method, for hover titles."""
    run = row.run
    return (
        f"{row.method} on {run.task_key}: {percent(run.trainable_percent)} trainable, "
        f"{run.metric} {number(run.value)} ({times(row.quality_vs_full)} full fine-tuning's), "
        f"step {times(run.step_time_vs_full)} full fine-tuning's"
    )


def python_html(source: str) -> Markup:
    """Python source as syntax-highlighted HTML in the markup Material styles; Pygments escapes the text."""
    return Markup(highlight(source, PythonLexer(), HtmlFormatter(cssclass="highlight", wrapcode=True)))


def authors_short(paper: Paper) -> str:
    authors = paper.authors
    if len(authors) > 2:
        return f"{authors[0]} et al."
    return " and ".join(authors) + ("" if paper.authors_complete else " et al.")


class PageBuilder:
    def __init__(self, model: SiteModel, repo_url: str) -> None:
        self.model = model
        self.catalog = model.catalog
        self.taxonomy = model.catalog.taxonomy
        self.categories = {c.id: c for c in self.taxonomy.categories}
        self.fms = {fm.id: fm for fm in self.taxonomy.foundation_models}
        self.bibtex_keys = exports.bibtex_keys(self.catalog)  # the keys papers.bib uses, computed once
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["http"] = http_only
        self.env.globals.update(
            taxonomy=self.taxonomy,
            categories=self.categories,
            fms=self.fms,
            repo_url=repo_url,
            paper_url=paper_url,
            category_url=category_url,
            subcategory_url=subcategory_url,
            fm_url=fm_url,
            method_url=method_url,
            authors_short=authors_short,
            subcategory_name=self.subcategory_name,
            relation_phrase=RELATION_PHRASES.__getitem__,
            paper_relation=PAPER_RELATIONS.__getitem__,
            method_status=self.method_status,
            method_category=self.method_category,
            yes_no=lambda flag: "yes" if flag else "no",
            times=times,
            percent=percent,
            number=number,
            compare_url=COMPARE_URL,
            bench_command=BENCH_COMMAND,
            bench_file=BENCH_FILE.as_posix(),
        )

    # --- helpers used by the templates -----------------------------------------------------------

    def subcategory_name(self, paper: Paper) -> str:
        return self.catalog.subcategory(paper.category, paper.subcategory).name

    def method_status(self, method: Method) -> str:
        if self.model.registry is None:
            return "refimpl not importable in this build"
        return "implemented in refimpl" if method.info else "planned, not yet in refimpl"

    def method_category(self, method: Method) -> str:
        category_id = getattr(method.info, "category", None)
        if category_id not in self.categories:  # absent from refimpl: ask the papers that implement it
            implementing = [
                p.category for p, relation in method.papers if relation == Relation.implements.value
            ]
            category_id = Counter(implementing or [p.category for p, _ in method.papers]).most_common(1)[0][0]
        return self.categories[category_id].name

    def render(self, template: str, page_uri: str, **context: Any) -> str:
        root = "../" * page_uri.count("/")
        return self.env.get_template(template).render(root=root, **context)

    def page(
        self,
        uri: str,
        title: str,
        template: str,
        *,
        in_nav: bool = True,
        sidebar: bool = False,
        searchable: bool = True,
        **context: Any,
    ) -> Page:
        """A page of ready HTML. Its headings are not Markdown, so there is never a table of contents;
        the navigation sidebar only helps inside the Taxonomy and Foundation models sections."""
        meta: dict[str, Any] = {"hide": ["toc"] if sidebar else ["toc", "navigation"]}
        if not searchable:
            meta["search"] = {"exclude": True}
        if not in_nav:
            meta["atlas_shared_sidebars"] = True  # see theme/main.html
        return Page(uri, title, self.render(template, uri, **context), meta, in_nav)

    # --- the pages -------------------------------------------------------------------------------

    def pages(self) -> Iterator[Page]:
        yield self.home()
        yield from self.taxonomy_pages()
        yield from self.fm_pages()
        yield self.explorer()
        yield from self.method_pages()
        yield self.trends()
        yield self.page(
            "downloads/index.md",
            "Downloads",
            "downloads.html",
            searchable=False,
            count=len(self.catalog.papers),
        )
        for paper in self.catalog.papers:
            yield self.paper(paper)

    def home(self) -> Page:
        papers = self.catalog.papers
        return self.page(
            "index.md",
            "PEFT Atlas",
            "home.html",
            papers=papers,
            subcategory_count=sum(len(c.subcategories) for c in self.taxonomy.categories),
            method_count=len(self.model.methods),
            implemented=None
            if self.model.registry is None
            else sum(1 for m in self.model.methods.values() if m.info),
            with_code=sum(1 for p in papers if p.links.code),
            survey=(SURVEY_TITLE, arxiv_url(SURVEY_ARXIV), SURVEY_AUTHORS, SURVEY_YEAR),
            survey_bibtex=SURVEY_BIBTEX,
            fm_counts={fm: len(self.model.by_fm.get(fm, [])) for fm in self.fms},
            taxonomy_svg=Markup(self.taxonomy_svg()),
        )

    def taxonomy_svg(self) -> str:
        by_sub = self.model.by_subcategory
        categories = tuple(
            charts.TreeNode(
                f"{c.name} ({len(self.model.by_category.get(c.id, []))})",
                category_url(c.id),
                charts.palette_color(i),
                tuple(
                    charts.TreeNode(
                        f"{s.name} ({len(by_sub.get((c.id, s.id), []))})",
                        subcategory_url(c.id, s.id),
                        charts.palette_color(i),
                    )
                    for s in c.subcategories
                ),
            )
            for i, c in enumerate(self.taxonomy.categories)
        )
        root = charts.TreeNode(
            f"PEFT ({len(self.catalog.papers)} papers)", "taxonomy/", "#777777", categories
        )
        desc = "; ".join(
            f"{c.label}: " + (", ".join(s.label for s in c.children) or "no subcategories")
            for c in categories
        )
        return charts.tree("taxonomy", root, "The PEFT taxonomy with paper counts", desc)

    def taxonomy_pages(self) -> Iterator[Page]:
        by_category, by_sub = self.model.by_category, self.model.by_subcategory
        yield self.page(
            "taxonomy/index.md",
            "Taxonomy",
            "taxonomy.html",
            sidebar=True,
            counts={c: len(by_category.get(c, [])) for c in self.categories},
            sub_counts=_zero_sub_counts(self.taxonomy) | {key: len(papers) for key, papers in by_sub.items()},
        )
        for category in self.taxonomy.categories:
            papers = by_category.get(category.id, [])
            children = [
                (s.name, subcategory_url(category.id, s.id), len(by_sub.get((category.id, s.id), [])))
                for s in category.subcategories
            ]
            yield self.group_page(
                category_url(category.id),
                category.name,
                category.definition,
                papers,
                self.model.grouped_by_fm(papers),
                {"category": category.id},
                children=children,
            )
            for sub in category.subcategories:
                papers = by_sub.get((category.id, sub.id), [])
                yield self.group_page(
                    subcategory_url(category.id, sub.id),
                    sub.name,
                    sub.definition,
                    papers,
                    self.model.grouped_by_fm(papers),
                    {"subcategory": f"{category.id}/{sub.id}"},
                    parent=(category.name, category_url(category.id)),
                )

    def fm_pages(self) -> Iterator[Page]:
        fm_counts = {fm: len(self.model.by_fm.get(fm, [])) for fm in self.fms}
        yield self.page(
            "foundation-models/index.md",
            "Foundation models",
            "fm_index.html",
            sidebar=True,
            fm_counts=fm_counts,
        )
        for fm in self.taxonomy.foundation_models:
            papers = self.model.by_fm.get(fm.id, [])
            yield self.group_page(
                fm_url(fm.id),
                fm.name,
                fm.definition,
                papers,
                self.model.grouped_by_category(papers),
                {"fm": fm.id},
            )

    def group_page(
        self,
        url: str,
        title: str,
        definition: str,
        papers: list[Paper],
        groups: list[tuple[Any, list[Paper]]],
        explorer_query: dict[str, str],
        children: list[tuple[str, str, int]] | None = None,
        parent: tuple[str, str] | None = None,
    ) -> Page:
        return self.page(
            url + "index.md",
            title,
            "group.html",
            sidebar=True,
            definition=definition,
            total=len(papers),
            groups=[(group.name, members) for group, members in groups],
            explorer_query=urlencode(explorer_query),
            children=children or [],
            parent=parent,
        )

    def explorer(self) -> Page:
        rows = [self.explorer_row(p) for p in self.catalog.papers]
        venues = sorted({row["venue"] for row in rows}, key=str.lower)
        facets = [
            _Facet("category", "Category", [(c.id, c.name) for c in self.taxonomy.categories]),
            _Facet(
                "subcategory",
                "Subcategory",
                [(f"{c.id}/{s.id}", s.name) for c in self.taxonomy.categories for s in c.subcategories],
            ),
            _Facet("fm", "Foundation model", [(fm.id, f"{fm.id}: {fm.name}") for fm in self.fms.values()]),
            _Facet("venue", "Venue", [(v, v) for v in venues]),
        ]
        data = [
            {
                "key": row["key"],
                "category": row["category_id"],
                "subcategory": row["subcategory_id"],
                "fm": row["fms"],
                "year": row["year"],
                "venue": row["venue"],
                "code": bool(row["code"]),
                "refimpl": row["refimpl"],
                "text": row["text"],
                "sort": {k: row[k] for k in ("title", "authors", "venue", "category", "method")},
            }
            for row in rows
        ]
        return self.page(
            "explorer/index.md",
            "Explorer",
            "explorer.html",
            rows=rows,
            columns=EXPLORER_COLUMNS,
            shown_at_once=EXPLORER_SHOWN_AT_ONCE,
            facets=facets,
            years=sorted({row["year"] for row in rows if row["year"]}),
            data_json=script_json(data),
            searchable=False,
        )

    def explorer_row(self, paper: Paper) -> dict[str, Any]:
        category = self.categories[paper.category]
        return {
            "key": paper.key,
            "title": paper.title,
            "authors": authors_short(paper),
            "year": paper.display_year,
            "venue": paper.display_venue,
            "category_id": paper.category,
            "category": category.name,
            "subcategory_id": f"{paper.category}/{paper.subcategory}" if paper.subcategory else "",
            "subcategory": self.subcategory_name(paper) if paper.subcategory else "",
            "fms": list(paper.foundation_models),
            "code": paper.links.code,
            "refimpl": paper.refimpl.relation == Relation.implements,
            "method": paper.refimpl.method,
            "text": " ".join([paper.title, *paper.authors, paper.summary]),
        }

    def method_pages(self) -> Iterator[Page]:
        model = self.model
        rows = comparison_rows(list(model.methods), model.registry, model.bench)
        yield self.page("methods/index.md", "Methods", "methods.html", methods=list(model.methods.values()))
        yield self.compare(rows)
        by_name = {row.method: row for row in rows}
        for method in model.methods.values():
            uri = method_url(method.name) + "index.md"
            source = method.source()
            context = {
                "method": method,
                "options": method.options(),
                "source": source,
                "row": by_name[method.name],
                "bench": model.bench,
            }
            page = self.page(
                uri,
                method.name,
                "method.html",
                in_nav=False,
                source_html=source and python_html(source.text),
                **context,
            )
            # The search index gets the page without its source code, which would be most of the index.
            page.search_html = self.render("method.html", uri, source_html=None, **context)
            yield page

    def compare(self, rows: list[Row]) -> Page:
        measured = [row for row in rows if row.measured]
        task_keys = list(dict.fromkeys(row.run.task_key for row in measured))
        # Points are coloured by the FM type of the model they were measured on, in the survey's order; a task
        # of an older results file, which does not say, is a series of its own.
        series = sorted(
            {point_series(row) for row in measured},
            key=lambda key: (list(self.fms).index(key) if key in self.fms else len(self.fms), key),
        )
        colors = {key: charts.palette_color(i) for i, key in enumerate(series)}
        plotted = [row for row in measured if row.run.trainable_percent and row.run.trainable_percent > 0]
        unplotted = [row.method for row in measured if row not in plotted]
        chart_list = [
            self.scatter(
                "compare-quality",
                "Metric relative to full fine-tuning against trainable parameters",
                [row for row in plotted if row.quality_vs_full is not None],
                lambda row: row.quality_vs_full,
                "metric relative to full fine-tuning (above 1: better)",
                False,
                colors,
            ),
            self.scatter(
                "compare-step",
                "Training step time relative to full fine-tuning against trainable parameters",
                [row for row in plotted if row.run.step_time_vs_full],
                lambda row: row.run.step_time_vs_full,
                "step time relative to full fine-tuning (log)",
                True,
                colors,
            ),
        ]
        bench = self.model.bench
        return self.page(
            COMPARE_URL + "index.md",
            "Measured comparison",
            "compare.html",
            rows=rows,
            measured=len(measured),
            bench=bench,
            tasks=[bench.tasks[key] for key in task_keys if key in bench.tasks] if bench else [],
            charts=chart_list if plotted else [],
            unplotted=unplotted,
            has_page=self.model.methods.__contains__,
            searchable=False,
        )

    def scatter(
        self,
        uid: str,
        heading: str,
        rows: list[Row],
        y: Callable[[Row], float],
        y_label: str,
        log_y: bool,
        colors: dict[str, str],
    ) -> tuple[str, Markup]:
        points = [
            charts.Point(
                x=row.run.trainable_percent,
                y=y(row),
                series=point_series(row),
                label=row.method,
                href="../../" + method_url(row.method) if row.method in self.model.methods else "",
                hover=run_summary(row),
                key=row.method,
            )
            for row in rows
        ]
        desc = "; ".join(f"{p.label} ({p.series}): x {p.x:.3g}%, y {p.y:.3g}" for p in points)
        svg = charts.scatter(
            uid,
            points,
            {key: color for key, color in colors.items() if any(p.series == key for p in points)},
            ("trainable parameters, % of the model (log)", y_label),
            (True, log_y),
            (1.0, "full fine-tuning"),
            heading,
            desc or "no measured methods",
        )
        return heading, Markup(svg)

    def trends(self) -> Page:
        papers = self.catalog.papers
        dated = [p for p in papers if p.display_year]
        first, last = (
            min((p.display_year for p in dated), default=0),
            max((p.display_year for p in dated), default=-1),
        )
        years = list(range(first, last + 1))
        fm_ids = list(self.fms)
        categories = self.taxonomy.categories

        def per_year(label: str, color: str, belongs: Any) -> charts.Series:
            counts = Counter(p.display_year for p in dated if belongs(p))
            return charts.Series(label, color, tuple(counts[y] for y in years))

        fm_series = [
            per_year(fm, self.fms[fm].color, lambda p, fm=fm: fm in p.foundation_models) for fm in fm_ids
        ]
        category_series = [
            per_year(c.name, charts.palette_color(i), lambda p, c=c: p.category == c.id)
            for i, c in enumerate(categories)
        ]
        grid = [
            [sum(1 for p in self.model.by_fm.get(fm, []) if p.category == c.id) for fm in fm_ids]
            for c in categories
        ]
        matrix_desc = "; ".join(
            f"{c.name}: " + ", ".join(f"{fm} {n}" for fm, n in zip(fm_ids, row))
            for c, row in zip(categories, grid)
        )
        chart_list = [
            _year_chart("fm-year", "Papers per year by foundation-model type", years, fm_series),
            _year_chart("category-year", "Papers per year by category", years, category_series),
            _Chart(
                "Categories by foundation-model type",
                Markup(
                    charts.matrix(
                        "category-fm",
                        [c.name for c in categories],
                        fm_ids,
                        grid,
                        "Papers per category and FM type",
                        matrix_desc,
                    )
                ),
                "Category",
                fm_ids,
                [(c.name, row) for c, row in zip(categories, grid)],
            ),
        ]
        return self.page(
            "trends/index.md",
            "Trends",
            "trends.html",
            charts=chart_list,
            undated=len(papers) - len(dated),
            searchable=False,
        )

    def paper(self, paper: Paper) -> Page:
        links = [
            (label, href)
            for label, href in (
                ("Paper", paper.links.paper),
                ("arXiv", arxiv_url(paper.links.arxiv) if paper.links.arxiv else None),
                ("Code", paper.links.code),
                ("Project page", paper.links.project),
            )
            if href
        ]
        upstream = paper.upstream
        upstream_fields = [
            (label, value)
            for label, value in (
                ("title", upstream and upstream.title),
                ("venue", upstream and upstream.venue),
                ("authors", upstream and upstream.authors),
            )
            if value
        ]
        url = paper_url(paper.key) + "index.md"
        head = self.render("paper_head.html", url, paper=paper, kind_note=KIND_NOTES.get(paper.kind))
        page = self.page(
            url,
            paper.title,
            "paper.html",
            in_nav=False,
            paper=paper,
            head=Markup(head),
            links=links,
            command=Method(paper.refimpl.method).command,
            bibtex=exports.bibtex_entry(paper, key=self.bibtex_keys[paper.key]),
            upstream_fields=upstream_fields,
            related=self.related(paper),
        )
        page.search_html = head
        return page

    def related(self, paper: Paper) -> list[tuple[str, list[Paper], str]]:
        """(heading, up to RELATED_LIMIT papers, explorer query for the rest or "") per kind of kinship."""
        same_method = [p for p, _ in self.model.methods[paper.refimpl.method].papers if p.key != paper.key]
        same_area: list[Paper] = []
        seen = {paper.key}
        for fm in paper.foundation_models:
            for other in self.model.by_fm.get(fm, []):
                if other.category == paper.category and other.key not in seen:
                    seen.add(other.key)
                    same_area.append(other)
                    if len(same_area) > RELATED_LIMIT:
                        break
        area_query = urlencode(
            [("category", paper.category), *(("fm", fm) for fm in paper.foundation_models)]
        )
        groups = [
            (f"Other papers linked to {paper.refimpl.method}", same_method, ""),
            ("Same category and FM type", same_area, area_query),
        ]
        return [
            (heading, papers[:RELATED_LIMIT], query if len(papers) > RELATED_LIMIT else "")
            for heading, papers, query in groups
            if papers
        ]


@dataclass
class _Facet:
    name: str
    label: str
    options: list[tuple[str, str]]


@dataclass
class _Chart:
    heading: str
    svg: Markup
    row_header: str
    column_labels: list[str]
    rows: list[tuple[str, list[int]]]


def _year_chart(uid: str, heading: str, years: list[int], series: list[charts.Series]) -> _Chart:
    """Stacked bars per year, with a table of the same counts: one row per year, one column per series."""
    labels = [str(year) for year in years]
    desc = "; ".join(
        f"{item.label}: " + (", ".join(f"{x} {v}" for x, v in zip(labels, item.values) if v) or "none")
        for item in series
    )
    return _Chart(
        heading,
        Markup(charts.stacked_bars(uid, labels, series, heading, desc)),
        "Year",
        [item.label for item in series],
        [(label, [item.values[i] for item in series]) for i, label in enumerate(labels)],
    )


def _zero_sub_counts(taxonomy: Any) -> dict[tuple[str, str], int]:
    return {(c.id, s.id): 0 for c in taxonomy.categories for s in c.subcategories}


def escaped_title(page: Page) -> str:
    """mkdocs and Material print page titles as HTML, so the plain-text title is escaped once here."""
    return str(escape(page.title))
