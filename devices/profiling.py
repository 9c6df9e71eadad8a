"""Profile one target: check -> supports -> deploy -> benchmark -> cleanup (always).

Writes dist/<target>/latency_report.json atomically with its `budget` section filled, and
returns the report as a dict. Live device profiling is never cached.
"""

from __future__ import annotations

from pathlib import Path

from devices.accuracy_estimate import judged_accuracy
from devices.base import BenchmarkSettings, Bundle, DeviceError, LatencyReport, TargetProfile
from devices.budget import evaluate_budget
from devices.bundle import LATENCY_REPORT, verify_bundle
from devices.errors import ArtifactError
from devices.fsutil import atomic_write_json
from devices.registry import create_adapter


def settings_for(
    profile: TargetProfile,
    warmup: int = 10,
    runs: int = 50,
    threads: int | None = None,
    op_profiling: bool = False,
    record_device_address: bool = False,
) -> BenchmarkSettings:
    """Benchmark settings whose thread count defaults to the target profile's."""
    return BenchmarkSettings(warmup=warmup, runs=runs,
                             threads=profile.threads if threads is None else threads,
                             op_profiling=op_profiling,
                             record_device_address=record_device_address)


def profile_target(profile: TargetProfile, bundle_root: Path,
                   settings: BenchmarkSettings) -> dict:
    bundle = Bundle(root=Path(bundle_root), artifact=profile.artifact_file)
    if not bundle.artifact_path.exists():
        raise ArtifactError(f"{profile.name}: {bundle.artifact_path} does not exist; the "
                            f"target runs {profile.artifact_file} (hint: `make artifacts "
                            f"TARGETS={profile.name}` builds the bundle)")
    verify_bundle(bundle.root)  # what goes to the device is what the manifest lists
    adapter = create_adapter(profile)
    try:
        adapter.check()
        if not adapter.supports(profile.artifact_format, profile.artifact_precision):
            raise DeviceError(f"{profile.name}: adapter {profile.adapter!r} cannot run a "
                              f"{profile.artifact_precision} {profile.artifact_format} artifact "
                              "(hint: fix [artifact] in the target profile)")
        adapter.deploy(bundle)
        report = adapter.benchmark(settings)
    finally:
        adapter.cleanup()
    document = report.to_dict()
    document["budget"] = evaluate_budget(document, profile.budget).budget_section()
    judged = judged_accuracy(document)
    if judged is not None:  # what the accuracy line is judged on, with its interval
        document.setdefault("extra", {})["accuracy_judged"] = judged.to_dict()
    LatencyReport.from_dict(document, f"the {profile.name} latency report")  # before writing
    atomic_write_json(bundle.root / LATENCY_REPORT, document)
    return document
