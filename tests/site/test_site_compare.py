"""Method pages and the measured comparison, built from a small results file written here (never the committed one).

Expected values come from the fixture below and from refimpl's registry, never from the page.
"""

from __future__ import annotations

import html
import inspect
import json
import re
import shutil
import sys
from pathlib import Path

import pytest
from atlas.loader import Catalog
from atlas.site.bench import BENCH_COMMAND, BENCH_FILE, BenchFileError, load_bench
from atlas.site.model import SiteModel, registered_methods
from atlas.site.pages import PageBuilder
from atlas.site.sandbox import SiteBuildError, build_site, copy_project
from markupsafe import escape

import refimpl
from tests.site.conftest import PROJECT_ROOT, Tab

HOSTILE = """<script>alert(1)</script> & "quoted" <img src=x onerror=alert(2)>"""
GHOST = "<b>ghost</b>"  # a method the results name but neither the catalogue nor refimpl knows


def run(method: str, task: str, model: str, percent: float, vs_full: float, step: float, **extra) -> dict:
    return {
        "method": method,
        "task": task,
        "model": model,
        "trainable": 1000,
        "trainable_percent": percent,
        "median_step_s": 0.1 * step,
        "step_time_vs_full": step,
        "peak_memory_mb": 512.5,
        "metric": "accuracy",
        "higher_is_better": True,
        "value": 0.9 * vs_full,
        "metric_vs_full": vs_full,
        "merged_inference_vs_base": None,
        "wall_s": 12.0,
        "a_field_from_the_future": {"ignored": True},
        **extra,
    }


RESULTS = {
    "environment": {
        "cpu": f"CPU {HOSTILE}",
        "cpu_count": 2,
        "torch_threads": 2,
        "date": "2026-11-29T12:00:00",
    },
    "seed": 0,
    "steps": "task defaults",
    "tasks": {
        "sentiment/bert": {
            "task": "sentiment",
            "model": "bert",
            "foundation_model": "LLM",
            "description": f"Sentiment {HOSTILE}",
            "metric": "accuracy",
            "higher_is_better": True,
            "steps": 40,
            "full fine-tuning": {"metric": 0.9, "median_step_s": 0.1, "trainable": 10, "total": 10},
            "frozen baseline": {"metric": 0.5, "trainable": 0, "total": 10},
        },
        "lm/gpt2": {"task": "lm", "model": "gpt2", "metric": "perplexity", "higher_is_better": False},
    },
    "runs": [
        run("lora", "sentiment", "bert", 0.27, 0.98, 0.8, merged_inference_vs_base=1.01, lr=0.002),
        # Slower, and bitfit gives no reason; its own parameters at a declared rate.
        run(
            "bitfit", "sentiment", "bert", 0.09, 0.95, 1.4, lr=0.002, learning_rates={f"bias{HOSTILE}": 5e-05}
        ),
        # No direction in the run (an older file): the task's is used.
        run("prompt_tuning", "lm", "gpt2", 0.01, 1.25, 0.9, metric="perplexity", higher_is_better=None),
        run(
            "qlora",
            "sentiment",
            "bert",
            0.3,
            0.97,
            1.6,
            slower_than_full_fine_tuning=f"dequantises {HOSTILE}",  # a clause, shown as a sentence
        ),
        run(GHOST, "sentiment", "bert", 2.0, 1.0, 1.0),
        {"method": "vpt", "error": f"no task {HOSTILE}"},
    ],
}
MEASURED = ["lora", "bitfit", "prompt_tuning", "qlora", GHOST]


def _page(site: Path, url: str) -> str:
    return (site / url / "index.html").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project built with the fixture's results file instead of its own."""
    root = copy_project(PROJECT_ROOT, tmp_path_factory.mktemp("bench") / "project")
    shutil.rmtree(root / BENCH_FILE.parent, ignore_errors=True)
    (root / BENCH_FILE).parent.mkdir()
    (root / BENCH_FILE).write_text(json.dumps(RESULTS), encoding="utf-8")
    return build_site(root, root.parent / "site")


@pytest.fixture(scope="module")
def without_results(catalog: Catalog) -> dict[str, str]:
    """The generated pages (uri -> HTML body) of a build without a results file."""
    builder = PageBuilder(SiteModel.build(catalog, registered_methods(), bench=None), "")
    return {page.uri: page.body for page in builder.method_pages()}


def test_without_results_every_method_is_listed_and_the_page_says_how_to_measure(
    without_results: dict[str, str], catalog: Catalog
) -> None:
    page = without_results["methods/compare/index.md"]
    assert BENCH_COMMAND in page
    rows = re.findall(r'<tr data-method="([^"]+)"', page)
    assert rows == sorted(
        {p.refimpl.method for p in catalog.papers} | {m for p in catalog.papers for m in p.refimpl.also}
    )
    assert "atlas-svg__point" not in page
    assert BENCH_COMMAND in without_results["methods/lora/index.md"]


def test_a_method_page_shows_its_options_and_its_own_source(without_results: dict[str, str]) -> None:
    page = without_results["methods/lora/index.md"]
    for name, field in refimpl.get_method("lora").Options.model_fields.items():
        assert f"<td><code>{name}</code></td>" in page
        assert escape(field.description) in page
    info = next(info for info in refimpl.methods() if info.name == "lora")
    code = re.search(
        r'<details class="atlas-source">.*?(<div class="highlight">.*?</div>)\s*</details>', page, re.DOTALL
    )
    text = html.unescape(re.sub(r"<[^>]+>", "", code.group(1)))
    assert text.strip() == inspect.getsource(sys.modules[info.module]).strip()


def test_the_comparison_has_a_row_per_method_and_a_point_per_measured_one(
    site: Path, catalog: Catalog
) -> None:
    page = _page(site, "methods/compare")
    rows = re.findall(r'<tr data-method="([^"]+)"', page)
    assert html.escape(GHOST) in rows and len(rows) == len(set(rows))
    for uid in ("compare-quality", "compare-step"):
        svg = re.search(rf'<svg[^>]*aria-labelledby="svg-title-{uid}.*?</svg>', page, re.DOTALL).group(0)
        points = re.findall(r'class="atlas-svg__point"[^>]*data-key="([^"]+)"', svg)
        assert sorted(points) == sorted(html.escape(m) for m in MEASURED)
        assert len(re.findall(r"<circle[^>]*><title>[^<]+</title></circle>", svg)) == len(MEASURED)
    assert "2 CPUs" in page and "2026-11-29T12:00:00" in page and BENCH_COMMAND in page


def test_points_are_coloured_by_the_fm_type_they_were_measured_on(site: Path) -> None:
    page = _page(site, "methods/compare")
    svg = re.search(r'<svg[^>]*aria-labelledby="svg-title-compare-quality.*?</svg>', page, re.DOTALL).group(0)
    colour_of = {
        key: re.search(rf'data-key="{re.escape(key)}"[^>]*>\s*<circle[^>]*fill="([^"]+)"', svg).group(1)
        for key in ("lora", "bitfit", "prompt_tuning")
    }
    assert colour_of["lora"] == colour_of["bitfit"] != colour_of["prompt_tuning"]
    legend = re.findall(r"<text[^>]*>([^<]+)</text>", svg)
    assert "LLM" in legend and "lm/gpt2" in legend  # the older task without an FM type is its own series


def test_lower_is_better_metrics_are_turned_round_in_the_comparison(site: Path) -> None:
    page = _page(site, "methods/compare")
    row = re.search(r'<tr data-method="prompt_tuning".*?</tr>', page, re.DOTALL).group(0)
    assert f'data-value="{1 / 1.25}"' in row and "0.80×" in row


def test_a_method_page_shows_its_bench_row(site: Path) -> None:
    page = _page(site, "methods/lora")
    measured = page[page.index('id="measured"') : page.index("<h2>Papers</h2>")]
    for figure in (
        "0.27%",
        "0.98×",
        "(0.9)",
        "frozen baseline 0.5",
        "0.80×",
        "1.01×",
        "512.5 MB",
        "sentiment/bert",
        "0.002 (AdamW, 40 steps)",
    ):
        assert figure in measured
    assert "atlas-slower" not in measured
    assert "no task" in _page(site, "methods/vpt")


def test_a_methods_own_learning_rates_are_shown_beside_the_tasks(site: Path) -> None:
    bitfit = _page(site, "methods/bitfit")
    assert "0.002 (AdamW, 40 steps); <code>bias&lt;script&gt;" in bitfit and "*</code> at 5e-05" in bitfit
    assert "<script>alert(1)" not in bitfit


def test_a_step_slower_than_full_fine_tuning_is_explained_or_flagged(site: Path) -> None:
    bitfit = _page(site, "methods/bitfit")
    assert "atlas-slower--unexplained" in bitfit and "1.40×" in bitfit
    qlora = _page(site, "methods/qlora")
    assert "atlas-slower--unexplained" not in qlora
    assert "May be slower than full fine-tuning" in qlora and "Dequantises" in qlora
    assert "alert(2)&gt;. Measured step: 1.60× full fine-tuning" in qlora
    compare = _page(site, "methods/compare")
    bitfit_row = re.search(r'<tr data-method="bitfit".*?</tr>', compare, re.DOTALL).group(0)
    assert "no reason given" in bitfit_row


@pytest.mark.parametrize("url", ["methods/compare", "methods/qlora", "methods/vpt", "methods/lora"])
def test_every_value_from_the_results_file_is_escaped(site: Path, url: str) -> None:
    page = _page(site, url)
    assert "<script>alert" not in page and "<img src=x" not in page and "<b>ghost" not in page
    if url != "methods/lora":
        assert escape(HOSTILE) in page


def test_a_malformed_results_file_names_the_file_and_the_field(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"runs": [{"method": "lora", "trainable_percent": "lots"}]}))
    with pytest.raises(
        BenchFileError, match=r"results\.json: runs\[0\]\.trainable_percent: expected a number"
    ):
        load_bench(path)
    path.write_text('{"runs": [\n}')
    with pytest.raises(BenchFileError, match=r"results\.json:2: not valid JSON"):
        load_bench(path)
    assert load_bench(tmp_path / "missing.json") is None


def test_a_malformed_results_file_stops_the_build_with_its_name(project_copy: Path) -> None:
    (project_copy / BENCH_FILE).parent.mkdir(exist_ok=True)
    (project_copy / BENCH_FILE).write_text(json.dumps({"runs": [{"method": "lora", "value": "high"}]}))
    with pytest.raises(SiteBuildError, match=r"results\.json: runs\[0\]\.value: expected a number"):
        build_site(project_copy, project_copy.parent / "site")


# --- in the browser --------------------------------------------------------------------------


def _column(tab: Tab, index: int) -> list[str]:
    return tab.page.eval_on_selector_all(
        f"#compare-table tbody tr:not([hidden]) td:nth-child({index})",
        "cells => cells.map(c => c.dataset.value)",
    )


def test_the_table_sorts_by_clicking_or_by_keyboard(site: Path, serve, new_tab) -> None:
    tab = new_tab(serve(site))
    tab.open("methods/compare/")
    trainable = {r["method"]: r["trainable_percent"] for r in RESULTS["runs"] if "trainable_percent" in r}
    ascending = sorted(trainable.values())
    header = tab.page.locator("#compare-table th").nth(4)
    header.locator("button").click()
    values = _column(tab, 5)
    assert [float(v) for v in values[: len(ascending)]] == ascending
    assert set(values[len(ascending) :]) == {""}  # unmeasured rows stay last
    assert header.get_attribute("aria-sort") == "ascending"
    header.locator("button").focus()
    tab.page.keyboard.press("Enter")
    values = _column(tab, 5)
    assert [float(v) for v in values[: len(ascending)]] == ascending[::-1]
    assert header.get_attribute("aria-sort") == "descending"
    tab.screenshot("compare-sorted")
    assert tab.errors == []


def test_filters_hide_rows_and_points_of_other_methods(site: Path, serve, new_tab) -> None:
    tab = new_tab(serve(site))
    tab.open("methods/compare/")
    tab.page.select_option('#compare-filters select[name="category"]', "prompt")
    shown = tab.page.eval_on_selector_all(
        "#compare-table tbody tr:not([hidden])", "rows => rows.map(r => r.dataset.method)"
    )
    prompt = sorted(info.name for info in refimpl.methods() if info.category == "prompt")
    assert shown == prompt
    visible_points = tab.page.eval_on_selector_all(
        ".atlas-svg__point",
        "points => points.filter(p => p.style.display !== 'none').map(p => p.dataset.key)",
    )
    assert visible_points == ["prompt_tuning", "prompt_tuning"]  # one in each chart
    total = tab.page.locator("#compare-table tbody tr").count()
    assert tab.page.text_content("#compare-count") == f"{len(prompt)} of {total} methods shown"
    assert tab.errors == []


def test_the_search_index_holds_method_pages_without_their_source(site: Path) -> None:
    docs = json.loads((site / "search" / "search_index.json").read_text(encoding="utf-8"))["docs"]
    lora = " ".join(doc["text"] for doc in docs if doc["location"].startswith("methods/lora/"))
    assert "rank of the update" in lora  # an option's description
    assert "def inject" not in lora
