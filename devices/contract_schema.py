"""JSON Schema checks of the documents that ship (docs/architecture.md, Contracts).

The schema files in devices/schemas/ are the contract users and CI validate against
(`check-jsonschema --schemafile devices/schemas/edge-latency-report-2.schema.json
dist/host/latency_report.json`); the typed readers (devices.bundle.Manifest,
devices.base.LatencyReport) run the same check, so a damaged document is refused with the
path of the field that is wrong.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from devices.errors import ArtifactError

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"


def schema_path(schema_id: str) -> Path:
    """`edge-latency-report/2` -> devices/schemas/edge-latency-report-2.schema.json."""
    return SCHEMA_DIR / f"{schema_id.replace('/', '-')}.schema.json"


@functools.cache
def _validator(schema_id: str) -> Any:
    import jsonschema  # deferred: 40 ms of every command's start-up, needed only to check

    path = schema_path(schema_id)
    if not path.is_file():
        known = sorted(p.name.removesuffix(".schema.json") for p in SCHEMA_DIR.glob("*.json"))
        raise ArtifactError(f"no schema {schema_id!r}; known: {', '.join(known)} (hint: "
                            "the document is from another version of the pipeline)")
    return jsonschema.Draft202012Validator(json.loads(path.read_text(encoding="utf-8")))


def check_document(document: Any, schema_id: str, label: str, hint: str) -> None:
    """ArtifactError naming the first wrong field unless `document` follows the schema."""
    from jsonschema.exceptions import best_match  # deferred with the validator

    error = best_match(_validator(schema_id).iter_errors(document))
    if error is not None:
        where = ".".join(str(part) for part in error.absolute_path) or "the document"
        raise ArtifactError(f"{label} does not follow {schema_id}: {where}: {error.message} "
                            f"(hint: {hint})")
