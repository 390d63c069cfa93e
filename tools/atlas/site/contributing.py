"""The Contributing page: the project's CONTRIBUTING.md when there is one, else a short fallback."""

from __future__ import annotations

import re
from pathlib import Path

from atlas.site.pages import Page, PageBuilder

# Inline `[text](target)` and reference `[label]: target` links whose target is a path in the repository.
_INLINE = re.compile(r"(\]\()(?!https?://|mailto:|#)([^)\s]+)")
_REFERENCE = re.compile(r"^(\s*\[[^\]]+\]:\s*)(?!https?://|mailto:|#)(\S+)", re.MULTILINE)


def repository_links(markdown: str, repo_url: str) -> str:
    """Point repository-relative links at the repository: they are not pages of the site."""
    blob = repo_url.rstrip("/") + "/blob/main/"

    def absolute(match: re.Match[str]) -> str:
        return match.group(1) + blob + match.group(2).removeprefix("./")

    return _REFERENCE.sub(absolute, _INLINE.sub(absolute, markdown))


def contributing_page(root: Path, builder: PageBuilder) -> Page:
    source = root / "CONTRIBUTING.md"
    if source.is_file():
        body = repository_links(source.read_text(encoding="utf-8"), builder.env.globals["repo_url"])
        return Page("contributing/index.md", "Contributing", body, {"hide": ["navigation"]}, markdown=True)
    return builder.page("contributing/index.md", "Contributing", "contributing.html")
