"""The bundle contract, as a device sees it: dist/<target>/ holds the artifact, labels.txt,
inputs.npz and manifest.json (docs/architecture.md, "Contracts"). Reading and verifying it
lives here, below both sides; pipeline/bundle.py writes it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from devices.contract_schema import check_document
from devices.errors import ArtifactError
from devices.fsutil import sha256_file

MANIFEST = "manifest.json"
LABELS = "labels.txt"
INPUTS = "inputs.npz"
LATENCY_REPORT = "latency_report.json"
TARGET_REPORT = "report.md"
# Written into the bundle by profiling, after the manifest: not part of what ships.
PROFILE_OUTPUTS = (LATENCY_REPORT, TARGET_REPORT)
MANIFEST_SCHEMA = "edge-bundle-manifest/1"  # devices/schemas/edge-bundle-manifest-1.schema.json
REBUILD_HINT = "rebuild the bundle with `make artifacts`"
# why a device reports no top-1 for a bundle of random inputs (`profile --model` without data)
UNLABELLED = "the bundle's inputs.npz has no labels"


@dataclass(frozen=True)
class Manifest:
    """manifest.json (docs/architecture.md, Contracts: the bundle)."""

    pipeline_version: str
    config_fingerprint: str
    dataset: dict[str, Any]
    target: str
    labels: list[str]
    artifacts: list[str]  # the model files (or folders) the bundle ships
    input: dict[str, Any]
    output: dict[str, Any]
    metrics: dict[str, Any]  # teacher, student, student_scratch, pruned, artifacts[<file>]
    files: list[dict[str, Any]]  # path, sha256, bytes of every file but the manifest
    machines: dict[str, Any] = field(default_factory=dict)  # export / validate CPUs
    schema: str = MANIFEST_SCHEMA

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, document: Any, label: str = MANIFEST) -> Manifest:
        check_document(document, MANIFEST_SCHEMA, label, REBUILD_HINT)
        return cls(**document)

    def artifact_metrics(self, file: str) -> dict[str, Any] | None:
        """The validated record of one artifact, or None when it has none."""
        return self.metrics.get("artifacts", {}).get(file)


def file_records(folder: Path) -> list[dict[str, Any]]:
    return [
        {"path": path.relative_to(folder).as_posix(), "sha256": sha256_file(path),
         "bytes": path.stat().st_size}
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.relative_to(folder).as_posix() != MANIFEST
    ]


def read_manifest(folder: Path) -> Manifest:
    path = Path(folder) / MANIFEST
    try:
        return Manifest.from_dict(json.loads(path.read_text(encoding="utf-8")), str(path))
    except FileNotFoundError as exc:
        raise ArtifactError(
            f"bundle {folder} has no {MANIFEST} (hint: build it with `make artifacts`)"
        ) from exc
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path} is not valid JSON: {exc} (hint: rebuild the bundle)") from exc


def verify_bundle(folder: Path, ignore: tuple[str, ...] = PROFILE_OUTPUTS) -> None:
    """ArtifactError unless every file matches the manifest's sha256 and size, and no file
    (but the profiling outputs) sits in the bundle without being listed."""
    folder = Path(folder)
    listed = {record["path"]: record for record in read_manifest(folder).files}
    problems = []
    for relative, record in sorted(listed.items()):
        path = folder / relative
        if not path.is_file():
            problems.append(f"{relative} is missing")
        elif path.stat().st_size != record["bytes"]:
            problems.append(
                f"{relative} has {path.stat().st_size} bytes, expected {record['bytes']}"
            )
        elif sha256_file(path) != record["sha256"]:
            problems.append(f"{relative} has sha256 {sha256_file(path)[:12]}..., expected "
                            f"{record['sha256'][:12]}...")
    present = {r["path"] for r in file_records(folder)}
    unlisted = sorted(present - set(listed) - set(ignore))
    problems += [f"{extra} is not listed in the manifest" for extra in unlisted]
    if problems:
        raise ArtifactError(
            f"bundle {folder} does not match its manifest: {'; '.join(problems)} "
            "(hint: rebuild it with `make artifacts`)"
        )
