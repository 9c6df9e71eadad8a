"""Profile one built bundle on its target and check the budget: the step `deploy`,
`profile` and a fleet share. What is adapter-specific (a note before profiling, how the
runs are described, what the latency line adds) comes from the adapter class."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from devices.accuracy_estimate import judged_accuracy
from devices.base import TargetProfile
from devices.budget import evaluate_budget, format_check_table
from devices.bundle import TARGET_REPORT
from devices.errors import ConfigError
from devices.fsutil import atomic_write_text
from devices.profiling import profile_target, settings_for
from devices.registry import adapter_class
from devices.text import optional
from pipeline.config import PipelineConfig
from pipeline.progress import waiting

Echo = Callable[[str], None]


@dataclass(frozen=True)
class DeployOutcome:
    target: str
    bundle: Path
    report: dict[str, Any]
    passed: bool


def profile_bundle(
    config: PipelineConfig, profile: TargetProfile, dist_dir: Path, echo: Echo = print
) -> DeployOutcome:
    settings = settings_for(
        profile, warmup=config.profile.warmup, runs=config.profile.runs,
        threads=config.profile.threads or None, op_profiling=config.profile.op_profiling,
        record_device_address=config.profile.record_device_address,
    )
    adapter = adapter_class(profile.adapter)
    if config.profile.op_profiling and not adapter.op_profile:
        raise ConfigError(
            f"profile.op_profiling = true, but target {profile.name!r} ({profile.adapter}) "
            "has no per-op profile (hint: the phone (adb) and the microcontrollers give one; "
            "set profile.op_profiling = false for this target)")
    bundle = Path(dist_dir) / profile.name
    note = adapter.pre_profile_note(profile, bundle / profile.artifact_file)
    if note:
        echo(note)
    echo(f"profile    {profile.name} via {profile.adapter} ({profile.artifact_file}, "
         f"{adapter.describe_runs(settings)})")
    with waiting("profile", f"{profile.name} running"):
        report = profile_target(profile, bundle, settings)
    check = evaluate_budget(report, profile.budget)
    table = format_check_table(check)
    atomic_write_text(bundle / TARGET_REPORT, render_target_markdown(report, table))
    echo(latency_line(report, adapter.latency_notes(report)))
    echo(table)
    return DeployOutcome(profile.name, bundle, report, check.passed)


def latency_line(report: dict[str, Any], notes: list[str]) -> str:
    latency, accuracy = report["latency_ms"], report["accuracy"]
    text = (f"latency    median {_ms(latency['median'])} p90 {_ms(latency['p90'])} "
            f"init {_ms(latency['init'])}; top1 on {accuracy['samples']} bundled samples "
            f"{_fraction(accuracy['top1'])} (validation {_fraction(accuracy['reference_top1'])})")
    return "\n".join([text, *notes])


_ms = partial(optional, spec=".3f", suffix=" ms")
_fraction = partial(optional, spec=".4f")


def render_target_markdown(report: dict[str, Any], check_table: str) -> str:
    target, artifact, runtime = report["target"], report["artifact"], report["runtime"]
    rows = "\n".join(f"| {key} | {_ms(value)} |" for key, value in report["latency_ms"].items())
    emulated = " (emulated: timings are not the device's)" if target.get("emulated") else ""
    return (
        f"# {target['name']}: {artifact['file']}{emulated}\n\n"
        f"- adapter `{target['adapter']}`, runtime {runtime['name']} {runtime['version']}, "
        f"{runtime['threads']} thread(s)\n"
        f"- artifact {artifact['bytes']:,} bytes, {artifact['format']} {artifact['precision']}\n"
        f"- top-1 on {report['accuracy']['samples']} bundled samples: "
        f"{_fraction(report['accuracy']['top1'])} (validation "
        f"{_fraction(report['accuracy']['reference_top1'])})\n"
        f"{_judged_line(report)}\n"
        f"| latency | value |\n|---|---|\n{rows}\n\n```\n{check_table}\n```\n"
    )


def _judged_line(report: dict[str, Any]) -> str:
    """What an accuracy line is judged on: the top-1 on the most samples, with its 95%
    interval (devices/accuracy_estimate.py)."""
    judged = judged_accuracy(report)
    return "" if judged is None else f"- accuracy judged on {judged.source}: {judged.describe()}\n"
