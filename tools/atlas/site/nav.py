"""The catalogue's part of the navigation: a section per category (with its subcategories) and per FM type.

mkdocs.yml names only the top-level pages; this expands the Taxonomy and Foundation models entries.
Paper and method pages stay out of the nav: it is inlined into every page, so it must not grow with
the catalogue.
"""

from __future__ import annotations

from typing import Any

from markupsafe import escape

from atlas.loader import Catalog
from atlas.site.model import category_url, fm_url, subcategory_url

TAXONOMY_INDEX = "taxonomy/index.md"
FM_INDEX = "foundation-models/index.md"


def _taxonomy_section(catalog: Catalog) -> list[Any]:
    entries: list[Any] = [TAXONOMY_INDEX]
    for category in catalog.taxonomy.categories:
        index = category_url(category.id) + "index.md"
        subs = [
            {str(escape(s.name)): subcategory_url(category.id, s.id) + "index.md"}
            for s in category.subcategories
        ]
        entries.append({str(escape(category.name)): [index, *subs] if subs else index})
    return entries


def _fm_section(catalog: Catalog) -> list[Any]:
    return [
        FM_INDEX,
        *({str(escape(fm.name)): fm_url(fm.id) + "index.md"} for fm in catalog.taxonomy.foundation_models),
    ]


def expand_nav(nav: list[Any] | None, catalog: Catalog) -> list[Any] | None:
    """Replace `{title: taxonomy/index.md}` and `{title: foundation-models/index.md}` by full sections."""
    if nav is None:
        return None
    sections = {TAXONOMY_INDEX: _taxonomy_section, FM_INDEX: _fm_section}
    expanded: list[Any] = []
    for item in nav:
        if isinstance(item, dict) and len(item) == 1:
            ((title, target),) = item.items()
            if isinstance(target, str) and target in sections:
                item = {title: sections[target](catalog)}
        expanded.append(item)
    return expanded
