"""bench_runner.py as devices run it: a subprocess printing one JSON document."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from devices import bench_runner
from devices.bench_runner import KERNEL_FEATURES, parse_cpuinfo

RUNNER = Path(bench_runner.__file__)

# Python's own way to make a module unimportable: a None entry in sys.modules makes
# `import name` raise ImportError, exactly as on a device without the package.
HIDE_AND_RUN = (
    "import runpy, sys\n"
    "for name in sys.argv[1].split(','):\n"
    "    sys.modules[name] = None\n"
    "sys.argv = sys.argv[2:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


def run_runner(*arguments: str, hide: str = "") -> subprocess.CompletedProcess:
    prefix = [sys.executable, "-c", HIDE_AND_RUN, hide] if hide else [sys.executable]
    return subprocess.run([*prefix, str(RUNNER), *arguments], capture_output=True, text=True,
                          timeout=120)


def bundle_arguments(bundle: Path, model: str, runs: int = 7, warmup: int = 2) -> list[str]:
    return ["--model", str(bundle / model), "--inputs", str(bundle / "inputs.npz"),
            "--warmup", str(warmup), "--runs", str(runs), "--threads", "1"]


def test_int8_outputs_and_accuracy_match_in_process_litert(tiny_bundle: Path, reference_outputs):
    result = run_runner(*bundle_arguments(tiny_bundle, "model_int8.tflite"))
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    with np.load(tiny_bundle / "inputs.npz") as archive:
        images, labels = archive["x"], archive["y"]
    expected = reference_outputs(tiny_bundle / "model_int8.tflite", images)
    outputs = document["outputs"]
    assert outputs["dtype"] == "int8"
    assert np.array_equal(np.asarray(outputs["values"], dtype=np.int8), expected)
    assert outputs["shape"] == [len(images), 3]
    expected_top1 = float((expected.argmax(axis=1) == labels).mean())
    assert document["accuracy"] == {"top1": expected_top1, "samples": len(images)}
    assert 0.5 < expected_top1 < 1.0  # a real accuracy, not chance and not trivially 1


def test_latency_document_fields(tiny_bundle: Path):
    result = run_runner(*bundle_arguments(tiny_bundle, "model_int8.tflite", runs=9, warmup=3))
    document = json.loads(result.stdout)
    times = document["times_ms"]  # raw: the statistics are the pipeline's (latency_stats)
    assert set(times) == {"init", "first", "warmup", "runs"}
    assert len(times["warmup"]) == 3 and len(times["runs"]) == 9
    assert all(value > 0 for value in (times["init"], times["first"], *times["runs"]))
    assert document["runs"] == {"warmup": 3, "measured": 9}
    assert document["runtime"]["name"] == "litert"
    assert document["runtime"]["version"].startswith("2.")
    # LiteRT logs the delegate it applies by default on stderr; the runner reads it there
    assert document["runtime"]["delegate"] == "XNNPACK"
    assert "Created TensorFlow Lite XNNPACK delegate" in result.stderr  # and passes it on
    memory = document["memory_mb"]
    assert 10 < memory["init_rss"] <= memory["peak_rss"]
    assert document["cpu"]["machine"] == __import__("platform").machine()
    flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith(("flags", "Features"))).split(":", 1)[1].split()
    assert document["cpu"]["kernel_features"] == [f for f in KERNEL_FEATURES if f in flags]


# Abridged from real /proc/cpuinfo files: an AVX2-only AMD EPYC (no AVX-512, no VNNI) and a
# Raspberry Pi 5 (Cortex-A76: NEON, fp16, dotprod).
X86_AVX2_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B12
flags\t\t: fpu vme sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2 sha_ni
processor\t: 1
model name\t: AMD EPYC 7B12
flags\t\t: fpu vme sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2 sha_ni avx512f
"""
ARM_CPUINFO = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU part\t: 0xd0b
Model\t\t: Raspberry Pi 5 Model B Rev 1.0
"""


def test_cpuinfo_names_the_kernel_features_of_the_first_processor():
    x86 = parse_cpuinfo(X86_AVX2_CPUINFO)
    assert x86 == {"model": "AMD EPYC 7B12", "kernel_features": ["avx2", "fma"]}
    arm = parse_cpuinfo(ARM_CPUINFO)
    assert arm["kernel_features"] == ["asimd", "asimdhp", "asimddp"]
    assert arm["board"] == "Raspberry Pi 5 Model B Rev 1.0" and arm["cpu_part"] == "0xd0b"
    assert parse_cpuinfo("") == {"kernel_features": []}


def test_onnx_model_runs_on_onnxruntime(tiny_bundle: Path):
    result = run_runner(*bundle_arguments(tiny_bundle, "model.onnx"), "--no-output-values")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["runtime"]["name"] == "onnxruntime"
    assert "values" not in document["outputs"]
    import onnx
    from onnx import numpy_helper

    weights = numpy_helper.to_array(onnx.load(str(tiny_bundle / "model.onnx")).graph.initializer[0])
    with np.load(tiny_bundle / "inputs.npz") as archive:
        logits = archive["x"].reshape(len(archive["x"]), -1) @ weights
        expected = float((logits.argmax(axis=1) == archive["y"]).mean())
    assert document["accuracy"]["top1"] == pytest.approx(expected)


def test_tflite_runtime_is_the_fallback_when_litert_is_missing(tiny_bundle: Path):
    result = run_runner(*bundle_arguments(tiny_bundle, "model_int8.tflite"),
                        hide="ai_edge_litert,tflite_runtime")
    assert result.returncode == bench_runner.EXIT_CODES["no_runtime"]
    error = json.loads(result.stderr.strip().splitlines()[-1])
    assert error["error"] == "no_runtime"
    assert error["hint"] == "pip install ai-edge-litert numpy"
    assert "tflite_runtime" in error["message"]


def test_missing_numpy_is_reported(tiny_bundle: Path):
    result = run_runner(*bundle_arguments(tiny_bundle, "model_int8.tflite"), hide="numpy")
    assert result.returncode == bench_runner.EXIT_CODES["numpy_missing"]
    assert json.loads(result.stderr)["hint"] == "pip install numpy"


def test_corrupt_model_and_bad_inputs(tiny_bundle: Path, tmp_path: Path):
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"not a flatbuffer" * 8)
    result = run_runner("--model", str(broken), "--inputs", str(tiny_bundle / "inputs.npz"))
    assert result.returncode == bench_runner.EXIT_CODES["bad_model"]
    assert json.loads(result.stderr.strip().splitlines()[-1])["error"] == "bad_model"

    no_x = tmp_path / "inputs.npz"
    np.savez(no_x, y=np.zeros(3, dtype=np.int64))
    result = run_runner("--model", str(tiny_bundle / "model_int8.tflite"), "--inputs", str(no_x))
    assert result.returncode == bench_runner.EXIT_CODES["bad_inputs"]
    assert "expected an .npz with x" in json.loads(result.stderr)["hint"]


def test_unsupported_suffix_and_bad_arguments(tiny_bundle: Path):
    result = run_runner("--model", str(tiny_bundle / "labels.txt"),
                        "--inputs", str(tiny_bundle / "inputs.npz"))
    assert result.returncode == bench_runner.EXIT_CODES["bad_model"]
    assert "unsupported model file" in result.stderr
    result = run_runner(*bundle_arguments(tiny_bundle, "model_int8.tflite", runs=0))
    assert result.returncode == 2
    assert "--runs and --threads must be >= 1" in result.stderr


def test_runner_imports_only_stdlib_numpy_and_runtimes():
    """It is copied alone to devices: no project imports allowed."""
    source = RUNNER.read_text()
    assert "from devices" not in source and "from pipeline" not in source
    assert "import devices" not in source and "import pipeline" not in source
