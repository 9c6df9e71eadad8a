"""A user's TFLite or ONNX file, read as data: its kind (format and precision), the shape
and dtype of one input sample and its class count.

The file is untrusted, and both formats are data (a flatbuffer, a protobuf): nothing in
them runs as Python. It is loaded by this process's runtime (LiteRT, onnxruntime) and run
once on a zero input, so a file no runtime can load or run is refused here, exit 2, before
any bundle is written or any device touched. An ONNX file whose weights point at external
files is refused before onnxruntime opens anything: those paths are the file's to choose.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from devices.artifact_kinds import ArtifactKind, artifact_kind, format_of
from devices.errors import ArtifactError
from devices.fsutil import sha256_file
from devices.runtimes import load_onnx_session, load_tflite_interpreter, run_onnx, run_tflite
from devices.tflite_file import FILE_IDENTIFIER
from pipeline.conversion import tflite_inspect

# One NHWC sample: the bundle contract carries images (devices/schemas: input.layout).
SAMPLE_RANK = 3
LOAD_HINT = "pass the model file as it was exported; a truncated or re-encoded copy is refused"


@dataclass(frozen=True)
class ArtifactFile:
    """A staged copy of the user's file (`path`) and what was read from it."""

    path: Path
    name: str  # the user's file name (never its folder: manifests are uploaded by CI)
    kind: ArtifactKind
    input_shape: tuple[int, ...]  # one sample, without the batch dimension
    input_dtype: str  # "float32", or "int8"/"uint8" with `input_quantization`
    input_quantization: tuple[float, int] | None  # (scale, zero point) of an integer input
    classes: int
    weight_bytes: int

    def to_dict(self) -> dict[str, Any]:
        """metrics.model_file of a bundle built from the file."""
        return {
            "file": self.name, "sha256": sha256_file(self.path),
            "bytes": self.path.stat().st_size, "format": self.kind.format,
            "precision": self.kind.precision, "input_shape": list(self.input_shape),
            "input_dtype": self.input_dtype, "classes": self.classes,
            "weight_bytes": self.weight_bytes,
            "note": "a user's model file: no stage of this pipeline trained, converted or "
                    "validated it",
        }


@dataclass(frozen=True)
class _Facts:
    """What one format's reader found, before the kind is named."""

    precision: str
    input_shape: tuple[Any, ...]  # as the file declares it, batch first
    input_dtype: str
    input_quantization: tuple[float, int] | None
    classes: int
    weight_bytes: int


@contextmanager
def staged_artifact(path: Path) -> Iterator[ArtifactFile]:
    """The user's file copied once into a private folder, read, and named as a target runs
    it (`model_int8.tflite`, …): what is checked is exactly what ships, even if the
    original changes meanwhile. The folder is removed on leaving."""
    source = Path(path)
    if not source.is_file():
        raise ArtifactError(f"model file {source} does not exist or is not a file (hint: pass "
                            "the path of a .tflite or .onnx file to --model)")
    artifact_format = format_of(source)
    with tempfile.TemporaryDirectory(prefix="edge-model-") as scratch:
        staged = Path(scratch) / f"staged{source.suffix.lower()}"
        shutil.copyfile(source, staged)
        facts = READERS[artifact_format](staged, source.name)
        kind = artifact_kind(artifact_format, facts.precision)
        if kind is None:
            raise ArtifactError(f"{source.name} is a {facts.precision} {artifact_format} file, "
                                f"a kind this pipeline does not bundle (hint: convert it to one "
                                f"of the {artifact_format} precisions of "
                                "devices/artifact_kinds.py, e.g. fp32 or int8)")
        final = staged.rename(Path(scratch) / kind.file)
        yield ArtifactFile(final, source.name, kind, _sample_shape(source.name, facts.input_shape),
                        facts.input_dtype, facts.input_quantization, facts.classes,
                        facts.weight_bytes)


def _sample_shape(name: str, declared: tuple[Any, ...]) -> tuple[int, ...]:
    """(height, width, channels) of one sample: the runners feed one sample at a time, so
    the batch dimension must be 1 or free, and every other one fixed."""
    if len(declared) != SAMPLE_RANK + 1:
        raise ArtifactError(f"{name} takes a {len(declared)}-D input {list(declared)}; bundles "
                            "carry images, batch x height x width x channels (hint: profile "
                            "an image model, or export this one with a 4-D NHWC input)")
    batch, *sample = declared
    if batch not in (1, -1, None) and not isinstance(batch, str):
        raise ArtifactError(f"{name} takes batches of {batch}; the runners feed one sample at "
                            "a time (hint: export it with batch 1 or a dynamic batch)")
    free = [index for index, size in enumerate(sample, 1)
            if not isinstance(size, int | np.integer) or size < 1]
    if free:
        raise ArtifactError(f"{name}'s input {list(declared)} leaves dimension(s) {free} free; "
                            "a bundle needs fixed sample sizes (hint: export it with a fixed "
                            "input shape)")
    return tuple(int(size) for size in sample)


def _classes(name: str, outputs: np.ndarray) -> int:
    classes = int(np.asarray(outputs).reshape(len(outputs), -1).shape[1])
    if classes < 2:
        raise ArtifactError(f"{name} gives {classes} output value(s) per sample; a bundle "
                            "profiles a classifier, whose top-1 is the largest of at least "
                            "two (hint: profile a classification model)")
    return classes


def _one_input_and_output(name: str, inputs: int, outputs: int) -> None:
    if (inputs, outputs) != (1, 1):
        raise ArtifactError(f"{name} has {inputs} input(s) and {outputs} output(s); the "
                            "runners feed one input and read one output (hint: export a "
                            "single-input, single-output classifier)")


def _reloaded_error(name: str, runtime: str, error: ArtifactError) -> ArtifactError:
    cause = error.__cause__ if error.__cause__ is not None else error
    return ArtifactError(f"{name} cannot be loaded by {runtime}: "
                         f"{' '.join(str(cause).split())[:800]} (hint: {LOAD_HINT})")


def _run_once(name: str, runtime: str, run: Callable[[], np.ndarray]) -> np.ndarray:
    try:
        return run()
    except ArtifactError:
        raise
    except Exception as error:  # noqa: BLE001 - the runtime's own error types, named below
        raise ArtifactError(f"{name} loads but {runtime} cannot run it: "
                            f"{' '.join(str(error).split())[:800]} (hint: an op the runtime "
                            "lacks or a malformed graph; check the file on its own first)"
                            ) from error


def _read_tflite(path: Path, name: str) -> _Facts:
    content = path.read_bytes()
    if content[4:8] != FILE_IDENTIFIER:  # a file of another format stops here
        raise ArtifactError(f"{name} is not a TFLite flatbuffer: bytes 4-8 are {content[4:8]!r}, "
                            f"expected {FILE_IDENTIFIER!r} (hint: {LOAD_HINT})")
    try:
        interpreter, _ = load_tflite_interpreter(content)
    except ArtifactError as error:
        raise _reloaded_error(name, "LiteRT", error) from error
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    _one_input_and_output(name, len(inputs), len(outputs))
    detail = inputs[0]
    declared = tuple(int(size) for size in detail.get("shape_signature", detail["shape"]))
    dtype = np.dtype(detail["dtype"])
    quantization = None
    if np.issubdtype(dtype, np.integer):
        scale, zero_point = detail["quantization"]
        if dtype not in (np.int8, np.uint8) or scale <= 0:
            raise ArtifactError(f"{name} takes {dtype.name} inputs without a quantization "
                                "scale; bundles carry images, float or int8/uint8 quantized "
                                "(hint: export it with a float or quantized image input)")
        quantization = (float(scale), int(zero_point))
    sample = np.zeros((1, *_sample_shape(name, declared)), np.float32)
    outputs_once = _run_once(name, "LiteRT", lambda: run_tflite(interpreter, sample))
    return _Facts(tflite_inspect.tflite_precision(content, name), declared, dtype.name,
                  quantization, _classes(name, outputs_once),
                  tflite_inspect.constant_bytes(content, name))


def _read_onnx(path: Path, name: str) -> _Facts:
    import onnx  # deferred: only ONNX files need the protobuf reader
    from onnx.external_data_helper import uses_external_data

    from pipeline.conversion import onnx_inspect

    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except Exception as error:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise ArtifactError(f"{name} is not an ONNX model: {' '.join(str(error).split())[:300]} "
                            f"(hint: {LOAD_HINT})") from error
    external = [tensor.name for tensor in model.graph.initializer if uses_external_data(tensor)]
    if external:
        raise ArtifactError(f"{name} keeps weights in external files ({', '.join(external[:5])}"
                            "); a bundle ships one self-contained file (hint: save it with "
                            "onnx.save(model, path, save_as_external_data=False))")
    try:
        session, _ = load_onnx_session(path.read_bytes())
    except ArtifactError as error:
        raise _reloaded_error(name, "onnxruntime", error) from error
    inputs, outputs = session.get_inputs(), session.get_outputs()
    _one_input_and_output(name, len(inputs), len(outputs))
    if inputs[0].type != "tensor(float)":
        raise ArtifactError(f"{name} takes a {inputs[0].type} input; bundles feed float "
                            "images (hint: export it with a float input; int8 ONNX is QDQ, "
                            "float at its edges)")
    declared = tuple(size if isinstance(size, int) else None for size in inputs[0].shape)
    sample = np.zeros((1, *_sample_shape(name, declared)), np.float32)
    outputs_once = _run_once(name, "onnxruntime", lambda: run_onnx(session, sample))
    return _Facts(onnx_inspect.onnx_precision(model), declared, "float32", None,
                  _classes(name, outputs_once), onnx_inspect.constant_bytes(model))


# artifact format -> its reader (devices/artifact_kinds.py names the formats)
READERS: dict[str, Callable[[Path, str], _Facts]] = {
    "tflite": _read_tflite,
    "onnx": _read_onnx,
}
