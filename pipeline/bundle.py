"""Writes device bundles: dist/<target>/ with the artifact(s), labels.txt, inputs.npz and
manifest.json (docs/architecture.md, "Contracts"); devices/bundle.py reads and verifies them.

The bundle is assembled in a temp folder beside the final one and moved into place with
one rename, so dist/ never holds half a bundle. Checksums in the manifest are computed
from the files as written.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from devices.artifact_kinds import format_of
from devices.bundle import INPUTS, LABELS, MANIFEST, MANIFEST_SCHEMA, Manifest, file_records
from devices.errors import ArtifactError, ExportError
from devices.fsutil import atomic_directory, atomic_write_json, child_folder
from pipeline.conversion.tflite_inspect import io_quantization
from pipeline.version import __version__

REQUIRED_FIELDS = ("config_fingerprint", "dataset")


def _copy_artifact(source: Path, folder: Path) -> None:
    if source.is_dir():  # e.g. the generated C sources of a microcontroller target
        shutil.copytree(source, folder / source.name)
    elif source.is_file():
        shutil.copy2(source, folder / source.name)
    else:
        raise ArtifactError(
            f"bundle artifact {source} does not exist (hint: run the export stage first)"
        )


def _write_labels(folder: Path, labels: list[str]) -> None:
    bad = [label for label in labels if not label or "\n" in label or "\r" in label]
    if not labels or bad:
        raise ExportError(
            f"labels must be non-empty single-line strings; got {labels!r} "
            "(hint: check the dataset's class names)"
        )
    (folder / LABELS).write_text("\n".join(labels) + "\n", encoding="utf-8")


def _write_inputs(folder: Path, x_samples: np.ndarray, y_samples: np.ndarray) -> None:
    x = np.asarray(x_samples, np.float32)
    y = np.asarray(y_samples, np.int64)
    if x.ndim != 4 or len(x) == 0 or len(x) != len(y) or y.ndim != 1:
        raise ExportError(
            f"bundle samples must be NHWC inputs with one label each; got x {x.shape} and "
            f"y {y.shape} (hint: pass the normalised test split)"
        )
    np.savez(folder / INPUTS, x=x, y=y)


def _quantization_records(
    folder: Path, artifact_files: list[Path]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Input and output quantization per TFLite artifact, read from the written files."""
    inputs: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    for source in artifact_files:
        path = folder / source.name
        if path.is_file() and format_of(path) == "tflite":
            input_quantization, output_quantization = io_quantization(path.read_bytes(), path.name)
            if input_quantization is not None:
                inputs[path.name] = input_quantization.to_dict()
            if output_quantization is not None:
                outputs[path.name] = output_quantization.to_dict()
    return inputs, outputs


def _is_model_file(path: Path) -> bool:
    return path.suffix.lower() in (".tflite", ".onnx")


def _manifest(
    folder: Path, target: str, artifact_files: list[Path], labels: list[str],
    x_shape: tuple[int, ...], manifest_fields: dict[str, Any],
) -> Manifest:
    model_files = [p for p in artifact_files if _is_model_file(p)]
    input_quantization, output_quantization = _quantization_records(folder, model_files)
    extra_input = dict(manifest_fields.get("input", {}))
    metrics = dict(manifest_fields.get("metrics", {}))
    return Manifest.from_dict({  # checked against the schema before it is written
        **manifest_fields,
        "schema": MANIFEST_SCHEMA,
        "pipeline_version": manifest_fields.get("pipeline_version", __version__),
        "target": target,
        "labels": list(labels),
        "artifacts": [p.name for p in artifact_files],
        "input": {
            **extra_input,
            "shape": list(x_shape),
            "dtype": "float32",
            "layout": "NHWC",
            "quantization": input_quantization,
        },
        "output": {"classes": len(labels), "dtype": "float32",
                   "quantization": output_quantization},
        "metrics": metrics,
        "files": file_records(folder),
    }, f"the {target} bundle's manifest")


def write_bundle(
    out_dir: Path, *, target: str, artifact_files: list[Path], labels: list[str],
    x_samples: np.ndarray, y_samples: np.ndarray, manifest_fields: dict[str, Any],
    validation: Any = None,
) -> Path:
    """Write `out_dir/<target>/` in one rename and return its path.

    `manifest_fields` carries config_fingerprint, dataset, input.normalisation and the
    per-stage metrics (teacher, student, ...); `validation` (a ValidateResult) adds
    metrics.artifacts.
    """
    missing = [key for key in REQUIRED_FIELDS if key not in manifest_fields]
    if missing:
        raise ExportError(
            f"bundle manifest fields {missing} are missing; expected {list(REQUIRED_FIELDS)} "
            "(hint: the runner passes them from the config and dataset)"
        )
    if not artifact_files:
        raise ExportError(f"bundle {target} has no artifact (hint: check the target profile)")
    artifact_files = [Path(p) for p in artifact_files]
    fields = dict(manifest_fields)
    if validation is not None:
        fields["metrics"] = {**fields.get("metrics", {}),
                             "artifacts": validation.manifest_metrics()}
    final = child_folder(Path(out_dir), target, "bundle")
    with atomic_directory(final) as folder:
        for source in artifact_files:
            _copy_artifact(source, folder)
        _write_labels(folder, labels)
        _write_inputs(folder, x_samples, y_samples)
        x_shape = tuple(np.asarray(x_samples).shape[1:])
        manifest = _manifest(folder, target, artifact_files, labels, x_shape, fields)
        atomic_write_json(folder / MANIFEST, manifest.to_dict())
    return final
