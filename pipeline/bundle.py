"""Writes device bundles: dist/<target>/ with the artifact(s), labels.txt, inputs.npz and
manifest.json (docs/architecture.md, "Contracts"); devices/bundle.py reads and verifies them.

The bundle is assembled in a temp folder beside the final one and moved into place with
one rename, so dist/ never holds half a bundle. Checksums in the manifest are computed
from the files as written.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from devices.artifact_kinds import format_of
from devices.base import TargetProfile
from devices.bundle import INPUTS, LABELS, MANIFEST, MANIFEST_SCHEMA, Manifest, file_records
from devices.errors import ArtifactError, ExportError
from devices.fsutil import (
    LOCK_FOLDER,
    atomic_directory,
    atomic_write_json,
    child_folder,
    exclusive_lock,
)
from devices.registry import adapter_class
from devices.runtimes import load_tflite_interpreter, run_onnx, run_tflite
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


def _write_inputs(folder: Path, x_samples: np.ndarray, y_samples: np.ndarray | None) -> None:
    """inputs.npz: x, and y unless the samples have no labels (a user's model file
    profiled on random inputs: the devices then report no top-1, saying why)."""
    x = np.asarray(x_samples, np.float32)
    y = None if y_samples is None else np.asarray(y_samples, np.int64)
    if x.ndim != 4 or len(x) == 0 or (y is not None and (len(x) != len(y) or y.ndim != 1)):
        raise ExportError(
            f"bundle samples must be NHWC inputs with one label each; got x {x.shape} and "
            f"y {None if y is None else y.shape} (hint: pass the normalised test split)"
        )
    np.savez(folder / INPUTS, x=x, **({} if y is None else {"y": y}))


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
    x_samples: np.ndarray, y_samples: np.ndarray | None, manifest_fields: dict[str, Any],
    validation: Any = None,
) -> Path:
    """Write `out_dir/<target>/` in one rename and return its path.

    `manifest_fields` carries config_fingerprint, dataset, input.normalisation and the
    per-stage metrics (teacher, student, ...); `validation` (a ValidateResult) adds
    metrics.artifacts. `y_samples` None: samples without labels.
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


def write_device_bundle(
    dist_dir: Path, profile: TargetProfile, artifact: Path, *, labels: list[str],
    x_samples: np.ndarray, y_samples: np.ndarray | None, manifest_fields: dict[str, Any],
) -> Path:
    """`dist_dir/<target>/` for one target: the artifact, what the target's adapter adds
    beside it (`bundle_extras`, e.g. a microcontroller's generated C) and the samples."""
    adapter = adapter_class(profile.adapter)
    with tempfile.TemporaryDirectory() as scratch:
        extra_files = adapter.bundle_extras(artifact, x_samples, Path(scratch))
        return write_bundle(
            dist_dir, target=profile.name, artifact_files=[artifact, *extra_files],
            labels=labels, x_samples=x_samples, y_samples=y_samples,
            manifest_fields=manifest_fields,
        )


def _tflite_logits(artifact: Path, x: np.ndarray, kernels: str) -> np.ndarray:
    interpreter, _ = load_tflite_interpreter(artifact, reference_kernels=kernels == "reference")
    return run_tflite(interpreter, x)


def _onnx_logits(artifact: Path, x: np.ndarray, kernels: str) -> np.ndarray:
    return run_onnx(artifact, x)  # onnxruntime has one set of CPU kernels


# artifact format -> float logits of a batch in this process, with the named LiteRT kernels
BUNDLE_RUNNERS: dict[str, Callable[[Path, np.ndarray, str], np.ndarray]] = {
    "tflite": _tflite_logits,
    "onnx": _onnx_logits,
}


def top1_in_process(artifact: Path, x: np.ndarray, y: np.ndarray, kernels: str) -> float:
    logits = BUNDLE_RUNNERS[format_of(artifact)](artifact, x, kernels)
    return float(np.mean(np.argmax(logits, axis=-1) == y))


def bundle_accuracy(
    artifact: Path, x: np.ndarray, y: np.ndarray, kernels: str
) -> dict[str, Any]:
    """The artifact's top-1 on exactly the bundled samples: the number a device must
    reproduce, from the LiteRT kernels the adapter names (`accuracy_kernels`: C kernels
    are bit-exact with the reference ones, not with the optimised ones, which can round a
    near-tie differently)."""
    return {"bundle_top1": top1_in_process(artifact, x, y, kernels), "bundle_samples": len(y),
            "bundle_kernels": kernels}


@contextmanager
def bundle_locks(
    dist_dir: Path, names: list[str], echo: Callable[[str], None] = print
) -> Iterator[None]:
    """One run at a time writes or profiles each `dist/<name>/`: a second deploy waits
    (saying for what) instead of swapping a bundle another run is still profiling. Locks
    are taken in sorted order, so two fleets cannot deadlock."""
    with ExitStack() as stack:
        for name in sorted(set(names)):
            path = Path(dist_dir) / LOCK_FOLDER / f"{name}.lock"
            stack.enter_context(exclusive_lock(path, lambda name=name, path=path: echo(
                f"bundle     waiting: another run is writing or profiling {dist_dir}/{name} "
                f"(lock {path})")))
        yield
