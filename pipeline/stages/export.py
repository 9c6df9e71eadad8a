"""Export stage: the final Keras model -> every (format x precision) artifact asked for.

Every artifact is converted and checked in memory first; files are written (each one
atomically) only when all conversions succeeded, so a failed export leaves the output
folder as it was.

An upstream stage may supply an artifact already converted: with `quantize.method = "qat"`
the int8 TFLite file comes from the QAT stage (pipeline/stages/qat.py), converted from the
model it fine-tuned with fake quantization. The int8 ONNX file is post-training quantized
either way: QAT's wrappers learn 8-bit weights, and onnxruntime's int8 GEMM saturates 8-bit
weights on AVX2 without VNNI, which `export.onnx_int8 = "portable"` exists to avoid (README,
"int8 ONNX on every CPU").
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from devices.artifact_kinds import ARTIFACT_KINDS, artifact_kind
from devices.bench_runner import cpu_facts
from devices.errors import ExportError
from devices.fsutil import atomic_write_bytes
from pipeline.cache import CacheEntry
from pipeline.config import ExportConfig
from pipeline.conversion import onnx_inspect, tflite_inspect
from pipeline.conversion.onnx_int8_schemes import ONNX_INT8_SCHEMES
from pipeline.conversion.quantization import Quantization
from pipeline.conversion.strip_wrappers import strip_training_wrappers
from pipeline.progress import steps
from pipeline.stage import Stage, StageContext, load_model

STAGE_VERSION = "3"


@dataclass(frozen=True)
class ExportedArtifact:
    file: str
    format: str
    precision: str
    bytes: int
    weight_bytes: int  # constant tensor data; the rest of `bytes` is format overhead
    sha256: str
    input_quantization: Quantization | None
    output_quantization: Quantization | None
    seconds: float
    # The quantization settings and why they were chosen, where the format has a choice.
    scheme: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> ExportedArtifact:
        def quantization(value: dict[str, Any] | None) -> Quantization | None:
            return None if value is None else Quantization.from_dict(value)

        return cls(**{
            **document,
            "input_quantization": quantization(document["input_quantization"]),
            "output_quantization": quantization(document["output_quantization"]),
        })


@dataclass(frozen=True)
class SkippedExport:
    format: str
    precision: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ExportResult:
    artifacts: tuple[ExportedArtifact, ...]
    skipped: tuple[SkippedExport, ...]
    representative_samples: int
    machine: dict[str, Any]  # the converting CPU (bench_runner.cpu_facts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "artifacts": [artifact.to_dict() for artifact in self.artifacts],
            "skipped": [skip.to_dict() for skip in self.skipped],
            "representative_samples": self.representative_samples,
            "machine": self.machine,
        }

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> ExportResult:
        return cls(
            tuple(ExportedArtifact.from_dict(a) for a in document["artifacts"]),
            tuple(SkippedExport(**s) for s in document["skipped"]),
            int(document["representative_samples"]), dict(document["machine"]),
        )

    def artifact(self, file: str) -> ExportedArtifact:
        for artifact in self.artifacts:
            if artifact.file == file:
                return artifact
        raise ExportError(
            f"artifact {file} was not exported; exported: "
            f"{', '.join(a.file for a in self.artifacts) or 'none'} "
            "(hint: add its format and precision to [export] formats/precisions)"
        )

    @property
    def headline(self) -> str:
        return ", ".join(f"{a.file} {a.bytes / 1024:.1f} KB" for a in self.artifacts)


@dataclass(frozen=True)
class _Converted:
    content: bytes
    seconds: float


@dataclass(frozen=True)
class SuppliedArtifact:
    """An artifact an upstream stage converted: its bytes replace the export's own."""

    content: bytes
    scheme: dict[str, Any]  # how it was quantized: the record's `scheme`
    seconds: float


Supplied = dict[tuple[str, str], SuppliedArtifact]  # (format, precision) -> artifact


class _Conversions:
    """Converts lazily and remembers results: int8 ONNX reuses the float ONNX bytes."""

    def __init__(self, config: ExportConfig, model: Any, representative: np.ndarray,
                 supplied: Supplied | None = None) -> None:
        self.config = config
        self.model = model
        self.representative = representative
        self._done: dict[tuple[str, str], _Converted] = {
            key: _Converted(artifact.content, artifact.seconds)
            for key, artifact in (supplied or {}).items()
        }

    def get(self, artifact_format: str, precision: str) -> _Converted:
        key = (artifact_format, precision)
        if key not in self._done:
            started = time.perf_counter()
            content = CONVERTERS[key](self)
            self._done[key] = _Converted(content, time.perf_counter() - started)
        return self._done[key]


def _tflite(precision: str) -> Callable[[_Conversions], bytes]:
    def convert(conversions: _Conversions) -> bytes:
        from pipeline.conversion.tflite_converter import convert_tflite  # deferred: TF

        return convert_tflite(conversions.model, precision, conversions.representative)

    return convert


def _onnx_fp32(conversions: _Conversions) -> bytes:
    from pipeline.conversion.onnx_converter import convert_onnx  # deferred: tf2onnx

    return convert_onnx(conversions.model, conversions.config.opset)


def _onnx_int8(conversions: _Conversions) -> bytes:
    from pipeline.conversion.onnx_quantize import quantize_onnx_int8  # deferred: ORT tools

    return quantize_onnx_int8(
        conversions.get("onnx", "fp32").content, conversions.representative,
        ONNX_INT8_SCHEMES[conversions.config.onnx_int8],
    )


CONVERTERS: dict[tuple[str, str], Callable[[_Conversions], bytes]] = {
    ("tflite", "fp32"): _tflite("fp32"),
    ("tflite", "fp16"): _tflite("fp16"),
    ("tflite", "dynamic"): _tflite("dynamic"),
    ("tflite", "int8"): _tflite("int8"),
    ("onnx", "fp32"): _onnx_fp32,
    ("onnx", "int8"): _onnx_int8,
}


def _no_quantization(content: bytes) -> tuple[Quantization | None, Quantization | None]:
    # int8 ONNX is QDQ: its inputs and outputs stay float.
    return None, None


IO_QUANTIZATION: dict[str, Callable[[bytes], tuple[Quantization | None, Quantization | None]]] = {
    "tflite": tflite_inspect.io_quantization,
    "onnx": _no_quantization,
}


def _scheme(config: ExportConfig, artifact_format: str, precision: str,
            supplied: Supplied) -> dict[str, Any] | None:
    if (artifact_format, precision) in supplied:
        return supplied[(artifact_format, precision)].scheme
    if (artifact_format, precision) != ("onnx", "int8"):
        return None
    return {"name": config.onnx_int8, **ONNX_INT8_SCHEMES[config.onnx_int8].to_dict()}


def _onnx_constant_bytes(content: bytes) -> int:
    return onnx_inspect.constant_bytes(onnx.load_from_string(content))


CONSTANT_BYTES: dict[str, Callable[[bytes], int]] = {
    "tflite": tflite_inspect.constant_bytes,
    "onnx": _onnx_constant_bytes,
}


def representative_subset(
    representative: np.ndarray, count: int, input_shape: tuple[int, ...]
) -> np.ndarray:
    """The first `count` samples, checked against the model's input shape."""
    samples = np.asarray(representative)
    if samples.ndim == 0 or len(samples) == 0:
        raise ExportError(
            "the representative dataset is empty; expected at least one training sample "
            "(hint: check the data split, export.representative_samples must be >= 1)"
        )
    if tuple(samples.shape[1:]) != tuple(input_shape):
        raise ExportError(
            f"representative samples have shape {tuple(samples.shape[1:])}; expected the "
            f"model's input shape {tuple(input_shape)} (hint: pass normalised training inputs)"
        )
    if not np.all(np.isfinite(samples[:count])):
        raise ExportError(
            "the representative dataset contains NaN or infinite values; expected finite "
            "normalised inputs (hint: check the data normalisation)"
        )
    return samples[:count].astype(np.float32)


def plan_exports(
    config: ExportConfig,
) -> tuple[list[tuple[str, str, str]], list[SkippedExport]]:
    """(format, precision, file) to produce, and the pairs that have no artifact."""
    planned: list[tuple[str, str, str]] = []
    skipped: list[SkippedExport] = []
    for artifact_format in config.formats:
        for precision in config.precisions:
            kind = artifact_kind(artifact_format, precision)
            if kind is None:
                reason = f"{artifact_format} has no {precision} export"
                skipped.append(SkippedExport(artifact_format, precision, reason))
            else:
                planned.append((artifact_format, precision, kind.file))
    if not planned:
        raise ExportError(
            f"no artifact to export for formats {list(config.formats)} and precisions "
            f"{list(config.precisions)} (hint: ONNX supports only fp32 and int8)"
        )
    return planned, skipped


def run_export(
    config: ExportConfig, model: Any, representative: np.ndarray, out_dir: Path,
    supplied: Supplied | None = None,
) -> ExportResult:
    """Convert `model` to every configured artifact (those in `supplied` come converted),
    verify each, then write them."""
    supplied = supplied or {}
    model = strip_training_wrappers(model)
    input_shape = tuple(int(d) for d in model.input_shape[1:])
    samples = representative_subset(representative, config.representative_samples, input_shape)
    planned, skipped = plan_exports(config)
    conversions = _Conversions(config, model, samples, supplied)
    converted = {file: conversions.get(fmt, precision)
                 for fmt, precision, file in steps(planned, "export", (p[2] for p in planned))}
    out_dir = Path(out_dir)
    artifacts = []
    for artifact_format, precision, file in planned:
        result = converted[file]
        atomic_write_bytes(out_dir / file, result.content)
        input_quantization, output_quantization = IO_QUANTIZATION[artifact_format](result.content)
        artifacts.append(ExportedArtifact(
            file, artifact_format, precision, len(result.content),
            CONSTANT_BYTES[artifact_format](result.content),
            hashlib.sha256(result.content).hexdigest(), input_quantization,
            output_quantization, round(result.seconds, 3),
            _scheme(config, artifact_format, precision, supplied),
        ))
    return ExportResult(tuple(artifacts), tuple(skipped), len(samples), cpu_facts())


def supplied_artifacts(entry: CacheEntry) -> Supplied:
    """What an upstream stage's entry supplies: `record["supplies"]` maps each artifact file
    it holds to {"scheme", "seconds"} (pipeline/stages/qat.py)."""
    supplied: Supplied = {}
    for file, details in entry.record["supplies"].items():
        kind = next((k for k in ARTIFACT_KINDS if k.file == file), None)
        if kind is None:
            raise ExportError(f"stage {entry.stage} supplies {file}, which is no artifact kind; "
                              f"expected one of {', '.join(k.file for k in ARTIFACT_KINDS)}")
        supplied[(kind.format, kind.precision)] = SuppliedArtifact(
            (entry.path / file).read_bytes(), dict(details["scheme"]), float(details["seconds"]))
    return supplied


def export_stage(model_stage: str = "student", supplier: str | None = None) -> Any:
    """The runner's Stage: export the model saved by `model_stage` (e.g. "student" or the
    pruning stage's name), calibrated on the training split; the artifacts the `supplier`
    stage holds (the QAT stage's int8 TFLite file) are shipped as it converted them."""

    def run(context: StageContext) -> dict[str, Any]:
        model = load_model(context.upstream[model_stage].path)
        supplied = supplied_artifacts(context.upstream[supplier]) if supplier else {}
        return run_export(
            context.config.export, model, context.dataset.x_train, context.out_dir, supplied
        ).to_dict()

    return Stage(
        name="export", version=int(STAGE_VERSION), sections=("export",),
        upstream=(model_stage,) if supplier is None else (model_stage, supplier), run=run,
        headline=lambda record: ExportResult.from_dict(record).headline,
    )
