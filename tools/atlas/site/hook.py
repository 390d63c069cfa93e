"""mkdocs hook (registered in mkdocs.yml): adds the pages generated from the catalogue to the build.

The catalogue is read from the folder of the config file, so a copy of the project builds its own
catalogue whatever the working directory. Generated pages live only in memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.livereload import LiveReloadServer
from mkdocs.structure.files import File, Files, InclusionLevel
from mkdocs.structure.pages import Page as MkdocsPage

from atlas import exports
from atlas.loader import CatalogError, load_catalog
from atlas.site.bench import BENCH_FILE, BenchFileError, load_bench
from atlas.site.contributing import contributing_page
from atlas.site.model import SiteModel, registered_methods
from atlas.site.nav import expand_nav
from atlas.site.pages import Page, PageBuilder, escaped_title

_generated: dict[str, Page] = {}
_downloads: dict[str, str] = {}


def _project_root(config: MkDocsConfig) -> Path:
    return Path(config.config_file_path).resolve().parent


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    if not config.use_directory_urls:
        raise PluginError("the PEFT Atlas hook builds folder URLs: set use_directory_urls: true")
    root = _project_root(config)
    try:
        catalog = load_catalog(root)
    except CatalogError as error:
        raise PluginError(f"the catalogue in {root / 'catalog'} is invalid:\n{error}") from error
    try:
        bench = load_bench(root / BENCH_FILE)
    except BenchFileError as error:
        raise PluginError(f"the bench results are invalid: {error}") from error
    builder = PageBuilder(SiteModel.build(catalog, registered_methods(), bench), config.repo_url or "")
    pages = [*builder.pages(), contributing_page(root, builder)]
    _generated.clear()
    _generated.update((page.uri, page) for page in pages)
    _downloads.clear()
    _downloads.update(
        {
            "downloads/catalog.json": exports.catalog_json(catalog),
            "downloads/papers.bib": exports.papers_bib(catalog),
            "downloads/papers.csv": exports.papers_csv(catalog),
        }
    )
    config.nav = expand_nav(config.nav, catalog)
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    for uri, page in _generated.items():
        inclusion = InclusionLevel.UNDEFINED if page.in_nav else InclusionLevel.NOT_IN_NAV
        files.append(File.generated(config, uri, content=page.body, inclusion=inclusion))
    for uri, content in _downloads.items():
        files.append(File.generated(config, uri, content=content))
    return files


def on_env(env: Environment, **_: Any) -> Environment:
    env.globals["atlas_sidebar_cache"] = {}  # filled by theme/main.html
    return env


def on_page_markdown(markdown: str, page: MkdocsPage, **_: Any) -> str:
    generated = _generated.get(page.file.src_uri)
    if generated is None:
        return markdown
    page.meta.update(generated.meta, title=escaped_title(generated))
    # Ready HTML skips Markdown, whose raw-HTML parsing would be most of the build time.
    return markdown if generated.markdown else ""


def on_page_content(html: str, page: MkdocsPage, **_: Any) -> str:
    generated = _generated.get(page.file.src_uri)
    if generated is None or generated.markdown:
        return html
    return generated.search_html or generated.body


def on_page_context(context: dict[str, Any], page: MkdocsPage, **_: Any) -> dict[str, Any]:
    # Hooks run after plugins: the search plugin has indexed the lean part, now the page gets its body.
    generated = _generated.get(page.file.src_uri)
    if generated is not None and generated.search_html is not None:
        page.content = generated.body
    return context


def on_serve(server: LiveReloadServer, config: MkDocsConfig, **_: Any) -> LiveReloadServer:
    root = _project_root(config)
    server.watch(str(root / "catalog"))
    if (root / BENCH_FILE).parent.is_dir():  # watchdog cannot watch a folder that does not exist
        server.watch(str((root / BENCH_FILE).parent))
    return server
