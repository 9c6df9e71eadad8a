"""The `host` adapter, and the bench_runner.py protocol the SSH adapter shares with it.

The host adapter runs devices/bench_runner.py in a subprocess with this same python, so the
host's numbers come from exactly the code the Raspberry Pi runs.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devices.base import (
    NOT_A_MICROCONTROLLER,
    BenchmarkSettings,
    Bundle,
    DeviceAdapter,
    DeviceError,
    LatencyReport,
    TargetProfile,
)
from devices.bundle import INPUTS, UNLABELLED, read_manifest
from devices.errors import ArtifactError
from devices.fsutil import sha256_file
from devices.latency_stats import latency_section
from devices.sections import bounded

RUNNER_PATH = Path(__file__).resolve().with_name("bench_runner.py")

# bench_runner.py error kind -> how we explain it (the runner's own message and hint follow)
RUNNER_ERRORS: dict[str, str] = {
    "numpy_missing": "numpy is not installed for the device's python",
    "no_runtime": "no inference runtime is installed on the device",
    "bad_model": "the runtime could not load the artifact",
    "bad_inputs": "the bundle's inputs.npz could not be read on the device",
    "inference_failed": "inference failed on the device",
    "usage": "bench_runner.py was called with bad arguments",
}

# profile runtime -> python modules that provide it (the first importable one is used)
RUNTIME_MODULES: dict[str, tuple[str, ...]] = {
    "litert": ("ai_edge_litert.interpreter", "tflite_runtime.interpreter"),
    "onnxruntime": ("onnxruntime",),
}
RUNTIME_PACKAGES: dict[str, str] = {"litert": "ai-edge-litert", "onnxruntime": "onnxruntime"}


def runner_arguments(model: str, inputs: str, settings: BenchmarkSettings) -> list[str]:
    return ["--model", model, "--inputs", inputs, "--warmup", str(settings.warmup),
            "--runs", str(settings.runs), "--threads", str(settings.threads)]


def parse_runner_output(where: str, returncode: int, stdout: str, stderr: str) -> dict:
    """The runner's JSON document, or a DeviceError that says what failed on `where`."""
    if returncode == 0:
        try:
            return json.loads(stdout.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError) as exc:
            raise DeviceError(f"{where}: bench_runner.py printed no JSON document "
                              f"(stdout: {stdout[-500:]!r}) (hint: is the device's python3 "
                              "3.8 or newer?)") from exc
    error = _runner_error(stderr)
    if error and error.get("error") in RUNNER_ERRORS:
        hint = error.get("hint") or "see the message"
        raise DeviceError(f"{where}: {RUNNER_ERRORS[error['error']]}: {error.get('message')} "
                          f"(hint: {hint})")
    raise DeviceError(f"{where}: bench_runner.py crashed with exit code {returncode}; its "
                      f"stderr:\n{stderr.strip()[-3000:]}\n(hint: run it by hand on the device "
                      "with the same arguments)")


def _runner_error(stderr: str) -> dict | None:
    for line in reversed(stderr.strip().splitlines()):
        try:
            document = json.loads(line)
        except json.JSONDecodeError:
            continue
        return document if isinstance(document, dict) else None
    return None


def bundle_files(bundle: Bundle) -> dict[str, Path]:
    """The files a device needs: artifact and inputs (their checksums were verified against
    the manifest by devices.profiling before deploy)."""
    files = {bundle.artifact: bundle.artifact_path, INPUTS: bundle.inputs_path}
    for name, path in files.items():
        if not path.is_file():
            raise ArtifactError(f"bundle {bundle.root} has no {name} (hint: build it with "
                                "`make artifacts TARGETS=...` for this target)")
    return files


def reference_top1(bundle: Bundle) -> float | None:
    """The validation stage's accuracy of this artifact, from the manifest: on exactly the
    bundled samples when the bundle records it (`bundle_top1`), else on the test split."""
    record = read_manifest(bundle.root).artifact_metrics(bundle.artifact) or {}
    return record.get("bundle_top1", record.get("top1"))


def test_split_accuracy(bundle: Bundle, document: dict, emulated: bool) -> dict | None:
    """The validate stage's top-1 of this very file on the whole test split, when that is
    this machine's own measurement: the same CPU model and kernel features (the manifest's
    `machines.validate`), not emulated, and this run's top-1 on the bundled samples equal
    to the validated one on them. An accuracy line is then judged on the whole split
    (devices/accuracy_estimate.py), not on a few hundred samples."""
    manifest = read_manifest(bundle.root)
    record = manifest.artifact_metrics(bundle.artifact) or {}
    samples = manifest.dataset.get("test")
    same_machine = manifest.machines.get("validate") == document.get("cpu")
    agrees = document["accuracy"]["top1"] == record.get("bundle_top1")
    if emulated or not same_machine or not agrees or record.get("top1") is None or not samples:
        return None
    return {"top1": record["top1"], "samples": int(samples),
            "source": "the validate stage on this machine, the whole test split"}


def artifact_section(bundle: Bundle, profile: TargetProfile) -> dict[str, Any]:
    return {"file": bundle.artifact, "sha256": sha256_file(bundle.artifact_path),
            "bytes": bundle.artifact_path.stat().st_size, "format": profile.artifact_format,
            "precision": profile.artifact_precision}


# Why a bench_runner.py report (host, Raspberry Pi) leaves a value null.
RUNNER_MISSING = {
    **NOT_A_MICROCONTROLLER,
    "ops": "ai_edge_litert's and onnxruntime's Python APIs give no per-op timing here; the "
           "phone's benchmark_model (--enable_op_profiling) and the microcontrollers do",
    "memory": "the device's OS has no /proc/self/status (Linux only)",
    "runtime.version": "the runtime's package records no version",
    "latency_ms.warmup_mean": "no warm-up runs were asked for ([profile] warmup = 0)",
    "accuracy.top1": UNLABELLED,
    "accuracy.reference_top1": "the manifest records no validated top-1 for this artifact",
}


def report_from_runner(
    profile: TargetProfile,
    bundle: Bundle,
    document: dict,
    device: dict[str, Any],
    emulated: bool = False,
    extra: dict[str, Any] | None = None,
) -> LatencyReport:
    outputs = document.get("outputs") or {}
    times, memory = document["times_ms"], document.get("memory_mb") or {}
    runner_extra = {"cpu": document.get("cpu"), "runner_version": document.get("runner_version"),
                    "outputs_sha256": outputs.get("sha256"), "outputs_dtype": outputs.get("dtype"),
                    "outputs_shape": outputs.get("shape")}
    split = test_split_accuracy(bundle, document, emulated)
    if split is not None:
        runner_extra["test_split_accuracy"] = split
    return LatencyReport(
        target={"name": profile.name, "adapter": profile.adapter, "device": device,
                "emulated": emulated},
        artifact=artifact_section(bundle, profile),
        runtime={"name": document["runtime"]["name"], "version": document["runtime"]["version"],
                 "threads": document["threads"], "delegate": document["runtime"]["delegate"]},
        runs={"warmup": document["runs"]["warmup"], "measured": document["runs"]["measured"]},
        latency_ms=latency_section(times["runs"], times["init"], times["first"],
                                   times["warmup"]),
        runs_ms=times["runs"],
        memory={"init_rss_mb": memory.get("init_rss"), "peak_rss_mb": memory.get("peak_rss"),
                "arena_bytes": None, "flash_bytes": None},
        accuracy={"top1": document["accuracy"]["top1"], "reference_top1": reference_top1(bundle),
                  "samples": document["accuracy"]["samples"]},
        missing=RUNNER_MISSING,
        extra={**runner_extra, **(extra or {})},
    )


def run_runner_locally(python: list[str], model: Path, inputs: Path,
                       settings: BenchmarkSettings, timeout: float, where: str) -> dict:
    command = [*python, str(RUNNER_PATH), *runner_arguments(str(model), str(inputs), settings)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise DeviceError(f"{where}: bench_runner.py did not finish within {timeout:g} s "
                          "(hint: lower [profile] runs, or raise connection.timeout_s)") from exc
    return parse_runner_output(where, result.returncode, result.stdout, result.stderr)


@dataclass(frozen=True)
class HostConnection:
    timeout_s: float = bounded(600.0, 1.0)  # the runner subprocess is killed after this long


class HostAdapter(DeviceAdapter):
    name = "host"
    Connection = HostConnection
    emulated = False  # the runner runs on this CPU itself

    def __init__(self, profile: TargetProfile) -> None:
        super().__init__(profile)
        self.bundle: Bundle | None = None

    def check(self) -> None:
        modules = RUNTIME_MODULES.get(self.profile.runtime)
        if modules is None:
            raise DeviceError(f"{self.profile.name}: the host adapter cannot run runtime "
                              f"{self.profile.runtime!r}; expected one of "
                              f"{', '.join(RUNTIME_MODULES)} (hint: fix [runtime] name)")
        if importlib.util.find_spec("numpy") is None:
            raise DeviceError(f"{self.profile.name}: numpy is not installed for "
                              f"{sys.executable} (hint: pip install numpy)")
        if not any(_module_available(module) for module in modules):
            package = RUNTIME_PACKAGES[self.profile.runtime]
            raise DeviceError(f"{self.profile.name}: none of {', '.join(modules)} is "
                              f"importable by {sys.executable} (hint: pip install {package})")

    def supports(self, artifact_format: str, precision: str) -> bool:
        return artifact_format in ("tflite", "onnx") and super().supports(artifact_format,
                                                                          precision)

    def deploy(self, bundle: Bundle) -> None:
        bundle_files(bundle)  # nothing to copy; still verify the bundle against its manifest
        self.bundle = bundle

    def benchmark(self, settings: BenchmarkSettings) -> LatencyReport:
        if self.bundle is None:
            raise DeviceError(f"{self.profile.name}: benchmark() before deploy() "
                              "(hint: call deploy(bundle) first)")
        document = run_runner_locally(self.runner_command(), self.bundle.artifact_path,
                                      self.bundle.inputs_path, settings,
                                      self.profile.connection.timeout_s, self.profile.name)
        return report_from_runner(self.profile, self.bundle, document,
                                  self.device_facts(document), self.emulated)

    # What a subclass that runs the same runner another way changes (devices/x86_emu.py).
    def runner_command(self) -> list[str]:
        return [sys.executable]

    def device_facts(self, document: dict[str, Any]) -> dict[str, Any]:
        return {"hostname": _hostname(), **(document.get("cpu") or {})}


def _module_available(dotted: str) -> bool:
    try:
        return importlib.util.find_spec(dotted) is not None
    except ModuleNotFoundError:  # parent package missing
        return False


def _hostname() -> str:
    import socket  # deferred: only the report names the host

    return socket.gethostname()


ADAPTER = HostAdapter
