"""Fixtures for the website tests: built sites (real and modified catalogues), a local server, a browser.

Every build runs `mkdocs build --strict` in a subprocess from another working directory, so the hook has
to find the catalogue beside the config file. Browser tests drive Debian's Chromium through Playwright;
where it is missing they are skipped, except under CI=true, where that is a failure.
"""

from __future__ import annotations

import functools
import http.server
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from atlas.loader import Catalog, load_catalog
from atlas.site.sandbox import build_site, copy_project, write_paper

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = PROJECT_ROOT / "artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@functools.cache
def _serve(site_dir: Path) -> str:
    """Serve `site_dir` on a free local port for the rest of the session; returns the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(site_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}/"


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog(PROJECT_ROOT)


@pytest.fixture(scope="session")
def site_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real project's site, built once per session."""
    return build_site(PROJECT_ROOT, tmp_path_factory.mktemp("real") / "site")


@pytest.fixture(scope="session")
def site_url(site_dir: Path) -> str:
    return _serve(site_dir)


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """A throw-away copy of the project's site inputs, to change before building."""
    return copy_project(PROJECT_ROOT, tmp_path / "project")


@pytest.fixture(scope="session")
def serve():
    return _serve


HOSTILE_TITLE = """Tuning <script>alert(1)</script> & <img src=x onerror=alert(1)> "quoted" 'single'"""


def hostile_entry(catalog: Catalog) -> dict:
    """A new, valid entry whose text tries to break out of HTML, attributes, JSON and Markdown."""
    lora = catalog.paper("lora").model_dump(mode="json", exclude_none=True)
    lora.pop("upstream", None)
    lora.pop("table1", None)
    return {
        **lora,
        "key": "hostile-entry",
        "title": HOSTILE_TITLE,
        "authors": ['Ann "<b>Bold</b>" O\'Neil & Co'],
        "summary": "A summary with [a link](javascript:alert(2)), *stars*, </script> and &amp; entities.",
        "foundation_models": ["VGM"],
        "links": {"code": "https://example.org/?a=1&b=<2>"},
        "notes": ["<iframe src=x></iframe>"],
        "bibtex": {"type": "misc"},
    }


@pytest.fixture(scope="session")
def extended_site(tmp_path_factory: pytest.TempPathFactory, catalog: Catalog) -> tuple[Path, Catalog]:
    """The project plus one hostile entry, built once: (site folder, its catalogue)."""
    root = copy_project(PROJECT_ROOT, tmp_path_factory.mktemp("extended") / "project")
    write_paper(root, hostile_entry(catalog))
    return build_site(root, root.parent / "site"), load_catalog(root)


# --- the browser ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@dataclass
class Tab:
    """A browser page that records console errors, uncaught exceptions and any request off the local site."""

    page: object
    base_url: str
    errors: list[str] = field(default_factory=list)

    def open(self, path: str = "") -> object:
        self.page.goto(self.base_url + path)
        self.page.wait_for_load_state("load")
        return self.page

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


def _tab(browser, base_url: str, **context_options) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, **context_options)
    tab = Tab(context.new_page(), base_url)

    def local_only(route) -> None:
        if route.request.url.startswith(base_url):
            route.continue_()
        else:
            tab.errors.append(f"request off the site: {route.request.url}")
            route.abort()

    context.route("**/*", local_only)
    tab.page.on("console", lambda message: message.type == "error" and tab.errors.append(message.text))
    tab.page.on("pageerror", lambda error: tab.errors.append(f"uncaught: {error}"))
    try:
        yield tab
    finally:
        context.close()


@pytest.fixture
def tab(browser, site_url: str) -> Iterator[Tab]:
    """A fresh browser tab on the real site, allowed to use the clipboard."""
    yield from _tab(browser, site_url, permissions=["clipboard-read", "clipboard-write"])


@pytest.fixture
def new_tab(browser):
    """Open tabs on other sites: new_tab(base_url, **context_options)."""
    contexts: list[Iterator[Tab]] = []

    def open_tab(base_url: str, **options) -> Tab:
        generator = _tab(browser, base_url, **options)
        contexts.append(generator)
        return next(generator)

    yield open_tab
    for generator in contexts:
        generator.close()
