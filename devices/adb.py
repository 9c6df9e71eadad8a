"""The `adb` adapter (target `phone`): TFLite's `benchmark_model` on an Android device.

Flow: `adb devices` (state check) -> `mktemp -d` under /data/local/tmp -> `adb push` the
artifact, the benchmark_model binary and one raw input file per bundled sample -> sha256sum
on the device -> `taskset MASK benchmark_model --graph=... --num_threads=... --num_runs=...
--warmup_runs=...` (+ `--enable_op_profiling=true` when asked) -> parse its output -> the
accuracy pass: benchmark_model once per sample with its input file, outputs appended to one
file (devices/phone_samples.py) -> `adb pull` it, top-1 against the bundle's labels ->
`rm -rf` the folder.

The report: benchmark_model's own statistics (init, first, warm-up mean, mean, std, min,
max, median, p95, init and peak memory, the delegate it logs, the op table), plus `runs_ms`
from the accuracy pass, which gives the p90 and p99 benchmark_model does not print.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devices.base import (
    CLIENT_GRACE_S,
    KILL_GRACE_S,
    NOT_A_MICROCONTROLLER,
    STOP_AND_REMOVE,
    TIMEOUT_EXITS,
    BenchmarkSettings,
    Bundle,
    DeviceAdapter,
    DeviceError,
    LatencyReport,
    TargetProfile,
    under_device_timeout,
)
from devices.bench_runner import outputs_digest, parse_cpuinfo
from devices.benchmark_model_parser import (
    BenchmarkModelResult,
    BenchmarkOutputError,
    parse_benchmark_output,
)
from devices.bundle import UNLABELLED
from devices.fsutil import sha256_file
from devices.host import artifact_section, bundle_files, reference_top1
from devices.latency_stats import PERCENTILES, run_statistics
from devices.phone_samples import (
    LOOP,
    OUTPUTS_FILE,
    SAMPLE_MARKER,
    SAMPLES_FOLDER,
    SampleSet,
    write_sample_files,
)
from devices.sections import bounded

log = logging.getLogger(__name__)

BINARY_NAME = "benchmark_model"
EXIT_MARKER = "__edge_bench_exit__="  # old adbd (no shell v2) drops exit codes: echo it
# Why a phone report leaves a value null.
PHONE_MISSING = {
    **NOT_A_MICROCONTROLLER,
    "runtime.version": "benchmark_model does not print its version",
    "runtime.delegate": "benchmark_model's log names no delegate (builtin CPU kernels, or an "
                        "old release that does not log it)",
    "ops": "not asked for: set profile.op_profiling = true for benchmark_model's per-op table",
    "memory": "this benchmark_model prints only the footprint delta (extra.benchmark_model), "
              "not the peak",
    "latency_ms": "benchmark_model printed no such statistic (an old release); runs_ms has "
                  "every per-sample run",
    "accuracy.top1": UNLABELLED,
    "accuracy.reference_top1": "the manifest records no validated top-1 for this artifact",
}

BINARY_HINT = ("download the android_aarch64 benchmark_model from the TensorFlow Lite / LiteRT "
               "release page (see README) and set BENCHMARK_MODEL=/path/to/benchmark_model")

# `adb devices` state -> explanation (only "device" is usable)
DEVICE_STATES: dict[str, str] = {
    "unauthorized": "is unauthorized (hint: unlock the phone and accept the \"Allow USB "
                    "debugging\" prompt for this computer)",
    "offline": "is offline (hint: reconnect the cable, or run `adb kill-server` and retry)",
    "no permissions": "cannot be opened: no permissions (hint: add a udev rule for the phone "
                      "or run adb as a user in the plugdev group)",
    "bootloader": "is in the bootloader (hint: reboot it into Android)",
    "recovery": "is in recovery mode (hint: reboot it into Android)",
    "sideload": "is in sideload mode (hint: reboot it into Android)",
}


@dataclass(frozen=True)
class AdbConnection:
    serial: str = ""  # empty = the only device attached
    benchmark_model: str = ""  # local path of the benchmark_model binary
    device_dir: str = "/data/local/tmp"  # where mktemp creates the working folder
    taskset_mask: str = ""  # CPUs to pin to, e.g. "f0"; empty = no pinning
    command_timeout_s: float = bounded(600.0, 1.0)
    adb: str = "adb"  # the adb client


class AdbAdapter(DeviceAdapter):
    name = "adb"
    Connection = AdbConnection
    op_profile = True  # benchmark_model --enable_op_profiling

    def __init__(self, profile: TargetProfile) -> None:
        super().__init__(profile)
        connection: AdbConnection = profile.connection
        self.serial = connection.serial
        self.binary = os.path.expanduser(connection.benchmark_model)
        self.device_dir = connection.device_dir
        self.taskset_mask = connection.taskset_mask
        self.timeout = connection.command_timeout_s
        self.adb = connection.adb
        self.where = f"{profile.name} ({self.serial or 'adb'})"
        self.workdir: str | None = None
        self.bundle: Bundle | None = None
        self.samples: SampleSet | None = None
        self.local_dir: Path | None = None  # the sample files, before they are pushed

    # --- adb plumbing ----------------------------------------------------------------

    def _adb(self, *arguments: str, timeout: float | None = None) -> subprocess.CompletedProcess:
        command = [self.adb, *(["-s", self.serial] if self.serial else []), *arguments]
        try:
            return subprocess.run(command, capture_output=True, text=True,
                                  stdin=subprocess.DEVNULL, timeout=timeout or self.timeout)
        except FileNotFoundError as exc:
            raise DeviceError(f"{self.where}: the adb client was not found (hint: apt-get "
                              "install adb, or install Android platform-tools)") from exc
        except subprocess.TimeoutExpired as exc:
            raise DeviceError(f"{self.where}: `adb {' '.join(arguments)[:120]}` did not finish "
                              f"within {timeout or self.timeout:g} s (hint: is the phone "
                              "asleep or the cable loose?)") from exc

    def shell(self, argv: list[str], timeout: float | None = None) -> tuple[int, str, str]:
        """Run argv on the device; returns (exit code, stdout, stderr)."""
        command = f"{shlex.join(argv)}; echo {EXIT_MARKER}$?"
        result = self._adb("shell", command, timeout=timeout)
        if result.returncode != 0 and EXIT_MARKER not in result.stdout:
            raise self._transport_failure(result.stderr or result.stdout)
        match = re.search(rf"{EXIT_MARKER}(\d+)\s*$", result.stdout)
        if match is None:
            output = (result.stderr or result.stdout).strip()[-500:]
            raise DeviceError(f"{self.where}: the adb connection was lost before the command "
                              f"finished (adb exit {result.returncode}, no exit status; the "
                              "phone disconnected or the adb server stopped)"
                              f"{': ' + output if output else ''} (hint: check `adb devices`, "
                              "then run again)")
        return int(match.group(1)), result.stdout[: match.start()], result.stderr

    def _transport_failure(self, message: str) -> DeviceError:
        text = message.strip()
        for state, explanation in DEVICE_STATES.items():
            if f"device {state}" in text or f"device is {state}" in text:
                return DeviceError(f"{self.where}: the device {explanation}")
        if "not found" in text and "device" in text:
            return DeviceError(f"{self.where}: device not attached: {text} "
                               "(hint: `adb devices` lists what is attached; set ADB_SERIAL)")
        return DeviceError(f"{self.where}: adb failed: {text[-800:]} (hint: run `adb devices`)")

    # --- lifecycle -------------------------------------------------------------------

    def attached_devices(self) -> dict[str, str]:
        result = self._adb("devices", timeout=60)
        if result.returncode != 0:
            raise DeviceError(f"{self.where}: `adb devices` failed: {result.stderr.strip()} "
                              "(hint: `adb kill-server` and retry)")
        devices = {}
        for line in result.stdout.splitlines()[1:]:
            serial, _, state = line.partition("\t")
            if serial.strip() and state.strip():
                devices[serial.strip()] = state.strip()
        return devices

    def check(self) -> None:
        devices = self.attached_devices()
        if not devices:
            raise DeviceError(f"{self.where}: no Android device attached (hint: plug the phone "
                              "in, enable USB debugging, check `adb devices`)")
        if not self.serial:
            if len(devices) > 1:
                raise DeviceError(f"{self.where}: several devices attached "
                                  f"({', '.join(sorted(devices))}) (hint: set ADB_SERIAL)")
            self.serial = next(iter(devices))
            self.where = f"{self.profile.name} ({self.serial})"
        if self.serial not in devices:
            raise DeviceError(f"{self.where}: device {self.serial} is not attached; attached: "
                              f"{', '.join(sorted(devices))} (hint: fix ADB_SERIAL)")
        state = devices[self.serial]
        if state != "device":
            # startswith: the real server says "no permissions (reason); see [URL]"
            explanation = next((text for name, text in DEVICE_STATES.items()
                                if state.startswith(name)), f"is in state {state!r}")
            raise DeviceError(f"{self.where}: the device {explanation}")
        if not self.binary:
            raise DeviceError(f"{self.where}: no benchmark_model binary configured "
                              f"(hint: {BINARY_HINT})")
        if not Path(self.binary).is_file():
            raise DeviceError(f"{self.where}: benchmark_model binary {self.binary} does not "
                              f"exist (hint: {BINARY_HINT})")

    def supports(self, artifact_format: str, precision: str) -> bool:
        return artifact_format == "tflite" and super().supports(artifact_format, precision)

    def deploy(self, bundle: Bundle) -> None:
        files = {BINARY_NAME: Path(self.binary), bundle.artifact: bundle_files(bundle)[
            bundle.artifact]}
        status, stdout, stderr = self.shell(["mktemp", "-d", "-p", self.device_dir,
                                             "edge-bench.XXXXXX"])
        if status != 0 or not stdout.strip():
            raise DeviceError(f"{self.where}: could not create a folder in {self.device_dir}: "
                              f"{(stderr or stdout).strip()} (hint: is {self.device_dir} "
                              "writable for the shell user?)")
        workdir = stdout.strip().splitlines()[-1]
        if not workdir.startswith(f"{self.device_dir.rstrip('/')}/edge-bench.") or (
                "/.." in workdir or any(c.isspace() for c in workdir)):
            raise DeviceError(f"{self.where}: mktemp printed {workdir[:200]!r}, not a folder "
                              f"edge-bench.XXXXXX in {self.device_dir} (cleanup would remove it)")
        self.workdir = workdir
        self.bundle = bundle
        for name, path in files.items():
            result = self._adb("push", str(path), f"{self.workdir}/{name}")
            if result.returncode != 0:
                raise DeviceError(f"{self.where}: adb push of {path.name} failed: "
                                  f"{(result.stderr or result.stdout).strip()[-500:]} "
                                  "(hint: is the device storage full?)")
        self.shell(["chmod", "755", f"{self.workdir}/{BINARY_NAME}"])
        self._verify(files)
        self._push_samples(bundle)

    def _push_samples(self, bundle: Bundle) -> None:
        """The accuracy pass's input files, one per bundled sample, in one `adb push`."""
        self.local_dir = Path(tempfile.mkdtemp(prefix="edge-phone-samples."))
        folder = self.local_dir / SAMPLES_FOLDER
        self.samples = write_sample_files(bundle.artifact_path, bundle.inputs_path, folder)
        result = self._adb("push", str(folder), f"{self.workdir}/{SAMPLES_FOLDER}")
        if result.returncode != 0:
            raise DeviceError(f"{self.where}: adb push of the {len(self.samples.files)} sample "
                              f"files failed: {(result.stderr or result.stdout).strip()[-500:]}"
                              " (hint: is the device storage full?)")

    def _verify(self, files: dict[str, Path]) -> None:
        status, stdout, stderr = self.shell(["sha256sum", *[f"{self.workdir}/{name}"
                                                            for name in files]])
        if status != 0:
            raise DeviceError(f"{self.where}: sha256sum failed on the device: {stderr.strip()}")
        device_hashes = {}
        for line in stdout.splitlines():
            digest, _, path = line.strip().partition("  ")
            device_hashes[path.strip()] = digest
        for name, path in files.items():
            if device_hashes.get(f"{self.workdir}/{name}") != sha256_file(path):
                raise DeviceError(f"{self.where}: {name} arrived corrupted (sha256 on the device "
                                  "differs) (hint: retry; check the cable)")

    def benchmark_command(self, settings: BenchmarkSettings) -> list[str]:
        arguments = [f"{self.workdir}/{BINARY_NAME}",
                     f"--graph={self.workdir}/{self.bundle.artifact}",
                     f"--num_threads={settings.threads}", f"--num_runs={settings.runs}",
                     f"--warmup_runs={settings.warmup}"]
        if settings.op_profiling:
            arguments.append("--enable_op_profiling=true")
        return under_device_timeout(self.timeout, [*self._pinned(), *arguments])

    def _pinned(self) -> list[str]:
        return ["taskset", self.taskset_mask] if self.taskset_mask else []

    def benchmark(self, settings: BenchmarkSettings) -> LatencyReport:
        if self.workdir is None or self.bundle is None:
            raise DeviceError(f"{self.where}: benchmark() before deploy() "
                              "(hint: call deploy(bundle) first)")
        status, stdout, stderr = self.shell(self.benchmark_command(settings),
                                            timeout=self.timeout + KILL_GRACE_S + CLIENT_GRACE_S)
        output = stdout + "\n" + stderr
        if status in TIMEOUT_EXITS:
            raise DeviceError(f"{self.where}: benchmark_model did not finish within "
                              f"{self.timeout:g} s and was stopped on the device (hint: raise "
                              "connection.command_timeout_s or lower [profile] runs)")
        if status == 127 or status == 126:
            raise DeviceError(f"{self.where}: benchmark_model could not be started on the "
                              f"device (exit {status}): {output.strip()[-500:]} (hint: the "
                              "binary must be an Android build for this CPU, e.g. "
                              "android_aarch64; is taskset available?)")
        if status != 0:
            raise DeviceError(f"{self.where}: benchmark_model failed with exit code {status}; "
                              f"its output:\n{output.strip()[-3000:]}\n(hint: run it by hand "
                              "with `adb shell`)")
        cpu = self._cpu_facts()
        parsed = self._parse(output)
        runs_ms, outputs = self._run_samples(settings)
        return self._report(parsed, settings, cpu, runs_ms, outputs)

    def _parse(self, output: str) -> BenchmarkModelResult:
        try:
            return parse_benchmark_output(output)
        except BenchmarkOutputError as exc:
            raise DeviceError(f"{self.where}: {exc}: {output.strip()[-500:]} (hint: is "
                              f"{self.binary} really TFLite's benchmark_model?)") from exc

    def _run_samples(self, settings: BenchmarkSettings) -> tuple[list[float], Any]:
        """The accuracy pass: (each sample's warm run in ms, the outputs, one row each)."""
        samples = self.samples
        command = [*self._pinned(), f"{self.workdir}/{BINARY_NAME}",
                   f"--graph={self.workdir}/{self.bundle.artifact}",
                   f"--num_threads={settings.threads}", *samples.flags()]
        loop = under_device_timeout(self.timeout, ["sh", "-c", LOOP, "sh", self.workdir,
                                                   *command])
        status, stdout, stderr = self.shell(loop, timeout=self.timeout + KILL_GRACE_S
                                            + CLIENT_GRACE_S)
        if status != 0:
            verdict = (f"did not finish within {self.timeout:g} s" if status in TIMEOUT_EXITS
                       else f"failed with exit code {status}")
            raise DeviceError(f"{self.where}: the accuracy pass (benchmark_model once per "
                              f"bundled sample) {verdict}: {(stdout + stderr).strip()[-1500:]} "
                              "(hint: this benchmark_model must take --input_layer_value_files "
                              "and --output_filepath; use a current LiteRT release build)")
        chunks = stdout.split(SAMPLE_MARKER)[1:]
        runs_ms = [self._parse(chunk).single_run_ms() for chunk in chunks]
        if len(chunks) != len(samples.files) or None in runs_ms:
            raise DeviceError(f"{self.where}: the accuracy pass ran {len(chunks)} of "
                              f"{len(samples.files)} samples with a timing each (hint: run "
                              "benchmark_model by hand with --num_runs=1)")
        local = self.local_dir / OUTPUTS_FILE
        result = self._adb("pull", f"{self.workdir}/{OUTPUTS_FILE}", str(local))
        if result.returncode != 0:
            raise DeviceError(f"{self.where}: adb pull of the outputs failed: "
                              f"{(result.stderr or result.stdout).strip()[-500:]}")
        return runs_ms, samples.outputs(local.read_bytes())

    def _cpu_facts(self) -> dict[str, Any]:
        """The phone's CPU model and kernel features, so runs on two phones can be told apart;
        empty when /proc/cpuinfo cannot be read (it is optional on Android)."""
        status, stdout, _ = self.shell(["cat", "/proc/cpuinfo"], timeout=60)
        return parse_cpuinfo(stdout) if status == 0 else {}

    def _report(self, parsed: BenchmarkModelResult, settings: BenchmarkSettings,
                cpu: dict[str, Any], runs_ms: list[float], outputs: Any) -> LatencyReport:
        measured, peak = parsed.measured, parsed.peak_memory
        latency, sources = phone_latency(parsed, runs_ms)
        extra: dict[str, Any] = {
            "benchmark_model": {
                "warmup_avg_us": parsed.warmup_avg_us, "inference_avg_us": parsed.inference_avg_us,
                "p5_ms": None if not measured or measured.p5 is None else measured.p5 / 1000,
                "memory": [vars(entry) for entry in parsed.memory],
                "node_types": list(parsed.node_types),
            },
            "latency_sources": sources,
            "outputs_sha256": outputs_digest(outputs),
            "outputs_dtype": str(outputs.dtype), "outputs_shape": list(outputs.shape),
        }
        return LatencyReport(
            target={"name": self.profile.name, "adapter": self.profile.adapter,
                    "device": {"serial": settings.device_address(self.serial),
                               "taskset_mask": self.taskset_mask or None,
                               **cpu},
                    "emulated": False},
            artifact=artifact_section(self.bundle, self.profile),
            runtime={"name": "benchmark_model", "version": None, "threads": settings.threads,
                     "delegate": parsed.delegate},
            runs={"warmup": settings.warmup,
                  "measured": measured.count if measured else settings.runs},
            latency_ms=latency,
            runs_ms=runs_ms,
            memory={"init_rss_mb": peak.init_mb if peak else None,
                    "peak_rss_mb": peak.overall_mb if peak else None,
                    "arena_bytes": None, "flash_bytes": None},
            ops=[op_row(entry) for entry in parsed.operators] or None,
            accuracy={"top1": self.samples.top1(outputs),
                      "reference_top1": reference_top1(self.bundle),
                      "samples": int(outputs.shape[0])},
            missing=PHONE_MISSING,
            extra=extra,
        )

    def cleanup(self) -> None:
        if self.local_dir is not None:
            shutil.rmtree(self.local_dir, ignore_errors=True)
            self.local_dir = None
        if self.workdir is None:
            return
        workdir, self.workdir = self.workdir, None
        try:
            self.shell([*STOP_AND_REMOVE, workdir], timeout=60)
        except DeviceError as exc:
            log.warning("%s: could not remove %s: %s", self.where, workdir, exc)


def phone_latency(parsed: BenchmarkModelResult, runs_ms: list[float]
                  ) -> tuple[dict[str, float | None], dict[str, str]]:
    """benchmark_model's own statistics, and the percentiles it does not print (p90, p99;
    median and p95 on old releases) from the accuracy pass's runs; with their sources."""
    latency = parsed.latency_ms()
    from_runs = run_statistics(runs_ms)
    sources = {}
    for key in PERCENTILES:
        if latency[key] is None and from_runs[key] is not None:
            latency[key] = from_runs[key]
            sources[key] = "runs_ms: one warm run per bundled sample (the accuracy pass)"
    sources |= {key: "benchmark_model" for key, value in latency.items()
                if value is not None and key not in sources}
    return latency, sources


def op_row(entry: dict[str, Any]) -> dict[str, Any]:
    """A benchmark_model "Run Order" row in the report's `ops` shape."""
    percent = entry.get("percent")
    return {"name": str(entry.get("name", "")), "type": str(entry.get("node_type", "")),
            "ms": entry.get("avg_ms"), "instructions": None,
            "share": None if percent is None else float(percent) / 100.0,
            "first_ms": entry.get("first_ms"), "times_called": entry.get("times_called")}


ADAPTER = AdbAdapter
