"""The explorer stays fast at scale: with 10,000 entries one filter change takes under 50 ms.

The time covers the whole update the reader waits for: the change handler (filtering, facet counts, DOM
writes) and the style and layout it causes, forced by reading a layout property. performance.now() gives
the wall time, which on a busy machine includes the time other processes held the CPU (on the 2-core
development machine with a load of 15, 20 ms of work took 70-140 ms). So the budget applies to the
renderer's CPU time for that same task, read from a Chromium trace; both are printed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from atlas.loader import Catalog
from atlas.site.sandbox import build_site, copy_project, synthetic_catalog

from tests.site.conftest import PROJECT_ROOT

ENTRIES = 10_000
BUDGET_MS = 50.0

TIME_ONE_CHANGE = """selector => {
  const box = document.querySelector(selector);
  const start = performance.now();
  box.click();                        // dispatches change: the explorer updates synchronously
  document.body.offsetHeight;         // and the browser lays the table out again
  return performance.now() - start;
}"""


@pytest.fixture(scope="module")
def large_site(tmp_path_factory: pytest.TempPathFactory, catalog: Catalog) -> Path:
    project = copy_project(PROJECT_ROOT, tmp_path_factory.mktemp("large") / "project")
    synthetic_catalog(project, catalog, ENTRIES)
    return build_site(project, project.parent / "site")


def time_one_change(tab, selector: str) -> tuple[float, float]:
    """(wall ms by performance.now(), renderer CPU ms) of one click on `selector` and its layout."""
    browser = tab.page.context.browser
    browser.start_tracing(page=tab.page, categories=["toplevel"])
    wall = tab.page.evaluate(TIME_ONE_CHANGE, selector)
    events = json.loads(browser.stop_tracing())["traceEvents"]
    task = max((e for e in events if e.get("ph") == "X" and "tdur" in e), key=lambda e: e["dur"])
    return wall, task["tdur"] / 1000


def test_a_filter_change_on_10000_entries_takes_under_50_ms(
    new_tab, serve, large_site: Path, catalog: Catalog
) -> None:
    tab = new_tab(serve(large_site))
    tab.open("explorer/")
    assert tab.page.locator("#explorer-table tbody tr").count() == ENTRIES
    box = f'input[name="category"][value="{catalog.taxonomy.categories[0].id}"]'
    tab.page.evaluate(TIME_ONE_CHANGE, box)  # the first change also compiles the code; not timed
    # Unchecked, checked, unchecked, checked: each change hides or shows thousands of matching rows.
    timings = [time_one_change(tab, box) for _ in range(4)]
    print(f"filter change on {ENTRIES} entries (wall, CPU ms): {[(round(w), round(c)) for w, c in timings]}")
    assert int(tab.page.text_content("#result-count")) < ENTRIES
    cpu = sorted(c for _, c in timings)
    assert cpu[len(cpu) // 2] < BUDGET_MS  # the median, so one odd measurement cannot decide
    assert not tab.errors
