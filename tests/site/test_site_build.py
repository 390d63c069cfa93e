"""The built site, read as files: every page, link, download, chart and search entry comes from the catalogue."""

from __future__ import annotations

import json
import re
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urljoin, urlsplit

import pytest
from atlas import exports
from atlas.loader import Catalog, CatalogError, load_catalog
from atlas.project import SITE_URL
from atlas.site.contributing import repository_links
from atlas.site.pages import http_only, script_json
from atlas.site.sandbox import SiteBuildError, build_site, write_paper
from markupsafe import escape

from tests.site.conftest import HOSTILE_TITLE, hostile_entry

SCHEMES = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
SITE_PATH = urlsplit(SITE_URL).path  # /peft-atlas/


class _PageLinks(HTMLParser):
    """The ids of a page and every URL it points to (href and src)."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(values["id"])
        if values.get("data-md-component") == "search-share":
            return  # Material's own share button (href="javascript:void(0)"), not content
        for name in ("href", "src"):
            if values.get(name):
                self.urls.append(values[name])


def _parse(path: Path) -> _PageLinks:
    parser = _PageLinks()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def _page(site_dir: Path, url: str) -> str:
    return (site_dir / url / "index.html").read_text(encoding="utf-8")


def test_every_internal_link_and_anchor_resolves_and_external_links_are_http(site_dir: Path) -> None:
    pages = {path.relative_to(site_dir).as_posix(): _parse(path) for path in site_dir.rglob("*.html")}
    broken, bad_schemes = [], []
    for name, parsed in pages.items():
        base = "http://site" + SITE_PATH + name  # 404.html links from the site's root path
        for url in parsed.urls:
            if SCHEMES.match(url):
                if not url.lower().startswith(("http://", "https://")):
                    bad_schemes.append(f"{name}: {url}")
                continue
            target = urlsplit(urljoin(base, url))
            path = target.path.removeprefix(SITE_PATH)
            path = path + "index.html" if path.endswith("/") or not path else path
            if not target.path.startswith(SITE_PATH) or not (site_dir / path).is_file():
                broken.append(f"{name}: {url}")
            elif target.fragment and path in pages and target.fragment not in pages[path].ids:
                broken.append(f"{name}: {url} (no such anchor)")
    assert not bad_schemes
    assert not broken


def test_every_paper_has_a_page_with_its_facts_and_bibtex(site_dir: Path, catalog: Catalog) -> None:
    keys = exports.bibtex_keys(catalog)
    for paper in catalog.papers:
        page = _page(site_dir, f"papers/{paper.key}")
        assert f"<h1>{escape(paper.title)}</h1>" in page
        assert escape(paper.summary) in page
        assert escape(paper.authors[0]) in page
        bibtex = exports.bibtex_entry(paper, key=keys[paper.key])
        assert f'<div class="atlas-bibtex" id="bibtex">\n<pre><code>{escape(bibtex)}' in page
        assert f"python -m refimpl run {paper.refimpl.method}" in page
        assert f'href="../../methods/{paper.refimpl.method}/"' in page


def test_paper_pages_are_reached_by_links_not_through_the_nav(site_dir: Path, catalog: Catalog) -> None:
    home = _page(site_dir, "")
    nav = home[home.index('class="md-nav md-nav--primary') :]
    assert "papers/" not in nav
    assert 'href="taxonomy/reparameterization/low-rank/"' in nav  # the catalogue's sections are in it
    table1_papers = [p for p in catalog.papers if p.table1]
    page = _page(site_dir, f"papers/{table1_papers[0].key}")
    assert (
        '<th scope="row">Adds parameters</th><td>yes</td>' in page
        or "Adds parameters</th><td>no</td>" in page
    )


def test_downloads_are_the_exports_of_the_catalogue(site_dir: Path, catalog: Catalog) -> None:
    downloads = site_dir / "downloads"
    assert (downloads / "catalog.json").read_text(encoding="utf-8") == exports.catalog_json(catalog)
    assert (downloads / "papers.bib").read_text(encoding="utf-8") == exports.papers_bib(catalog)
    assert (downloads / "papers.csv").read_text(encoding="utf-8") == exports.papers_csv(catalog)
    page = _page(site_dir, "downloads")
    assert all(f'href="{name}"' in page for name in ("catalog.json", "papers.bib", "papers.csv"))


def test_search_index_holds_papers_and_methods_but_not_bibtex_or_chart_pages(
    site_dir: Path, catalog: Catalog
) -> None:
    index = json.loads((site_dir / "search" / "search_index.json").read_text(encoding="utf-8"))["docs"]
    locations = {doc["location"].split("#")[0] for doc in index}
    assert {f"papers/{p.key}/" for p in catalog.papers} <= locations
    assert any(location.startswith("methods/") and location != "methods/" for location in locations)
    assert not {"explorer/", "trends/", "downloads/"} & locations
    text = json.dumps(index)
    assert "@inproceedings{" not in text and "@article{" not in text and "@misc{" not in text


def test_trend_charts_are_accessible_and_count_the_catalogue(site_dir: Path, catalog: Catalog) -> None:
    page = _page(site_dir, "trends")
    svgs = re.findall(r'<svg [^>]*class="atlas-svg .*?</svg>', page, flags=re.DOTALL)
    assert len(svgs) == 3
    for svg in svgs:
        assert 'role="img"' in svg and "<title id=" in svg and "<desc id=" in svg
    # The category x FM table beside the matrix holds the catalogue's counts.
    pairs = Counter((p.category, fm) for p in catalog.papers for fm in p.foundation_models)
    fm_ids = [fm.id for fm in catalog.taxonomy.foundation_models]
    for category in catalog.taxonomy.categories:
        cells = "".join(f"<td>{pairs[(category.id, fm)]}</td>" for fm in fm_ids)
        assert f'<tr><th scope="row">{escape(category.name)}</th>{cells}</tr>' in page


def test_home_shows_the_counts_and_the_taxonomy_diagram(site_dir: Path, catalog: Catalog) -> None:
    home = _page(site_dir, "")
    assert f'<span class="atlas-stat__value">{len(catalog.papers)}</span> papers' in home
    diagram = re.search(r"<svg [^>]*atlas-svg--tree.*?</svg>", home, flags=re.DOTALL).group(0)
    for category in catalog.taxonomy.categories:
        count = sum(1 for p in catalog.papers if p.category == category.id)
        assert f"{escape(category.name)} ({count})" in diagram
        assert f'href="taxonomy/{category.id}/"' in diagram


def test_a_page_per_category_subcategory_fm_type_and_method(site_dir: Path, catalog: Catalog) -> None:
    for category in catalog.taxonomy.categories:
        assert (site_dir / "taxonomy" / category.id / "index.html").is_file()
        for sub in category.subcategories:
            assert (site_dir / "taxonomy" / category.id / sub.id / "index.html").is_file()
    for fm in catalog.taxonomy.foundation_models:
        assert (site_dir / "foundation-models" / fm.id.lower() / "index.html").is_file()
    methods = {p.refimpl.method for p in catalog.papers} | {m for p in catalog.papers for m in p.refimpl.also}
    for method in methods:
        assert f"python -m refimpl run {method}" in _page(site_dir, f"methods/{method}")


def test_explorer_has_one_row_per_paper_and_inert_data(site_dir: Path, catalog: Catalog) -> None:
    page = _page(site_dir, "explorer")
    assert re.findall(r'<tr [^>]*data-paper-key="([^"]+)"', page) == [p.key for p in catalog.papers]
    blob = re.search(
        r'<script type="application/json" id="explorer-data">(.*?)</script>', page, flags=re.DOTALL
    ).group(1)
    assert not set("<>&") & set(blob)
    assert [row["key"] for row in json.loads(blob)] == [p.key for p in catalog.papers]


def test_contributing_renders_the_guide_with_repository_links(site_dir: Path) -> None:
    guide = Path(__file__).resolve().parents[2] / "CONTRIBUTING.md"
    page = _page(site_dir, "contributing")
    if guide.is_file():
        first_line = guide.read_text(encoding="utf-8").splitlines()[0].lstrip("# ").strip()
        assert escape(first_line) in page
    else:
        assert "catalog/papers/" in page


def test_repository_relative_links_point_at_the_repository() -> None:
    markdown = "See [the schema](tools/atlas/schema.py), [site](https://x.org/) and [below](#how).\n[ref]: ./README.md\n"
    assert repository_links(markdown, "https://github.com/o/r") == (
        "See [the schema](https://github.com/o/r/blob/main/tools/atlas/schema.py), [site](https://x.org/) "
        "and [below](#how).\n[ref]: https://github.com/o/r/blob/main/README.md\n"
    )


def test_embedded_json_cannot_close_its_script_and_links_must_be_http() -> None:
    assert str(script_json({"t": "</script><b>&"})) == '{"t":"\\u003c/script\\u003e\\u003cb\\u003e\\u0026"}'
    assert http_only("https://example.org/a") == "https://example.org/a"
    with pytest.raises(ValueError):
        http_only("javascript:alert(1)")


# --- builds of modified copies of the project ---------------------------------------------------


def test_an_added_entry_gets_its_page_row_and_counts(
    extended_site: tuple[Path, Catalog], catalog: Catalog
) -> None:
    site_dir, extended = extended_site
    assert len(extended.papers) == len(catalog.papers) + 1
    assert (site_dir / "papers" / "hostile-entry" / "index.html").is_file()
    assert 'data-paper-key="hostile-entry"' in _page(site_dir, "explorer")
    assert f'<span class="atlas-stat__value">{len(extended.papers)}</span> papers' in _page(site_dir, "")
    vgm = sum(1 for p in extended.papers if "VGM" in p.foundation_models)
    assert f"{vgm} papers" in _page(site_dir, "foundation-models/vgm")


def test_hostile_text_is_escaped_everywhere(extended_site: tuple[Path, Catalog]) -> None:
    site_dir, _ = extended_site
    for url in ("papers/hostile-entry", "explorer", "methods/lora", "taxonomy/reparameterization"):
        page = _page(site_dir, url)
        assert "<script>alert(1)" not in page and "<img src=x" not in page and "<iframe" not in page
        assert "<b>Bold</b>" not in page and 'href="javascript:' not in page
    page = _page(site_dir, "papers/hostile-entry")
    assert escape(HOSTILE_TITLE) in page
    assert 'href="https://example.org/?a=1&amp;b=&lt;2&gt;"' in page
    assert f"<title>{escape(HOSTILE_TITLE)} - PEFT Atlas</title>" in page


def test_a_javascript_link_is_refused_before_anything_is_built(project_copy: Path, catalog: Catalog) -> None:
    entry = {**hostile_entry(catalog), "links": {"code": "javascript:alert(1)"}}
    write_paper(project_copy, entry)
    with pytest.raises(CatalogError) as refused:
        load_catalog(project_copy)
    assert any(p.field == "links.code" and "hostile-entry" in str(p.path) for p in refused.value.problems)
    with pytest.raises(SiteBuildError, match="links.code"):
        build_site(project_copy, project_copy.parent / "site")
    assert not (project_copy.parent / "site" / "papers").exists()


def test_mkdocs_serve_watches_the_catalogue_beside_the_config(tmp_path: Path) -> None:
    from atlas.site import hook

    watched: list[str] = []
    config = SimpleNamespace(config_file_path=str(tmp_path / "mkdocs.yml"))
    hook.on_serve(SimpleNamespace(watch=watched.append), config=config, builder=None)
    assert watched == [str(tmp_path / "catalog")]
