"""`atlas links`: offline checks on every run, live checks only on demand and tolerant of refusing sites."""

from __future__ import annotations

import urllib.error

import atlas.loader
import pytest
from atlas.cli import main
from atlas.links import check_live, check_offline
from atlas.loader import load_catalog

from .conftest import NOVEL, PROJECT_ROOT, REAL_REFIMPL_METHODS, write_paper


@pytest.fixture
def real_refimpl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(atlas.loader, "refimpl_methods", REAL_REFIMPL_METHODS)


def test_the_real_catalogue_has_no_link_errors(real_refimpl):
    assert not [problem for problem in check_offline(load_catalog(PROJECT_ROOT)) if problem.fatal]


def test_bad_hosts_ip_addresses_and_reused_paper_pages_are_errors(project):
    write_paper(project, "novel.yaml", NOVEL.replace("https://example.org/code", "http://10.0.0.1/code"))
    lora_page = load_catalog(project).paper("lora").links.paper
    other = NOVEL.replace("key: novel", "key: other").replace("Used Only in Tests", "Used Elsewhere")
    other = other.replace('"2301.00001"', '"2301.00002"')
    other = other.replace(
        "  code: https://example.org/code", f"  paper: {lora_page}\n  code: https://bit.ly/x"
    )
    write_paper(project, "other.yaml", other)
    messages = sorted(str(problem) for problem in check_offline(load_catalog(project)) if problem.fatal)
    assert any("novel.yaml: links.code: a bare IP address" in m for m in messages)
    assert any("other.yaml: links.code: host bit.ly is on the known-bad list" in m for m in messages)
    assert any("other.yaml: links.paper: the same address is a link of lora" in m for m in messages)


def test_live_check_reports_refusals_and_outages_but_fails_only_on_broken_links(project):
    statuses = {"403": 403, "429": 429, "404": 404, "down": None}

    def fake_fetch(url: str) -> int:
        status = next((code for marker, code in statuses.items() if marker in url), 200)
        if status is None:
            raise urllib.error.URLError("no route to host")
        return status

    for number, marker in enumerate(statuses, start=2):
        entry = NOVEL.replace("key: novel", f"key: p{marker}").replace(
            "Used Only in Tests", f"Number {number}"
        )
        entry = entry.replace('"2301.00001"', f'"2301.0000{number}"').replace(
            "example.org/code", f"code.test/{marker}"
        )
        write_paper(project, f"p{marker}.yaml", entry)
    problems = check_live(load_catalog(project), fetch=fake_fetch)
    fatal = [str(p) for p in problems if p.fatal]
    reported = [str(p) for p in problems if not p.fatal]
    assert fatal == ["catalog/papers/p404.yaml: links.code: HTTP 404"]
    assert len(reported) == 3


def test_atlas_links_exits_zero_on_the_real_catalogue(real_refimpl, capsys):
    assert main(["links", "--root", str(PROJECT_ROOT)]) == 0
    assert "0 error(s)" in capsys.readouterr().out
