"""Validate stage: run every exported artifact through its real runtime on the test split.

Per artifact: top-1, agreement with the Keras model's argmax and the largest absolute
logit difference. The stage fails when an artifact gets more than
`validate.max_accuracy_drop` points of the test images fewer right than Keras, or a float
artifact (fp32, fp16) agrees with Keras on fewer than `validate.min_float_agreement` of
the predictions. The drop is compared in whole images, so a drop of exactly the limit
passes: 1.0 point of 1,000 images allows 10, whatever floating point makes of 0.97 - 0.96.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from math import floor
from pathlib import Path
from typing import Any

import numpy as np

from devices.artifact_kinds import artifact_kind, format_of
from devices.bench_runner import cpu_facts
from devices.errors import ArtifactError, ValidationError
from devices.fsutil import sha256_file
from devices.runtimes import RuntimeInfo, load_onnx_session, load_tflite_interpreter, run_onnx
from devices.runtimes import run_tflite as run_interpreter
from pipeline.config import ValidateConfig
from pipeline.conversion.onnx_converter import check_onnx
from pipeline.conversion.onnx_inspect import onnx_precision
from pipeline.conversion.tflite_inspect import tflite_precision
from pipeline.progress import steps
from pipeline.stage import Stage, StageContext, load_model
from pipeline.stages.export import ExportResult

STAGE_VERSION = "2"
KERAS_BATCH = 256


@dataclass(frozen=True)
class ArtifactMetrics:
    file: str
    format: str
    precision: str
    bytes: int
    samples: int
    correct: int  # test images it classifies right
    agreement: float | None  # with the reference (Keras) argmax; None without a reference
    max_abs_logit_diff: float | None
    runtime: RuntimeInfo

    @property
    def top1(self) -> float:
        return self.correct / self.samples

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "top1": self.top1}

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> ArtifactMetrics:
        fields = {key: value for key, value in document.items() if key != "top1"}
        return cls(**{**fields, "runtime": RuntimeInfo(**document["runtime"])})

    def manifest_record(self) -> dict[str, Any]:
        """manifest metrics.artifacts[<file>] (docs/architecture.md, Contracts)."""
        return {
            "top1": self.top1, "agreement": self.agreement, "bytes": self.bytes,
            "precision": self.precision, "format": self.format,
            "max_abs_logit_diff": self.max_abs_logit_diff,
        }


@dataclass(frozen=True)
class ValidateResult:
    keras_correct: int
    samples: int
    artifacts: tuple[ArtifactMetrics, ...]
    machine: dict[str, Any]  # the CPU whose kernels gave these numbers

    @property
    def keras_top1(self) -> float:
        return self.keras_correct / self.samples

    def to_dict(self) -> dict[str, Any]:
        return {
            "keras_top1": self.keras_top1,
            "keras_correct": self.keras_correct,
            "samples": self.samples,
            "artifacts": [artifact.to_dict() for artifact in self.artifacts],
            "machine": self.machine,
        }

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> ValidateResult:
        return cls(
            int(document["keras_correct"]), int(document["samples"]),
            tuple(ArtifactMetrics.from_dict(a) for a in document["artifacts"]),
            dict(document["machine"]),
        )

    def manifest_metrics(self) -> dict[str, dict[str, Any]]:
        return {artifact.file: artifact.manifest_record() for artifact in self.artifacts}

    @property
    def headline(self) -> str:
        return f"keras {self.keras_top1:.4f}; " + ", ".join(
            f"{a.file} {a.top1:.4f}" for a in self.artifacts
        )


@dataclass(frozen=True)
class _Run:
    logits: np.ndarray
    precision: str
    runtime: RuntimeInfo


def _run_tflite_file(path: Path, x: np.ndarray) -> _Run:
    interpreter, runtime = load_tflite_interpreter(path)  # verifies the flatbuffer
    logits = run_interpreter(interpreter, x)
    return _Run(logits, tflite_precision(path.read_bytes(), label=str(path)), runtime)


def _run_onnx_file(path: Path, x: np.ndarray) -> _Run:
    model = check_onnx(path.read_bytes(), str(path))
    session, runtime = load_onnx_session(path)
    return _Run(run_onnx(session, x), onnx_precision(model), runtime)


RUNNERS: dict[str, Callable[[Path, np.ndarray], _Run]] = {
    "tflite": _run_tflite_file,
    "onnx": _run_onnx_file,
}


def _check_samples(x: np.ndarray, y: np.ndarray) -> None:
    if len(x) == 0 or len(x) != len(y):
        raise ArtifactError(
            f"validation needs matching, non-empty inputs and labels; got {len(x)} inputs "
            f"and {len(y)} labels (hint: check the test split)"
        )


def validate_artifact(
    path: Path, x: np.ndarray, y: np.ndarray, reference_logits: np.ndarray | None = None
) -> ArtifactMetrics:
    """Metrics of one .tflite/.onnx file on (x, y); ArtifactError if it cannot be run."""
    path = Path(path)
    artifact_format = format_of(path)
    if not path.is_file():
        raise ArtifactError(f"artifact {path} does not exist (hint: run the export stage)")
    if path.stat().st_size == 0:
        raise ArtifactError(f"artifact {path} is empty (hint: re-run the export stage)")
    _check_samples(x, y)
    run = RUNNERS[artifact_format](path, np.asarray(x, np.float32))
    if run.logits.shape[0] != len(x) or run.logits.ndim != 2:
        raise ArtifactError(
            f"{path.name} returned logits of shape {run.logits.shape}; expected "
            f"({len(x)}, classes) (hint: export a classifier that returns logits)"
        )
    predictions = run.logits.argmax(axis=1)
    agreement = difference = None
    if reference_logits is not None:
        agreement = float(np.mean(predictions == reference_logits.argmax(axis=1)))
        difference = float(np.max(np.abs(run.logits - reference_logits)))
    correct = int(np.sum(predictions == np.asarray(y)))
    return ArtifactMetrics(
        path.name, artifact_format, run.precision, path.stat().st_size, len(x), correct,
        agreement, difference, run.runtime,
    )


def _check_unchanged(path: Path, expected_sha256: str) -> None:
    if not path.is_file():
        raise ArtifactError(f"artifact {path} is missing (hint: re-run the export stage)")
    actual = sha256_file(path)
    if actual != expected_sha256:
        raise ArtifactError(
            f"artifact {path} changed since export: sha256 {actual[:12]}..., expected "
            f"{expected_sha256[:12]}... (hint: re-run the export stage)"
        )


def allowed_drop_images(max_accuracy_drop: float, samples: int) -> int:
    """Whole images a drop of `max_accuracy_drop` points allows, in exact decimal arithmetic
    (the limit as written: 1.0 point of 1,000 images is 10, not 9.999999999999998)."""
    return floor(Fraction(str(max_accuracy_drop)) * samples / 100)


def _failures(
    config: ValidateConfig, keras_correct: int, metrics: ArtifactMetrics
) -> list[str]:
    failures = []
    dropped = keras_correct - metrics.correct
    allowed = allowed_drop_images(config.max_accuracy_drop, metrics.samples)
    keras_top1 = keras_correct / metrics.samples
    if dropped > allowed:
        failures.append(
            f"{metrics.file} top-1 {metrics.top1:.4f} vs Keras {keras_top1:.4f}: a drop of "
            f"{dropped} of {metrics.samples} images ({dropped * 100 / metrics.samples:.2f} "
            f"points), more than validate.max_accuracy_drop = {config.max_accuracy_drop} "
            f"({allowed} images)"
        )
    kind = artifact_kind(metrics.format, metrics.precision)
    if (kind is not None and kind.float_arithmetic and metrics.agreement is not None
            and metrics.agreement < config.min_float_agreement):
        failures.append(
            f"{metrics.file} ({metrics.precision}) agrees with Keras on {metrics.agreement:.4f} "
            f"of predictions (top-1 {metrics.top1:.4f} vs Keras {keras_top1:.4f}), less than "
            f"validate.min_float_agreement = {config.min_float_agreement}"
        )
    return failures


def run_validate(
    config: ValidateConfig, model: Any, artifacts_dir: Path, export: ExportResult,
    x_test: np.ndarray, y_test: np.ndarray,
) -> ValidateResult:
    """Validate every artifact of `export`; ValidationError listing all that fail."""
    _check_samples(x_test, y_test)
    x_test = np.asarray(x_test, np.float32)
    reference = np.asarray(model.predict(x_test, batch_size=KERAS_BATCH, verbose=0), np.float32)
    keras_correct = int(np.sum(reference.argmax(axis=1) == np.asarray(y_test)))
    results = []
    for exported in steps(export.artifacts, "validate", (a.file for a in export.artifacts)):
        path = Path(artifacts_dir) / exported.file
        _check_unchanged(path, exported.sha256)
        metrics = validate_artifact(path, x_test, y_test, reference)
        # The export record knows the intended precision; trust it over the inspection.
        results.append(replace(metrics, precision=exported.precision))
    failures = [f for m in results for f in _failures(config, keras_correct, m)]
    if failures:
        raise ValidationError(
            "artifact validation failed: " + "; ".join(failures)
            + " (hint: more representative samples (export.representative_samples), a "
            "float precision, or a looser validate limit)"
        )
    return ValidateResult(keras_correct, len(x_test), tuple(results), cpu_facts())


def validate_stage(model_stage: str = "student") -> Any:
    """The runner's Stage: validate the export stage's artifacts against the model saved by
    `model_stage` on the test split."""

    def run(context: StageContext) -> dict[str, Any]:
        export_entry = context.upstream["export"]
        result = run_validate(
            context.config.validate, load_model(context.upstream[model_stage].path),
            export_entry.path, ExportResult.from_dict(export_entry.record),
            context.dataset.x_test, context.dataset.y_test,
        )
        return {**result.to_dict(), "manifest_metrics": result.manifest_metrics()}

    return Stage(
        name="validate", version=int(STAGE_VERSION), sections=("validate",),
        upstream=(model_stage, "export"), run=run,
        headline=lambda record: ValidateResult.from_dict(record).headline,
    )
