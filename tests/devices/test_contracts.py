"""The shipped documents' schemas (devices/schemas/) against their typed readers: the schema
files are valid, name exactly the dataclasses' fields, and a hand-damaged field is refused
with its path."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jsonschema
import pytest

from devices.base import SCHEMA, BenchmarkSettings, LatencyReport
from devices.budget import read_report
from devices.bundle import MANIFEST_SCHEMA, Manifest, read_manifest
from devices.contract_schema import SCHEMA_DIR, schema_path
from devices.errors import ArtifactError
from devices.profiles import load_profile
from devices.profiling import profile_target

SETTINGS = BenchmarkSettings(warmup=1, runs=3, threads=1)


def _schema(schema_id: str) -> dict:
    return json.loads(schema_path(schema_id).read_text())


def test_every_schema_file_is_a_valid_draft_2020_12_schema() -> None:
    files = sorted(SCHEMA_DIR.glob("*.schema.json"))
    assert [path.name for path in files] == [
        "edge-bundle-manifest-1.schema.json", "edge-latency-report-2.schema.json"]
    for path in files:
        jsonschema.Draft202012Validator.check_schema(json.loads(path.read_text()))


def test_the_schemas_name_exactly_the_dataclass_fields() -> None:
    manifest_fields = {f.name for f in dataclasses.fields(Manifest)}
    assert set(_schema(MANIFEST_SCHEMA)["properties"]) == manifest_fields
    report_fields = {f.name for f in dataclasses.fields(LatencyReport)} | {"schema"}
    assert set(_schema(SCHEMA)["properties"]) == report_fields


@pytest.mark.parametrize(("damage", "field", "message"), [
    (lambda m: m["metrics"]["artifacts"]["model_int8.tflite"].update(top1=1.5),
     "metrics.artifacts.model_int8.tflite.top1", "greater than the maximum of 1"),
    (lambda m: m["files"][0].update(sha256="not-a-digest"), "files.0.sha256", "does not match"),
    (lambda m: m["files"][0].update(path="../../etc/passwd"), "files.0.path", "does not match"),
    (lambda m: m.pop("labels"), "the document", "'labels' is a required property"),
    (lambda m: m.update(schema="edge-bundle-manifest/9"), "schema", "was expected"),
])
def test_a_damaged_manifest_is_refused_naming_the_field(
    bundle_copy: Path, damage, field: str, message: str
) -> None:
    path = bundle_copy / "manifest.json"
    document = json.loads(path.read_text())
    read_manifest(bundle_copy)  # the fixture's manifest is valid
    damage(document)
    path.write_text(json.dumps(document))
    with pytest.raises(ArtifactError, match=rf"does not follow edge-bundle-manifest/1: "
                       rf"{field.replace('.', '[.]')}: .*{message}") as info:
        read_manifest(bundle_copy)
    assert info.value.exit_code == 2


@pytest.fixture
def profiled(bundle_copy: Path) -> Path:
    profile_target(load_profile("host", environ={}), bundle_copy, SETTINGS)
    return bundle_copy / "latency_report.json"


@pytest.mark.parametrize(("damage", "field"), [
    (lambda r: r["latency_ms"].update(median="fast"), "latency_ms.median"),
    (lambda r: r["latency_ms"].update(p90=-1.0), "latency_ms.p90"),
    (lambda r: r["accuracy"].pop("samples"), "accuracy"),
    (lambda r: r["target"].update(emulated="no"), "target.emulated"),
    (lambda r: r.update(speed=1), "the document"),
])
def test_a_damaged_latency_report_is_refused_naming_the_field(
    profiled: Path, damage, field: str
) -> None:
    document = json.loads(profiled.read_text())
    assert read_report(profiled) == document  # what profiling wrote follows the schema
    damage(document)
    profiled.write_text(json.dumps(document))
    with pytest.raises(ArtifactError, match=rf"does not follow edge-latency-report/2: "
                       rf"{field.replace('.', '[.]')}: "):
        read_report(profiled)


def test_the_typed_report_round_trips(profiled: Path) -> None:
    document = json.loads(profiled.read_text())
    assert LatencyReport.from_dict(document).to_dict() == document
