"""Load and run TFLite (LiteRT) and ONNX artifacts with whichever runtime is installed.

TFLite runtimes are tried in order of preference: `ai_edge_litert` (the maintained
LiteRT wheel), `tflite_runtime` (the old slim wheel, built against NumPy 1) and finally
`tensorflow.lite`. The loader reports which one it used and its version, so latency and
accuracy numbers can always be traced to a runtime.

Quantized artifacts take int8 inputs: `quantize_input` applies the artifact's OWN input
scale and zero point, q = clip(round(x / scale) + zero_point, dtype min, dtype max), and
`dequantize` turns int8 outputs back into float logits.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from devices.errors import ArtifactError, RuntimeNotFoundError

ModelSource = Path | str | bytes
BATCH_CHUNK = 256  # samples per invoke when the artifact has a dynamic batch dimension


@dataclass(frozen=True)
class RuntimeInfo:
    name: str
    version: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class TfliteRuntime:
    """One way to get a TFLite `Interpreter` class: the module to import and where it lives."""

    name: str
    module: str
    distribution: str  # the pip distribution that carries the version
    interpreter: Callable[[Any], Any]  # module -> Interpreter class
    op_resolver: Callable[[Any], Any]  # module -> OpResolverType enum (or None)


def _tensorflow_lite(module: Any) -> Any:
    return module.tf.lite


TFLITE_RUNTIMES: tuple[TfliteRuntime, ...] = (
    TfliteRuntime(
        "ai_edge_litert", "ai_edge_litert.interpreter", "ai-edge-litert",
        lambda module: module.Interpreter, lambda module: module.OpResolverType,
    ),
    TfliteRuntime(
        "tflite_runtime", "tflite_runtime.interpreter", "tflite-runtime",
        lambda module: module.Interpreter,
        lambda module: getattr(module, "OpResolverType", None),
    ),
    # TensorFlow is imported only through devices.tf_env (it pins the Keras flavour).
    TfliteRuntime(
        "tensorflow", "devices.tf_env", "tensorflow",
        lambda module: _tensorflow_lite(module).Interpreter,
        lambda module: _tensorflow_lite(module).experimental.OpResolverType,
    ),
)

NUMPY2_MARKERS = ("_ARRAY_API not found", "numpy.core.multiarray failed to import",
                  "compiled using NumPy 1.x")
NUMPY2_HINT = (
    "tflite_runtime was built against NumPy 1 and cannot run under NumPy "
    f"{np.__version__} (hint: `pip install ai-edge-litert`, its maintained successor, "
    "or pin `numpy<2`)"
)


class _Numpy2Incompatible(Exception):
    """tflite_runtime imported but its C extension cannot talk to NumPy 2."""


def _is_numpy2_failure(error: BaseException) -> bool:
    """Walk the exception chain: the NumPy message sits in a __cause__ / __context__."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if any(marker in str(current) for marker in NUMPY2_MARKERS):
            return True
        current = current.__cause__ or current.__context__
    return False


def _version(distribution: str, module: Any) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return str(getattr(module, "__version__", "unknown"))


def _model_arguments(model: ModelSource) -> dict[str, Any]:
    if isinstance(model, bytes | bytearray):
        return {"model_content": bytes(model)}
    path = Path(model)
    if not path.is_file():
        raise ArtifactError(
            f"TFLite model {path} does not exist (hint: run the export stage first)"
        )
    return {"model_path": str(path)}


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:1000]


def _describe(model: ModelSource) -> str:
    return "in-memory model" if isinstance(model, bytes | bytearray) else str(model)


def _create_interpreter(
    runtime: TfliteRuntime, module: Any, model: ModelSource, threads: int,
    reference_kernels: bool,
) -> Any:
    arguments: dict[str, Any] = {**_model_arguments(model), "num_threads": threads}
    if reference_kernels:
        resolver = runtime.op_resolver(module)
        if resolver is None:
            raise RuntimeNotFoundError(
                f"{runtime.name} cannot select the reference kernels "
                "(hint: install ai-edge-litert)"
            )
        arguments["experimental_op_resolver_type"] = resolver.BUILTIN_REF
    try:
        interpreter = runtime.interpreter(module)(**arguments)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError, SystemError, ImportError, AttributeError) as exc:
        if _is_numpy2_failure(exc):
            raise _Numpy2Incompatible(str(exc)) from exc
        raise ArtifactError(
            f"{_describe(model)} is not a loadable TFLite model: {_one_line(exc)} "
            "(hint: the file is corrupt or truncated; re-run the export stage)"
        ) from exc
    return interpreter


def load_tflite_interpreter(
    model: ModelSource, threads: int = 1, reference_kernels: bool = False,
    runtimes: tuple[TfliteRuntime, ...] = TFLITE_RUNTIMES,
) -> tuple[Any, RuntimeInfo]:
    """An allocated interpreter for `model` (a path or the flatbuffer bytes) and its runtime.

    `reference_kernels` selects the portable reference kernels (BUILTIN_REF) instead of
    the optimised ones; they are slower but bit-exact with TFLite Micro's.
    """
    failures: list[str] = []
    numpy2_failure = False
    for runtime in runtimes:
        try:
            module = importlib.import_module(runtime.module)
        except ImportError as exc:
            numpy2_failure |= _is_numpy2_failure(exc)
            failures.append(f"{runtime.name}: {exc}")
            continue
        try:
            interpreter = _create_interpreter(runtime, module, model, threads, reference_kernels)
        except _Numpy2Incompatible as exc:
            numpy2_failure = True
            failures.append(f"{runtime.name}: {exc}")
            continue
        return interpreter, RuntimeInfo(runtime.name, _version(runtime.distribution, module))
    tried = ", ".join(runtime.name for runtime in runtimes)
    if numpy2_failure:
        raise RuntimeNotFoundError(
            f"no usable TFLite runtime (tried {tried}): {NUMPY2_HINT}; details: "
            + "; ".join(failures)
        )
    raise RuntimeNotFoundError(
        f"no TFLite runtime is importable (tried {tried}): {'; '.join(failures)} "
        "(hint: `pip install ai-edge-litert`)"
    )


def quantize_input(x: np.ndarray, scale: float, zero_point: int, dtype: Any) -> np.ndarray:
    """Float -> integer with the artifact's own parameters, saturating at the dtype's range."""
    if scale <= 0:
        raise ArtifactError(
            f"input quantization scale is {scale}; expected a positive number "
            "(hint: the artifact is not a fully quantized model)"
        )
    limits = np.iinfo(dtype)
    quantized = np.round(np.asarray(x, np.float32) / np.float32(scale)) + zero_point
    return np.clip(quantized, limits.min, limits.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return ((np.asarray(q).astype(np.float32) - np.float32(zero_point)) * np.float32(scale))


def _single_detail(details: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    if len(details) != 1:
        raise ArtifactError(
            f"the TFLite model has {len(details)} {kind}s; expected exactly one "
            "(hint: export a single-input classifier)"
        )
    return details[0]


def _prepare_input(detail: dict[str, Any], x: np.ndarray) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if np.issubdtype(dtype, np.integer):
        scale, zero_point = detail["quantization"]
        return quantize_input(x, scale, zero_point, dtype)
    return np.asarray(x, dtype)


def _read_output(detail: dict[str, Any], raw: np.ndarray) -> np.ndarray:
    if np.issubdtype(np.dtype(detail["dtype"]), np.integer):
        scale, zero_point = detail["quantization"]
        return dequantize(raw, scale, zero_point)
    return raw.astype(np.float32)


def _resize_batch(interpreter: Any, detail: dict[str, Any], batch: int) -> None:
    if int(interpreter.get_input_details()[0]["shape"][0]) != batch:
        interpreter.resize_tensor_input(detail["index"], [batch, *detail["shape"][1:]])
        interpreter.allocate_tensors()


def run_tflite(interpreter: Any, x: np.ndarray) -> np.ndarray:
    """Float logits for a batch of float inputs (quantised / dequantised as the model needs)."""
    input_detail = _single_detail(interpreter.get_input_details(), "input")
    _single_detail(interpreter.get_output_details(), "output")
    signature = input_detail.get("shape_signature", input_detail["shape"])
    chunk = BATCH_CHUNK if len(signature) and int(signature[0]) == -1 else 1
    results = []
    for start in range(0, len(x), chunk):
        batch = _prepare_input(input_detail, x[start : start + chunk])
        if chunk > 1:
            _resize_batch(interpreter, input_detail, len(batch))
        interpreter.set_tensor(input_detail["index"], batch)
        interpreter.invoke()
        output_detail = interpreter.get_output_details()[0]
        results.append(_read_output(output_detail, interpreter.get_tensor(output_detail["index"])))
    return np.concatenate(results, axis=0)


def load_onnx_session(model: ModelSource, threads: int = 1) -> tuple[Any, RuntimeInfo]:
    """An onnxruntime CPU session for `model` (a path or the serialised bytes)."""
    try:
        import onnxruntime  # deferred: only ONNX artifacts need it
    except ImportError as exc:
        raise RuntimeNotFoundError(
            f"onnxruntime is not importable: {exc} (hint: `pip install onnxruntime`)"
        ) from exc
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    source = bytes(model) if isinstance(model, bytes | bytearray) else str(model)
    if not isinstance(model, bytes | bytearray) and not Path(model).is_file():
        raise ArtifactError(f"ONNX model {model} does not exist (hint: run the export stage)")
    try:
        session = onnxruntime.InferenceSession(
            source, sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own pybind exception types
        raise ArtifactError(
            f"{_describe(model)} is not a loadable ONNX model: {_one_line(exc)} "
            "(hint: the file is corrupt or truncated; re-run the export stage)"
        ) from exc
    return session, RuntimeInfo("onnxruntime", onnxruntime.__version__)


def run_onnx(model: ModelSource | Any, x: np.ndarray) -> np.ndarray:
    """Float logits from an ONNX model given as a path, bytes or a loaded session."""
    session = model if hasattr(model, "get_inputs") else load_onnx_session(model)[0]
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].type != "tensor(float)":
        raise ArtifactError(
            f"the ONNX model has inputs {[(i.name, i.type) for i in inputs]}; expected one "
            "float tensor (hint: export with tf2onnx and a single input_signature)"
        )
    (logits,) = session.run([session.get_outputs()[0].name], {inputs[0].name: x.astype(np.float32)})
    return np.asarray(logits, np.float32)
