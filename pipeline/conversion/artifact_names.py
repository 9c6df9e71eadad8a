"""Which artifact file each (format, precision) pair becomes, and which pairs exist.

The names are part of the bundle contract (see devices/base.py TargetProfile.artifact_file).
"""

from __future__ import annotations

from pathlib import Path

from devices.errors import ArtifactError

ARTIFACT_FILES: dict[tuple[str, str], str] = {
    ("tflite", "fp32"): "model.tflite",
    ("tflite", "fp16"): "model_fp16.tflite",
    ("tflite", "dynamic"): "model_dynamic.tflite",
    ("tflite", "int8"): "model_int8.tflite",
    ("onnx", "fp32"): "model.onnx",
    ("onnx", "int8"): "model_int8.onnx",
}

FORMAT_SUFFIXES: dict[str, str] = {".tflite": "tflite", ".onnx": "onnx"}

# Precisions whose arithmetic is float end to end: these must agree with Keras closely.
FLOAT_PRECISIONS = frozenset({"fp32", "fp16"})


def artifact_file(artifact_format: str, precision: str) -> str | None:
    """The file name, or None when the format has no such precision (e.g. ONNX fp16)."""
    return ARTIFACT_FILES.get((artifact_format, precision))


def format_of(path: Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMAT_SUFFIXES:
        raise ArtifactError(
            f"{path} is not a model artifact; expected a file ending in "
            f"{' or '.join(FORMAT_SUFFIXES)}"
        )
    return FORMAT_SUFFIXES[suffix]
