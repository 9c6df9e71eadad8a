"""The bundle contract, as a device sees it: dist/<target>/ holds the artifact, labels.txt,
inputs.npz and manifest.json (docs/architecture.md, "Contracts"). Reading and verifying it
lives here, below both sides; pipeline/bundle.py writes it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from devices.errors import ArtifactError
from devices.fsutil import sha256_file

MANIFEST = "manifest.json"
LABELS = "labels.txt"
INPUTS = "inputs.npz"
LATENCY_REPORT = "latency_report.json"
TARGET_REPORT = "report.md"
# Written into the bundle by profiling, after the manifest: not part of what ships.
PROFILE_OUTPUTS = (LATENCY_REPORT, TARGET_REPORT)


def file_records(folder: Path) -> list[dict[str, Any]]:
    return [
        {"path": path.relative_to(folder).as_posix(), "sha256": sha256_file(path),
         "bytes": path.stat().st_size}
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.relative_to(folder).as_posix() != MANIFEST
    ]


def read_manifest(folder: Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST
    try:
        return json.loads(path.read_text(encoding="utf-8"))
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
    listed = {record["path"]: record for record in read_manifest(folder).get("files", [])}
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
