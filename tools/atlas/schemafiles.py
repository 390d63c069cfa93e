"""JSON Schemas of the catalogue files, generated from the Pydantic models (for editors and other tools)."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from atlas.fsutil import atomic_write_text
from atlas.schema import Paper, Taxonomy

SCHEMA_DIR = Path("catalog/schema")
SCHEMAS: dict[str, type[BaseModel]] = {"paper.schema.json": Paper, "taxonomy.schema.json": Taxonomy}


def schema_text(model: type[BaseModel]) -> str:
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **model.model_json_schema()}
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def stale_schemas(root: Path) -> list[Path]:
    """The schema files under `root` that are missing or differ from the models."""
    stale = []
    for name, model in SCHEMAS.items():
        path = root / SCHEMA_DIR / name
        if not path.exists() or path.read_text(encoding="utf-8") != schema_text(model):
            stale.append(path)
    return stale


def write_schemas(root: Path) -> list[Path]:
    paths = []
    for name, model in SCHEMAS.items():
        path = root / SCHEMA_DIR / name
        atomic_write_text(path, schema_text(model))
        paths.append(path)
    return paths
