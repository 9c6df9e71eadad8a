"""The device adapter interface and the latency report (schema `edge-latency-report/2`).

A target profile (devices/targets/<name>.toml) names an adapter; the adapter registry in
devices/registry.py maps that name to a DeviceAdapter subclass.
"""

from __future__ import annotations

import abc
import datetime as _dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from devices.artifact_kinds import target_file
from devices.bundle import INPUTS, MANIFEST
from devices.contract_schema import check_document
from devices.errors import PipelineError
from devices.latency_stats import LATENCY_KEYS, missing_values
from devices.sections import bounded, choice

SCHEMA = "edge-latency-report/2"

REPORT_KEYS = (
    "schema", "created", "target", "artifact", "runtime", "runs", "latency_ms", "runs_ms",
    "memory", "instructions", "ops", "accuracy", "budget", "missing",
)


class DeviceError(PipelineError):
    """The device is unreachable or failed on its side. Exit code 3."""

    exit_code = 3


@dataclass(frozen=True)
class Budget:
    """A target profile's [budget]: every limit optional (None = no limit)."""

    latency_ms: float | None = bounded(None, 0.0)
    latency_stat: str = choice("median", *LATENCY_KEYS)  # any statistic the report has
    min_accuracy: float | None = bounded(None, 0.0, 1.0)
    flash_kb: float | None = bounded(None, 0.0)
    ram_kb: float | None = bounded(None, 0.0)
    max_regression: float | None = bounded(None, 0.0)  # fraction, against a baseline report


@dataclass(frozen=True)
class NoSettings:
    """An adapter's [connection] or [extra] that takes no keys."""


@dataclass(frozen=True)
class TargetProfile:
    """A parsed devices/targets/<name>.toml."""

    name: str
    adapter: str
    description: str
    artifact_format: str  # "tflite" | "onnx" | "c"
    artifact_precision: str  # "fp32" | "fp16" | "dynamic" | "int8"
    runtime: str  # "litert" | "onnxruntime" | "benchmark_model" | "c"
    threads: int
    connection: Any = NoSettings()  # the adapter's Connection dataclass
    budget: Budget = Budget()
    extra: Any = NoSettings()  # the adapter's Extra dataclass
    needs: str = ""  # what the user needs to run it, shown by `make targets`

    @property
    def artifact_file(self) -> str:
        return target_file(self.artifact_format, self.artifact_precision)


@dataclass(frozen=True)
class BenchmarkSettings:
    warmup: int = 10
    runs: int = 50
    threads: int = 1
    op_profiling: bool = False
    record_device_address: bool = False  # reports name a device by a hash, unless true

    def device_address(self, address: str) -> str:
        """What a report may say about a host name, IP or serial: CI uploads reports, so by
        default a stable hash (`sha256:` and 12 hex digits), the same device every run."""
        if self.record_device_address or not address:
            return address
        return "sha256:" + hashlib.sha256(address.encode()).hexdigest()[:12]


# A runner on a device runs under the device's own `timeout`, so it stops there when the
# local client gives up (which waits a little longer, to hear why); cleanup stops whatever
# still runs from the working folder, then removes it.
KILL_GRACE_S = 5.0  # `timeout -k`: from TERM to KILL on the device
CLIENT_GRACE_S = 25.0  # the local ssh/adb client outwaits the device's timeout by this much
TIMEOUT_EXITS = (124, 137)  # `timeout` fired (TERM), or had to KILL
STOP_AND_REMOVE = ["sh", "-c", 'pkill -f -- "$1/" 2>/dev/null; rm -rf -- "$1"', "sh"]


def under_device_timeout(limit_s: float, argv: list[str]) -> list[str]:
    return ["timeout", "-k", f"{KILL_GRACE_S:g}", f"{limit_s:g}", *argv]


@dataclass(frozen=True)
class Bundle:
    """A dist/<target>/ folder: manifest.json, labels.txt, inputs.npz and the artifact."""

    root: Path
    artifact: str  # file (or folder) name inside root

    @property
    def artifact_path(self) -> Path:
        return self.root / self.artifact

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    @property
    def inputs_path(self) -> Path:
        return self.root / INPUTS


# Why a value is null on every target that is not a microcontroller; adapters add their own
# reasons (LatencyReport.missing).
NOT_A_MICROCONTROLLER = {
    "instructions": "instructions are counted only on the emulated microcontrollers",
    "memory.arena_bytes": "a fixed tensor arena is a microcontroller's; see peak_rss_mb",
    "memory.flash_bytes": "flash is a microcontroller's limit; the artifact's size is "
                          "artifact.bytes",
}


@dataclass
class LatencyReport:
    """One profiling run; `to_dict()` gives exactly the keys of edge-latency-report/2.

    `missing` holds the adapter's reasons why a value may be null, by path
    (`latency_ms.p90`) or section (`ops`); `to_dict()` keeps the reasons of the values that
    are null, so every adapter's report says why a field is empty.
    """

    target: dict[str, Any]
    artifact: dict[str, Any]
    runtime: dict[str, Any]
    runs: dict[str, int]
    latency_ms: dict[str, float | None]
    runs_ms: list[float] | None = None
    memory: dict[str, float | None] = field(
        default_factory=lambda: {"init_rss_mb": None, "peak_rss_mb": None,
                                 "arena_bytes": None, "flash_bytes": None}
    )
    instructions: dict[str, Any] | None = None
    ops: list[dict[str, Any]] | None = None
    accuracy: dict[str, Any] = field(
        default_factory=lambda: {"top1": None, "reference_top1": None, "samples": 0}
    )
    budget: dict[str, Any] = field(
        default_factory=lambda: {"limits": {}, "passed": None, "violations": []}
    )
    missing: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    created: str = field(
        default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    )

    def to_dict(self) -> dict[str, Any]:
        document = {
            "schema": SCHEMA,
            "created": self.created,
            "target": self.target,
            "artifact": self.artifact,
            "runtime": self.runtime,
            "runs": self.runs,
            "latency_ms": self.latency_ms,
            "runs_ms": self.runs_ms,
            "memory": self.memory,
            "instructions": self.instructions,
            "ops": self.ops,
            "accuracy": self.accuracy,
            "budget": self.budget,
        }
        document["missing"] = missing_values(document, self.missing)
        if self.extra:
            document["extra"] = self.extra
        return document

    @classmethod
    def from_dict(cls, document: Any, label: str = "latency report") -> LatencyReport:
        """The report, checked against devices/schemas/edge-latency-report-2.schema.json."""
        check_document(document, SCHEMA, label, "profile the target again")
        fields = {key: value for key, value in document.items() if key != "schema"}
        return cls(**fields)


class DeviceAdapter(abc.ABC):
    """Deploys a bundle to one device and profiles it.

    Lifecycle: check() -> supports(artifact) -> deploy(bundle) -> benchmark(settings) ->
    cleanup(). check() fails fast with a DeviceError that says what is missing and how to
    fix it; cleanup() is safe to call more than once and after a failure.

    The class methods are what the pipeline asks of an adapter before any device is
    touched (docs/architecture.md, "Adapters"): extra bundle files, a note printed before
    profiling, how the runs are described, which LiteRT kernels the device's accuracy must
    match and what the latency line adds. The pipeline never names an adapter.
    """

    name: ClassVar[str]
    # The typed [connection] and [extra] sections of this adapter's target profiles.
    Connection: ClassVar[type] = NoSettings
    Extra: ClassVar[type] = NoSettings
    # The device must reproduce the top-1 of LiteRT's "optimised" kernels, or, for C
    # kernels that are bit-exact with them, of LiteRT's "reference" kernels.
    accuracy_kernels: ClassVar[str] = "optimised"
    # Whether the device can give a per-op table (`profile.op_profiling`); a target that
    # cannot is refused when asked, not silently profiled without it.
    op_profile: ClassVar[bool] = False
    # Where a cluster study profiles this target: a Ray custom resource that the nodes able
    # to run it advertise (`ray start --resources '{"mcu-qemu": 1}'`), asked for by each
    # point's task; None, where the study runs (the head): a device attached there, or
    # the host, so that one CPU times every point.
    cluster_resource: ClassVar[str | None] = None

    @classmethod
    def bundle_extras(cls, artifact: Path, samples: Any, scratch: Path) -> list[Path]:
        """Files or folders the bundle carries beside the artifact, written under scratch."""
        return []

    @classmethod  # noqa: B027 - optional hook
    def check_artifact(cls, profile: TargetProfile, artifact: Path, label: str) -> None:
        """Raise (exit 2) for a model file this device cannot run, naming what it lacks
        and the file as `label`; asked before any bundle is written (a deploy's or a
        user's file's), so no device is touched."""

    @classmethod
    def pre_profile_note(cls, profile: TargetProfile, artifact: Path) -> str | None:
        return None

    @classmethod
    def describe_runs(cls, settings: BenchmarkSettings) -> str:
        return (f"{settings.threads} thread(s), {settings.warmup} warm-up + "
                f"{settings.runs} runs")

    @classmethod
    def latency_notes(cls, report: dict[str, Any]) -> list[str]:
        """Lines the deploy output adds under the latency line: what is estimated."""
        if report["target"].get("emulated"):
            return ["note       emulated target: timings are the emulator's, not the device's"]
        return []

    def __init__(self, profile: TargetProfile) -> None:
        self.profile = profile

    @abc.abstractmethod
    def check(self) -> None: ...

    def supports(self, artifact_format: str, precision: str) -> bool:
        return (artifact_format, precision) == (
            self.profile.artifact_format,
            self.profile.artifact_precision,
        )

    @abc.abstractmethod
    def deploy(self, bundle: Bundle) -> None: ...

    @abc.abstractmethod
    def benchmark(self, settings: BenchmarkSettings) -> LatencyReport: ...

    def cleanup(self) -> None:  # noqa: B027 - optional hook
        """Remove what deploy() left on the device."""
