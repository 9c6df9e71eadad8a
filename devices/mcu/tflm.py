"""TensorFlow Lite Micro itself, on the host: the referee of the microcontroller target.

Readiness's op list, the greedy memory plan and the generated C kernels are this project's
own account of what TFLite Micro does. The PyPI wheel `tflite-micro` is the real thing
(the C++ interpreter, allocator and reference kernels a firmware links), so its word
settles three questions: does it load and allocate the model, which op does it lack when it
cannot, and how many arena bytes does it use. `tflm_outputs` runs samples through it, to be
held against LiteRT's reference kernels bit for bit.

What the wheel (0.dev20261023) offers, found by reading its runtime.py and trying it:
- `runtime.Interpreter.from_bytes(model, arena_size=...)` allocates tensors in the
  constructor; when it cannot, it raises a bare RuntimeError("TFLM failed to allocate
  tensors") and the reason goes to the C++ side's stderr (MicroPrintf), e.g.
  "Didn't find op for builtin opcode 'GELU'" then "Failed to get registration from op code
  GELU" (a missing custom op only gets the second line, naming CUSTOM).
- No call returns the arena's used bytes: MicroInterpreter::arena_used_bytes() is not bound.
  `print_allocations()` writes the RecordingMicroAllocator's account to stderr, "Arena
  allocation total N bytes", split into "head" (non-persistent: the planned tensor buffers
  and scratch) and "tail" (persistent: interpreter structures, tensor metadata, per-op data).
- `set_input`, `invoke`, `get_output`, `get_input_details`/`get_output_details`, `reset`.
So the C++ text is captured at the file-descriptor level and parsed, which also keeps it
out of the CLI's output.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from devices.base import DeviceError

# An arena too small for the model crashes this wheel (a segfault once a tail allocation
# fails) instead of raising, so the capacity is far above what any microcontroller has.
# Untouched pages are never committed, so the size costs nothing.
ARENA_CAPACITY = 64 * 1024 * 1024

_MISSING_BUILTIN = re.compile(r"Didn't find op for builtin opcode '([A-Za-z0-9_]+)'")
_MISSING_REGISTRATION = re.compile(r"Failed to get registration from op code ([A-Za-z0-9_]+)")
_ARENA_LINE = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")
_ARENA_SOURCE = ("the 'Arena allocation total' line print_allocations() writes to stderr "
                 "(the wheel binds no arena_used_bytes() call)")


@dataclass(frozen=True)
class TflmVerdict:
    runs: bool  # TFLite Micro loaded the model and allocated its tensors
    missing_op: str | None  # the op its resolver has no kernel for
    arena_bytes: int | None  # arena TFLite Micro reports as used (head + tail)
    arena_head_bytes: int | None  # non-persistent: planned tensor buffers and scratch
    arena_tail_bytes: int | None  # persistent: interpreter, tensor metadata, per-op data
    error: str | None  # TFLite Micro's own messages when it refused
    note: str  # where arena_bytes came from, or why it is missing

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CapturedOutput:
    text: str = ""  # filled when the capture ends


def tflm_installed() -> bool:
    """The wheel exists for Linux x86-64 only (pyproject's marker); elsewhere it is absent."""
    import importlib.util

    return importlib.util.find_spec("tflite_micro") is not None


def tflm_runtime() -> ModuleType:
    try:
        from tflite_micro.python.tflite_micro import runtime  # deferred: loads a C++ library
    except ImportError as exc:
        raise DeviceError(
            f"TensorFlow Lite Micro's Python interpreter cannot be imported ({exc}); it "
            "referees the microcontroller target (hint: pip install tflite-micro)"
        ) from exc
    return runtime


def _flush_everything() -> None:
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    try:  # C stdio buffers too, so their text lands on the right side of a dup2
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # pragma: no cover - no libc symbols to reach
        pass


@contextmanager
def captured_native_output() -> Iterator[CapturedOutput]:
    """Send file descriptors 1 and 2 to a temp file: C++ writes bypass sys.stdout/stderr."""
    captured = CapturedOutput()
    _flush_everything()
    with tempfile.TemporaryFile() as sink:
        saved = {descriptor: os.dup(descriptor) for descriptor in (1, 2)}
        try:
            for descriptor in saved:
                os.dup2(sink.fileno(), descriptor)
            yield captured
        finally:
            _flush_everything()
            for descriptor, copy in saved.items():
                os.dup2(copy, descriptor)
                os.close(copy)
            sink.seek(0)
            captured.text = sink.read().decode("utf-8", errors="replace")


def _model_bytes(model: Path | bytes) -> bytes:
    if isinstance(model, bytes):
        return model
    try:
        return Path(model).read_bytes()
    except OSError as exc:
        raise DeviceError(f"cannot read {model} for TensorFlow Lite Micro: {exc} (hint: check "
                          "the path; the export stage writes model_int8.tflite)") from exc


def _model_name(model: Path | bytes) -> str:
    return f"a {len(model):,}-byte model" if isinstance(model, bytes) else str(model)


def _new_interpreter(runtime: ModuleType, data: bytes) -> Any:
    capacity = max(ARENA_CAPACITY, 16 * len(data))
    return runtime.Interpreter.from_bytes(data, arena_size=capacity)


# Loads a model in TFLite Micro in a child process: argv model path, arena bytes.
_CRASH_PROBE = """
import sys
from tflite_micro.python.tflite_micro import runtime
try:
    runtime.Interpreter.from_bytes(open(sys.argv[1], "rb").read(), arena_size=int(sys.argv[2]))
except RuntimeError:
    pass  # a refusal, which tflm_verdict reads in-process
"""


def tflm_crash(model: Path, timeout_s: float = 300.0) -> str | None:
    """How loading `model` kills TFLite Micro's wheel (e.g. "signal SIGABRT"), or None.

    The wheel aborts the whole process on some models (a MobileNetV2 int8 file does, with
    nothing on stderr), which no `except` can catch; a user's file is tried in a child
    first, so that becomes a refusal with an exit code instead of the CLI's death."""
    import signal
    import subprocess

    capacity = max(ARENA_CAPACITY, 16 * Path(model).stat().st_size)
    try:
        result = subprocess.run([sys.executable, "-c", _CRASH_PROBE, str(model), str(capacity)],
                                capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return f"no answer within {timeout_s:g} s"
    if result.returncode >= 0:
        return None
    try:
        return f"signal {signal.Signals(-result.returncode).name}"
    except ValueError:
        return f"signal {-result.returncode}"


def missing_op_in(text: str) -> str | None:
    """The op TFLite Micro's resolver lacks, from its own error text."""
    match = _MISSING_BUILTIN.search(text) or _MISSING_REGISTRATION.search(text)
    return match.group(1) if match else None


def arena_figures(text: str) -> dict[str, int]:
    """{'total', 'head', 'tail'} bytes from print_allocations()' text (those it printed)."""
    return {part: int(size) for part, size in _ARENA_LINE.findall(text)}


def _error_text(native: str, exc: BaseException) -> str:
    lines = [line.strip() for line in native.splitlines() if line.strip()]
    return "; ".join([*lines, str(exc)])


def tflm_verdict(model: Path | bytes) -> TflmVerdict:
    """Load and allocate `model` in TFLite Micro; name the op it lacks, or its arena use."""
    runtime = tflm_runtime()
    data = _model_bytes(model)
    with captured_native_output() as loading:
        try:
            interpreter = _new_interpreter(runtime, data)
        except RuntimeError as exc:
            interpreter, refusal = None, exc
    if interpreter is None:
        return TflmVerdict(False, missing_op_in(loading.text), None, None, None,
                           _error_text(loading.text, refusal),
                           "TFLite Micro did not allocate the model, so it reports no arena")
    with captured_native_output() as allocations:
        interpreter.print_allocations()
    arena = arena_figures(allocations.text)
    note = (f"arena_bytes is {_ARENA_SOURCE}" if "total" in arena else
            f"print_allocations() printed no 'Arena allocation total' line ({_ARENA_SOURCE}), "
            "so the arena is unknown")
    return TflmVerdict(True, None, arena.get("total"), arena.get("head"), arena.get("tail"),
                       None, note)


def tflm_outputs(model: Path | bytes, quantized_inputs: np.ndarray) -> np.ndarray:
    """Run int8 `quantized_inputs` (batch of model inputs) through TFLite Micro, one at a time.

    Rows are samples, each the flattened output tensor: the contract of reference_outputs.
    """
    runtime = tflm_runtime()
    data = _model_bytes(model)
    outputs = []
    with captured_native_output() as native:
        try:
            interpreter = _new_interpreter(runtime, data)
            source = interpreter.get_input_details(0)
            shape, dtype = tuple(int(d) for d in source["shape"]), source["dtype"]
            for sample in np.asarray(quantized_inputs):
                interpreter.set_input(sample.reshape(shape).astype(dtype), 0)
                interpreter.invoke()
                outputs.append(np.array(interpreter.get_output(0)).reshape(-1))
        except (RuntimeError, ValueError) as exc:  # ValueError: samples of the wrong shape
            failure: Exception | None = exc
        else:
            failure = None
    if failure is not None:
        raise DeviceError(
            f"TensorFlow Lite Micro cannot run {_model_name(model)}: "
            f"{_error_text(native.text, failure)} (hint: see the TFLite Micro readiness "
            "report, devices/mcu/readiness.py, for the op or allocation it refuses)"
        ) from failure
    return np.stack(outputs) if outputs else np.zeros((0, 0), dtype=np.int8)


__all__ = ["TflmVerdict", "tflm_outputs", "tflm_verdict", "tflm_crash", "captured_native_output",
           "missing_op_in", "arena_figures", "tflm_installed", "tflm_runtime", "ARENA_CAPACITY"]
