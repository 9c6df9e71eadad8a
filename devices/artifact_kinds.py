"""The artifact kinds: which (format, precision) pairs exist and the file each becomes.

One registry (docs/architecture.md, Contracts: the bundle) from which the export plan,
the validation rules, the target profiles' artifact files and the study's artifact per
target all derive. The converters and inspectors that make and read each kind live in
pipeline/stages/export.py, keyed by these kinds (a test holds the two together).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from devices.errors import ArtifactError

C_SOURCES = "model"  # the generated C folder of a microcontroller bundle (format "c")


@dataclass(frozen=True)
class ArtifactKind:
    format: str  # "tflite" | "onnx"
    precision: str  # "fp32" | "fp16" | "dynamic" | "int8"
    file: str
    float_arithmetic: bool  # float end to end: must agree with Keras closely

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> ArtifactKind:
        kind = artifact_kind(document.get("format", ""), document.get("precision", ""))
        if kind is None or kind.to_dict() != document:
            raise ArtifactError(f"{document!r} is not an artifact kind; expected one of "
                                f"{', '.join(k.file for k in ARTIFACT_KINDS)}")
        return kind


ARTIFACT_KINDS: tuple[ArtifactKind, ...] = (
    ArtifactKind("tflite", "fp32", "model.tflite", float_arithmetic=True),
    ArtifactKind("tflite", "fp16", "model_fp16.tflite", float_arithmetic=True),
    ArtifactKind("tflite", "dynamic", "model_dynamic.tflite", float_arithmetic=False),
    ArtifactKind("tflite", "int8", "model_int8.tflite", float_arithmetic=False),
    ArtifactKind("onnx", "fp32", "model.onnx", float_arithmetic=True),
    ArtifactKind("onnx", "int8", "model_int8.onnx", float_arithmetic=False),
)
FORMATS: tuple[str, ...] = tuple(dict.fromkeys(kind.format for kind in ARTIFACT_KINDS))
PRECISIONS: tuple[str, ...] = tuple(dict.fromkeys(kind.precision for kind in ARTIFACT_KINDS))
FORMAT_SUFFIXES: dict[str, str] = {f".{name}": name for name in FORMATS}


def artifact_kind(artifact_format: str, precision: str) -> ArtifactKind | None:
    """The kind, or None when the format has no such precision (e.g. ONNX fp16)."""
    return next((kind for kind in ARTIFACT_KINDS
                 if (kind.format, kind.precision) == (artifact_format, precision)), None)


def format_of(path: Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMAT_SUFFIXES:
        raise ArtifactError(
            f"{path} is not a model artifact; expected a file ending in "
            f"{' or '.join(FORMAT_SUFFIXES)}"
        )
    return FORMAT_SUFFIXES[suffix]


def model_file(artifact_format: str, precision: str) -> str:
    """The file a target of this format and precision is built from: its artifact, or for
    generated C sources the TFLite model of the same precision (its flash stand-in)."""
    kind = artifact_kind("tflite" if artifact_format == "c" else artifact_format, precision)
    if kind is None:
        raise ArtifactError(f"no {precision} {artifact_format} artifact exists; expected one "
                            f"of {', '.join(k.file for k in ARTIFACT_KINDS)}")
    return kind.file


def target_file(artifact_format: str, precision: str) -> str:
    """What a target runs: a model file, or the C sources folder."""
    return C_SOURCES if artifact_format == "c" else model_file(artifact_format, precision)
