"""Checks a deployed bundle against the JSON Schemas in devices/schemas/, read straight from
the files with jsonschema, as a user's CI would, not through the pipeline's own readers."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

SCHEMAS = Path(__file__).resolve().parent.parent / "devices" / "schemas"


def assert_follows_schemas(bundle: Path) -> None:
    for document, schema in (("manifest.json", "edge-bundle-manifest-1"),
                             ("latency_report.json", "edge-latency-report-2")):
        instance = json.loads((bundle / document).read_text(encoding="utf-8"))
        contract = json.loads((SCHEMAS / f"{schema}.schema.json").read_text(encoding="utf-8"))
        jsonschema.validate(instance, contract, cls=jsonschema.Draft202012Validator)
