"""Checks a deployed bundle against the JSON Schemas in devices/schemas/, read straight from
the files with jsonschema, as a user's CI would, not through the pipeline's own readers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

from devices.latency_stats import LATENCY_KEYS, UNEXPLAINED

SCHEMAS = Path(__file__).resolve().parent.parent / "devices" / "schemas"


def assert_follows_schemas(bundle: Path) -> None:
    for document, schema in (("manifest.json", "edge-bundle-manifest-1"),
                             ("latency_report.json", "edge-latency-report-2")):
        instance = json.loads((bundle / document).read_text(encoding="utf-8"))
        contract = json.loads((SCHEMAS / f"{schema}.schema.json").read_text(encoding="utf-8"))
        jsonschema.validate(instance, contract, cls=jsonschema.Draft202012Validator)


def assert_one_report_shape(document: dict[str, Any]) -> None:
    """What every adapter's latency report holds alike (docs/architecture.md, Contracts): the
    schema, every statistic key, statistics consistent with the kept raw runs, and a reason
    for each value left null."""
    contract = json.loads((SCHEMAS / "edge-latency-report-2.schema.json").read_text("utf-8"))
    jsonschema.validate(document, contract, cls=jsonschema.Draft202012Validator)
    latency = document["latency_ms"]
    assert set(latency) == set(LATENCY_KEYS)
    runs = document["runs_ms"]
    assert runs, "every adapter keeps its raw run times"
    assert min(runs) <= latency["p90"] <= latency["p99"] <= max(runs) * (1 + 1e-9)
    reasons = document["missing"]
    assert UNEXPLAINED not in reasons.values()
    nulls = {f"latency_ms.{key}" for key, value in latency.items() if value is None}
    nulls |= {f"memory.{key}" for key, value in document["memory"].items() if value is None}
    nulls |= {key for key in ("ops", "instructions") if document[key] is None}
    assert nulls <= set(reasons), f"null without a reason: {sorted(nulls - set(reasons))}"
