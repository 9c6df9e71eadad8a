#!/usr/bin/env python3
"""Time one model on this machine and print one JSON document (edge-latency-report fields).

ONE self-contained file: it is copied to devices (Raspberry Pi, emulated aarch64, host) and
run with their python3, so it needs only the standard library, numpy and whichever runtime
is importable there: ai_edge_litert or tflite_runtime for .tflite, onnxruntime for .onnx.

    python3 bench_runner.py --model model_int8.tflite --inputs inputs.npz \
        --warmup 10 --runs 50 --threads 4

stdout: {"runtime", "threads", "runs", "times_ms", "memory_mb", "cpu", "accuracy",
"outputs"}. `times_ms` holds the raw times (init, first, every warm-up and measured run):
the statistics are computed on the pipeline's side (devices/latency_stats.py), the same way
for every target. `runtime.delegate` is what the runtime ran the graph with. `outputs`
holds the raw output tensors of every bundled sample (their dtype, shape, sha256 and
values) so two machines can prove bit-identical results.
Errors: one JSON object {"error", "message", "hint"} on stderr and an exit code from
EXIT_CODES, so the adapter on the other side of SSH can say what went wrong.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time

RUNNER_VERSION = 2

EXIT_CODES = {
    "usage": 2,
    "numpy_missing": 10,
    "no_runtime": 11,
    "bad_model": 12,
    "bad_inputs": 13,
    "inference_failed": 14,
}

RUNTIME_PACKAGES = {
    ".tflite": "ai-edge-litert",
    ".onnx": "onnxruntime",
}


class RunnerError(Exception):
    def __init__(self, kind: str, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.hint = hint


# --- runtimes: each loader returns a Session or raises ImportError when not installed ----


# What LiteRT logs (on the process' stderr, from C++) when it applies a delegate by default.
LITERT_DELEGATE_LOGS = {"Created TensorFlow Lite XNNPACK delegate": "XNNPACK"}
LITERT_BUILTIN = "builtin CPU kernels"


class TfliteSession:
    """ai_edge_litert / tflite_runtime Interpreter: set input, invoke, read output."""

    def __init__(self, interpreter_class, model_path: str, threads: int) -> None:
        with CapturedStderr() as log:
            self._open(interpreter_class, model_path, threads)
        self.delegate = next((name for line, name in LITERT_DELEGATE_LOGS.items()
                              if line in log.text), LITERT_BUILTIN)

    def _open(self, interpreter_class, model_path: str, threads: int) -> None:
        self.interpreter = interpreter_class(model_path=model_path, num_threads=threads)
        input_detail = self.interpreter.get_input_details()[0]
        if -1 in list(input_detail.get("shape_signature", [])):
            shape = list(input_detail["shape"])
            shape[0] = 1
            self.interpreter.resize_tensor_input(input_detail["index"], shape)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    @property
    def input_dtype(self):
        return self.input["dtype"]

    @property
    def input_quantization(self) -> tuple[float, int]:
        scale, zero_point = self.input.get("quantization", (0.0, 0))
        return float(scale), int(zero_point)

    def set_input(self, sample) -> None:
        self.interpreter.set_tensor(self.input["index"], sample)

    def invoke(self) -> None:
        self.interpreter.invoke()

    def get_output(self):
        return self.interpreter.get_tensor(self.output["index"]).copy()


class OnnxSession:
    """onnxruntime InferenceSession; run() does input copy + inference in one call."""

    def __init__(self, onnxruntime, model_path: str, threads: int) -> None:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            model_path, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name
        self.delegate = self.session.get_providers()[0]
        element_type = self.session.get_inputs()[0].type  # e.g. "tensor(float)"
        self._dtype_name = {"tensor(float)": "float32", "tensor(int8)": "int8",
                            "tensor(uint8)": "uint8"}.get(element_type, "float32")
        self.feed = None
        self.result = None

    @property
    def input_dtype(self):
        import numpy

        return numpy.dtype(self._dtype_name)

    @property
    def input_quantization(self) -> tuple[float, int]:
        return 0.0, 0  # QDQ ONNX models take float input and quantise inside

    def set_input(self, sample) -> None:
        self.feed = {self.input_name: sample}

    def invoke(self) -> None:
        self.result = self.session.run(None, self.feed)

    def get_output(self):
        return self.result[0]


class CapturedStderr:
    """Reads what native code writes to file descriptor 2 inside the `with` block (LiteRT
    logs its delegate there, not through Python), and writes it back out afterwards, less
    the lines that contain one of `drop`."""

    def __init__(self, drop: tuple = ()) -> None:
        self.drop = drop

    def __enter__(self) -> CapturedStderr:
        import tempfile

        sys.stderr.flush()
        self._file = tempfile.TemporaryFile()
        self._saved = os.dup(2)
        os.dup2(self._file.fileno(), 2)
        self.text = ""
        return self

    def __exit__(self, *exc_info) -> None:
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._file.seek(0)
        self.text = self._file.read().decode("utf-8", "replace")
        self._file.close()
        kept = [line for line in self.text.splitlines(keepends=True)
                if not any(pattern in line for pattern in self.drop)]
        sys.stderr.write("".join(kept))


def load_litert(model_path: str, threads: int):
    from ai_edge_litert.interpreter import Interpreter

    return TfliteSession(Interpreter, model_path, threads), "litert", _package_version(
        "ai-edge-litert", "ai_edge_litert")


def load_tflite_runtime(model_path: str, threads: int):
    from tflite_runtime.interpreter import Interpreter

    return TfliteSession(Interpreter, model_path, threads), "tflite_runtime", _package_version(
        "tflite-runtime", "tflite_runtime")


def load_onnxruntime(model_path: str, threads: int):
    import onnxruntime

    return OnnxSession(onnxruntime, model_path, threads), "onnxruntime", onnxruntime.__version__


RUNTIME_LOADERS = {
    ".tflite": (load_litert, load_tflite_runtime),
    ".onnx": (load_onnxruntime,),
}


def _package_version(distribution: str, module: str) -> str:
    try:
        from importlib import metadata

        return metadata.version(distribution)
    except Exception:  # noqa: BLE001 - a version is a nice-to-have
        return str(getattr(sys.modules.get(module), "__version__", "unknown"))


def open_session(model_path: str, threads: int):
    """The first importable runtime for the model's suffix; init time is measured here."""
    suffix = os.path.splitext(model_path)[1].lower()
    if suffix not in RUNTIME_LOADERS:
        raise RunnerError("bad_model", f"unsupported model file {model_path!r}",
                          "expected a .tflite or .onnx file")
    if not os.path.isfile(model_path):
        raise RunnerError("bad_model", f"model file {model_path!r} not found",
                          "deploy the bundle first")
    missing = []
    for loader in RUNTIME_LOADERS[suffix]:
        started = time.perf_counter()
        try:
            session, name, version = loader(model_path, threads)
        except ImportError as exc:
            missing.append(f"{loader.__name__}: {exc}")
            continue
        except Exception as exc:  # noqa: BLE001 - any runtime failure to load the model
            raise RunnerError("bad_model", f"{loader.__name__} could not load "
                              f"{model_path!r}: {exc}",
                              "check the artifact was converted for this runtime") from exc
        init_ms = (time.perf_counter() - started) * 1000.0
        return session, {"name": name, "version": version}, init_ms
    package = RUNTIME_PACKAGES[suffix]
    raise RunnerError("no_runtime", f"no runtime for {suffix} models is installed "
                      f"(tried: {'; '.join(missing)})",
                      f"pip install {package} numpy")


# --- inputs ------------------------------------------------------------------------------


def load_inputs(path: str):
    import numpy

    try:
        with numpy.load(path) as archive:
            features = numpy.asarray(archive["x"], dtype=numpy.float32)
            labels = numpy.asarray(archive["y"]).astype(numpy.int64) if "y" in archive else None
    except (OSError, KeyError, ValueError) as exc:
        raise RunnerError("bad_inputs", f"cannot read inputs {path!r}: {exc}",
                          "expected an .npz with x (float32 NHWC) and y (int64 labels)") from exc
    if features.ndim < 2 or len(features) == 0:
        raise RunnerError("bad_inputs", f"inputs {path!r} hold no samples (x shape "
                          f"{features.shape})", "rebuild the bundle")
    return features, labels


def prepare_samples(features, session) -> list:
    """One batch-of-1 array per sample, quantised with the model's own input scale."""
    import numpy

    dtype = numpy.dtype(session.input_dtype)
    scale, zero_point = session.input_quantization
    if dtype.kind in "iu":
        if scale == 0.0:
            raise RunnerError("bad_model", f"integer input ({dtype}) without quantization "
                              "parameters", "export the int8 model with a float interface "
                              "or with input scale/zero point")
        info = numpy.iinfo(dtype)
        quantised = numpy.round(features / scale) + zero_point
        features = numpy.clip(quantised, info.min, info.max).astype(dtype)
    else:
        features = features.astype(dtype)
    return [features[index:index + 1] for index in range(len(features))]


# --- measuring ---------------------------------------------------------------------------


def time_invoke(session, sample) -> float:
    session.set_input(sample)
    started = time.perf_counter()
    session.invoke()
    return (time.perf_counter() - started) * 1000.0


def measure(session, samples: list, warmup: int, runs: int, init_ms: float) -> dict:
    """Raw times in ms: init, the first inference, each warm-up run, each measured run."""
    try:
        first_ms = time_invoke(session, samples[0])
        warmup_ms = [time_invoke(session, samples[index % len(samples)])
                     for index in range(warmup)]
        runs_ms = [time_invoke(session, samples[index % len(samples)]) for index in range(runs)]
    except Exception as exc:  # noqa: BLE001 - the runtime's own error, reported as JSON
        raise RunnerError("inference_failed", f"inference failed: {exc}",
                          "run the artifact on the host first (make deploy TARGET=host)") from exc
    return {"init": init_ms, "first": first_ms, "warmup": warmup_ms, "runs": runs_ms}


def evaluate(session, samples: list, labels) -> tuple[dict, dict]:
    """Top-1 on every bundled sample, and the raw outputs for bit-exact comparisons."""
    import numpy

    outputs = []
    for sample in samples:
        session.set_input(sample)
        session.invoke()
        outputs.append(numpy.asarray(session.get_output()).reshape(-1))
    stacked = numpy.stack(outputs)
    predictions = stacked.argmax(axis=1)
    top1 = None if labels is None else float((predictions == labels[: len(predictions)]).mean())
    accuracy = {"top1": top1, "samples": int(len(samples))}
    output_record = {"dtype": str(stacked.dtype), "shape": list(stacked.shape),
                     "sha256": outputs_digest(stacked), "values": stacked.tolist()}
    return accuracy, output_record


def outputs_digest(outputs) -> str:
    """sha256 of the outputs' raw bytes, one row per sample: equal on two machines only
    when every output is bit-identical."""
    import numpy

    return hashlib.sha256(numpy.ascontiguousarray(outputs).tobytes()).hexdigest()


# --- facts about the machine -------------------------------------------------------------


def _proc_status_mb(key: str) -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(f"{key}:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return None


def rss_mb() -> float | None:
    """This process' resident memory now (Linux); None elsewhere."""
    return _proc_status_mb("VmRSS")


def peak_rss_mb() -> float | None:
    # Linux: VmHWM is this process image's own peak. getrusage's ru_maxrss survives exec,
    # so a runner started by a big parent (TensorFlow loaded) would report the parent's.
    peak = _proc_status_mb("VmHWM")
    if peak is not None:
        return peak
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    divisor = 1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0  # bytes vs kilobytes
    return peak / divisor


CPUINFO_KEYS = {"model name": "model", "Hardware": "hardware", "Model": "board",
                "CPU part": "cpu_part", "CPU implementer": "cpu_implementer",
                "Features": "features"}

# The instruction-set features that pick different int8 and float kernels (onnxruntime's
# MLAS, XNNPACK, oneDNN): x86 `flags`, ARM `Features` in /proc/cpuinfo. A run on a CPU
# with another set may round differently, or (AVX2 without VNNI) saturate int8 sums.
KERNEL_FEATURES = (
    "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16",
    "amx_int8",  # x86
    "asimd", "asimdhp", "asimddp", "i8mm", "sve", "sve2",  # ARM: NEON, fp16, dotprod
)


def parse_cpuinfo(text: str) -> dict:
    """The first processor's model and kernel-relevant features from /proc/cpuinfo text."""
    facts: dict = {}
    flags: set = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        name = CPUINFO_KEYS.get(key)
        if name and name not in facts:
            facts[name] = value.strip()
        if key in ("flags", "Features") and not flags:
            flags = set(value.split())
    facts["kernel_features"] = [feature for feature in KERNEL_FEATURES if feature in flags]
    return facts


def cpu_facts() -> dict:
    facts = {"machine": platform.machine(), "system": platform.system(),
             "cores": os.cpu_count(), "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            return {**facts, **parse_cpuinfo(handle.read())}
    except OSError:
        return facts


# --- entry point -------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Time a model; print one JSON document.")
    parser.add_argument("--model", required=True)
    parser.add_argument("--inputs", required=True)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-output-values", action="store_true",
                        help="print only the outputs' sha256, not their values")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.warmup < 0 or args.threads < 1:
        parser.error("--runs and --threads must be >= 1, --warmup >= 0")
    return args


def run(args: argparse.Namespace) -> dict:
    try:
        import numpy  # noqa: F401
    except ImportError as exc:
        raise RunnerError("numpy_missing", f"numpy is not installed for {sys.executable}",
                          "pip install numpy") from exc
    features, labels = load_inputs(args.inputs)
    session, runtime, init_ms = open_session(args.model, args.threads)
    init_rss_mb = rss_mb()
    samples = prepare_samples(features, session)
    times = measure(session, samples, args.warmup, args.runs, init_ms)
    accuracy, outputs = evaluate(session, samples, labels)
    if args.no_output_values:
        outputs.pop("values")
    return {
        "runner_version": RUNNER_VERSION,
        "runtime": {**runtime, "delegate": session.delegate},
        "threads": args.threads,
        "runs": {"warmup": args.warmup, "measured": args.runs},
        "times_ms": times,
        "memory_mb": {"init_rss": init_rss_mb, "peak_rss": peak_rss_mb()},
        "cpu": cpu_facts(),
        "accuracy": accuracy,
        "outputs": outputs,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        document = run(args)
    except RunnerError as exc:
        error = {"error": exc.kind, "message": exc.message, "hint": exc.hint}
        sys.stderr.write(json.dumps(error) + "\n")
        return EXIT_CODES[exc.kind]
    sys.stdout.write(json.dumps(document) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
