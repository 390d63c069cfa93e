"""The site in Chromium: the explorer's filters, sorting and URL state, search, BibTeX copying, and no errors.

Expected results are computed here in Python from the catalogue, never read back from the page.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from atlas import exports
from atlas.loader import Catalog
from atlas.schema import Paper

from tests.site.conftest import HOSTILE_TITLE, Tab

VISIBLE_KEYS = (
    "rows => rows.filter(row => getComputedStyle(row).display !== 'none').map(row => row.dataset.paperKey)"
)


def visible_keys(tab: Tab) -> list[str]:
    return tab.page.eval_on_selector_all("#explorer-table tbody tr", VISIBLE_KEYS)


def result_count(tab: Tab) -> int:
    return int(tab.page.text_content("#result-count"))


def busiest_pair(catalog: Catalog) -> tuple[str, str]:
    """The (category, FM type) with the most papers: a filter that keeps some rows and hides others."""
    pairs = Counter((p.category, fm) for p in catalog.papers for fm in p.foundation_models)
    return pairs.most_common(1)[0][0]


def in_pair(paper: Paper, category: str, fm: str) -> bool:
    return paper.category == category and fm in paper.foundation_models


def test_category_and_fm_facets_show_exactly_the_matching_papers(tab: Tab, catalog: Catalog) -> None:
    category, fm = busiest_pair(catalog)
    tab.open("explorer/")
    assert result_count(tab) == len(catalog.papers)
    tab.page.check(f'input[name="category"][value="{category}"]')
    in_category = [p for p in catalog.papers if p.category == category]
    assert visible_keys(tab) == [p.key for p in in_category]
    # Counts of the other facets follow the filter; the filtered facet counts as if it were not set.
    fm_count = tab.page.text_content(f'[data-facet="fm"] [data-count-for="{fm}"]')
    assert int(fm_count) == sum(1 for p in in_category if fm in p.foundation_models)
    other = next(c.id for c in catalog.taxonomy.categories if c.id != category)
    other_count = tab.page.text_content(f'[data-facet="category"] [data-count-for="{other}"]')
    assert int(other_count) == sum(1 for p in catalog.papers if p.category == other)

    tab.page.check(f'input[name="fm"][value="{fm}"]')
    expected = [p.key for p in catalog.papers if in_pair(p, category, fm)]
    assert visible_keys(tab) == expected
    assert result_count(tab) == len(expected)
    tab.page.wait_for_url(lambda url: f"category={category}" in url and f"fm={fm}" in url)


def test_the_url_holds_the_view_through_reload_back_and_forward(tab: Tab, catalog: Catalog) -> None:
    category, fm = busiest_pair(catalog)
    tab.open(f"explorer/?category={category}&fm={fm}&sort=-year")
    in_view = [p for p in catalog.papers if in_pair(p, category, fm)]
    assert sorted(visible_keys(tab)) == sorted(p.key for p in in_view)
    assert tab.page.is_checked(f'input[name="category"][value="{category}"]')

    tab.page.check('input[name="code"]')
    with_code = [p.key for p in in_view if p.links.code]
    tab.page.wait_for_url(lambda url: "code=1" in url)
    assert sorted(visible_keys(tab)) == sorted(with_code)
    tab.page.reload()
    assert sorted(visible_keys(tab)) == sorted(with_code)
    assert tab.page.is_checked('input[name="code"]')

    tab.page.go_back()
    assert "code=1" not in tab.page.url
    assert sorted(visible_keys(tab)) == sorted(p.key for p in in_view)
    assert not tab.page.is_checked('input[name="code"]')
    tab.page.go_forward()
    assert sorted(visible_keys(tab)) == sorted(with_code)


def test_year_range_venue_and_refimpl_facets_from_the_url(tab: Tab, catalog: Catalog) -> None:
    venue = Counter(p.display_venue for p in catalog.papers).most_common(1)[0][0]
    tab.open(f"explorer/?from=2021&to=2023&venue={venue}&refimpl=1")
    expected = [
        p.key
        for p in catalog.papers
        if p.display_year is not None
        and 2021 <= p.display_year <= 2023
        and p.display_venue == venue
        and p.refimpl.relation.value == "implements"
    ]
    assert expected, "the catalogue should have such papers"
    assert visible_keys(tab) == expected
    assert tab.page.input_value("#explorer-year-from") == "2021"


def test_year_column_sorts_both_ways_with_undated_papers_last(tab: Tab, catalog: Catalog) -> None:
    tab.open("explorer/")
    order = {p.key: i for i, p in enumerate(catalog.papers)}
    year_header = tab.page.locator('th[data-sort="year"] button')
    year_header.click()
    ascending = sorted(
        catalog.papers, key=lambda p: (p.display_year is None, p.display_year or 0, order[p.key])
    )
    assert visible_keys(tab) == [p.key for p in ascending]
    tab.page.wait_for_url(lambda url: url.endswith("sort=year"))
    year_header.click()
    descending = sorted(
        catalog.papers, key=lambda p: (p.display_year is None, -(p.display_year or 0), order[p.key])
    )
    assert visible_keys(tab) == [p.key for p in descending]
    assert tab.page.get_attribute('th[data-sort="year"]', "aria-sort") == "descending"


def test_text_box_matches_title_authors_and_summary(tab: Tab, catalog: Catalog) -> None:
    tab.open("explorer/")
    for query in ("adapter", "low-rank", catalog.papers[0].authors[0].split()[-1]):
        tab.page.fill("#explorer-q", query)
        expected = [
            p.key
            for p in catalog.papers
            if query.lower() in " ".join([p.title, *p.authors, p.summary]).lower()
        ]
        assert expected, f"pick a query that matches something: {query}"
        assert visible_keys(tab) == expected
        assert result_count(tab) == len(expected)


def test_the_table_is_complete_without_javascript(new_tab, site_url: str, catalog: Catalog) -> None:
    tab = new_tab(site_url, java_script_enabled=False)
    tab.open("explorer/")
    assert tab.page.locator("#explorer-table tbody tr:visible").count() == len(catalog.papers)


def test_search_finds_a_paper_by_a_word_of_its_title(tab: Tab, catalog: Catalog) -> None:
    words = Counter(w.lower() for p in catalog.papers for w in set(re.findall(r"[A-Za-z]{7,}", p.title)))
    paper, word = next(
        (p, w) for p in catalog.papers for w in re.findall(r"[A-Za-z]{7,}", p.title) if words[w.lower()] == 1
    )
    tab.open("")
    # Typed key by key: Material's search reads the box on keyup, which fill() does not send.
    tab.page.locator("input.md-search__input").press_sequentially(word)
    hit = tab.page.locator(f'.md-search-result__item a[href*="/papers/{paper.key}/"]').first
    hit.wait_for(timeout=15_000)


def test_paper_page_bibtex_copy_button_copies_the_entry(tab: Tab, catalog: Catalog) -> None:
    paper = catalog.paper("lora")
    bibtex = exports.bibtex_entry(paper, key=exports.bibtex_keys(catalog)["lora"])
    tab.open("papers/lora/")
    assert tab.page.text_content("#bibtex code").strip() == bibtex.strip()
    tab.page.hover("#bibtex pre")
    tab.page.click('#bibtex button[data-md-type="copy"]')
    assert tab.page.evaluate("navigator.clipboard.readText()").strip() == bibtex.strip()


def test_pages_load_without_errors_or_outside_requests(tab: Tab, catalog: Catalog) -> None:
    category, fm = busiest_pair(catalog)
    for name, path in (
        ("home", ""),
        ("explorer-filtered", f"explorer/?category={category}&fm={fm}"),
        ("paper-lora", "papers/lora/"),
        ("trends", "trends/"),
        ("method-lora", "methods/lora/"),
    ):
        tab.open(path)
        tab.page.wait_for_load_state("networkidle")
        tab.screenshot(name)
        assert not tab.errors, f"{path}: {tab.errors}"


def test_hostile_catalogue_text_never_runs(new_tab, serve, extended_site: tuple[Path, Catalog]) -> None:
    site_dir, _ = extended_site
    tab = new_tab(serve(site_dir))
    dialogs: list[str] = []
    tab.page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    for path in ("papers/hostile-entry/", "explorer/?q=tuning", "methods/lora/", ""):
        tab.open(path)
        tab.page.wait_for_load_state("networkidle")
        assert tab.page.locator('img[src="x"], iframe, b:text("Bold")').count() == 0
    tab.open("papers/hostile-entry/")
    assert tab.page.text_content("article h1") == HOSTILE_TITLE
    assert not dialogs
    assert not tab.errors
