"""From the cached stages to devices: `artifacts` (bundles), `deploy` (bundles + profile +
budget check), `profile` and `check` — the commands DESIGN.md names for targets."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from devices.base import TargetProfile
from pipeline import __version__
from pipeline.config import PipelineConfig
from pipeline.errors import ArtifactError
from pipeline.fsutil import atomic_write_text
from pipeline.runner import Runner, RunResult
from pipeline.stages.export import ExportResult
from pipeline.stages.validate import ValidateResult

Echo = Callable[[str], None]
METRIC_KEYS = ("model", "top1", "params", "macs", "bytes", "wall_time_s", "epochs_run",
               "history", "distribute")
PRUNED_KEYS = METRIC_KEYS + ("top1_before_finetune", "top1_before_pruning", "method",
                             "params_before", "macs_before", "bytes_before",
                             "criterion", "finetune", "source", "mac_ratio", "layer_channels",
                             "sparsity", "gzip_bytes_before", "gzip_bytes_after")


@dataclass(frozen=True)
class DeployOutcome:
    target: str
    bundle: Path
    report: dict[str, Any]
    passed: bool


def load_target(name: str, config: PipelineConfig) -> TargetProfile:
    from devices.profiles import load_profile

    return load_profile(name, overrides=dict(config.target_overrides))


def manifest_metrics(run: RunResult, config: PipelineConfig) -> dict[str, Any]:
    """metrics.teacher / student / student_scratch / pruned, per DESIGN.md."""

    def pick(record: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
        return {key: record[key] for key in keys if key in record}

    student = run.record("student")
    metrics = {"teacher": pick(run.record("teacher"), METRIC_KEYS),
               "student": pick(student, METRIC_KEYS)}
    if student.get("scratch"):
        metrics["student_scratch"] = pick(student["scratch"], METRIC_KEYS)
    if "pruned" in run.outcomes:
        pruned = run.record("pruned")
        metrics["pruned"] = pick(pruned, PRUNED_KEYS)
        metrics["pruned"].setdefault("source", config.prune.source)
        history = metrics["pruned"].get("history") or {}
        # The fine-tuning record nests Keras' per-epoch history beside its epoch count.
        metrics["pruned"]["history"] = history.get("history", history)
    return metrics


def _c_sources(artifact: Path, run: RunResult, scratch: Path, samples: int) -> list[Path]:
    """Microcontroller bundles also carry the generated C sources (`model/`)."""
    from devices.mcu.codegen import generate_sources

    folder = scratch / "model"
    generate_sources(artifact, folder, inputs=run.dataset.x_test[:samples])
    return [folder]


BUNDLE_EXTRAS: dict[str, Callable[[Path, RunResult, Path, int], list[Path]]] = {
    "mcu-qemu": _c_sources,
    "mcu-serial": _c_sources,
}


def write_target_bundle(
    profile: TargetProfile, run: RunResult, config: PipelineConfig, dist_dir: Path
) -> Path:
    from pipeline.bundle import write_bundle

    export_entry = run.outcomes["export"].entry
    artifact = export_entry.path / profile.artifact_file
    if not artifact.is_file():
        raise ArtifactError(
            f"target {profile.name} runs {profile.artifact_file}, which the export stage did "
            f"not produce (formats {list(config.export.formats)}, precisions "
            f"{list(config.export.precisions)}) (hint: add {profile.artifact_format} and "
            f"{profile.artifact_precision} to [export] formats and precisions)"
        )
    samples = config.data.bundle_samples
    dataset = run.dataset
    metrics = manifest_metrics(run, config)
    metrics["artifacts"] = _artifact_metrics(
        run, artifact, dataset, samples, reference_kernels=profile.adapter in BUNDLE_EXTRAS
    )
    with tempfile.TemporaryDirectory() as scratch:
        extras = BUNDLE_EXTRAS.get(profile.adapter)
        extra_files = extras(artifact, run, Path(scratch), samples) if extras else []
        return write_bundle(
            dist_dir, target=profile.name, artifact_files=[artifact, *extra_files],
            labels=list(dataset.labels), x_samples=dataset.x_test[:samples],
            y_samples=dataset.y_test[:samples],
            manifest_fields={
                "pipeline_version": __version__,
                "config_fingerprint": config.fingerprint(),
                "dataset": dataset.summary(),
                "input": {"normalisation": dataset.normalisation},
                "metrics": metrics,
                "machines": {  # whose kernels converted and validated (README, "int8 ONNX")
                    "export": run.record("export")["machine"],
                    "validate": run.record("validate")["machine"],
                },
            },
        )


def _artifact_metrics(
    run: RunResult, artifact: Path, dataset: Any, samples: int, reference_kernels: bool
) -> dict[str, dict[str, Any]]:
    """The validate stage's records with each file's weight bytes, plus the shipped
    artifact's top-1 on exactly the samples bundled in inputs.npz: the number a device
    must reproduce. Microcontroller C kernels are bit-exact with LiteRT's reference kernels
    (not its optimised ones, which can round a near-tie differently), so their number
    comes from those."""
    from devices.runtimes import load_tflite_interpreter, run_tflite

    records = ValidateResult.from_dict(run.record("validate")).manifest_metrics()
    exported = ExportResult.from_dict(run.record("export"))
    for file, record in records.items():
        record["weight_bytes"] = exported.artifact(file).weight_bytes
        if exported.artifact(file).scheme is not None:
            record["quantization_scheme"] = exported.artifact(file).scheme
    x, y = dataset.x_test[:samples], dataset.y_test[:samples]
    interpreter, _ = load_tflite_interpreter(artifact, reference_kernels=reference_kernels)
    bundle_top1 = float(np.mean(np.argmax(run_tflite(interpreter, x), axis=-1) == y))
    records[artifact.name] |= {"bundle_top1": bundle_top1, "bundle_samples": len(y),
                               "bundle_kernels": "reference" if reference_kernels else "optimised"}
    return records


def build_artifacts(
    config: PipelineConfig, targets: list[str], *, build_dir: Path, dist_dir: Path,
    echo: Echo = print, force: tuple[str, ...] = (),
) -> dict[str, Path]:
    from pipeline.distribute import cluster_role
    from pipeline.summary import stage_summary

    profiles = [load_target(name, config) for name in targets]  # fail fast on a bad name
    run = Runner(config, build_dir, force=force, echo=echo).run()
    echo("\n" + stage_summary({name: o.record for name, o in run.outcomes.items()}) + "\n")
    if not cluster_role().is_chief:
        echo("bundle     skipped: only the cluster's chief writes dist/")
        return {}
    bundles = {}
    for profile in profiles:
        bundles[profile.name] = write_target_bundle(profile, run, config, dist_dir)
        echo(f"bundle     {bundles[profile.name]}  ({profile.artifact_file})")
    return bundles


def profile_bundle(
    config: PipelineConfig, profile: TargetProfile, dist_dir: Path, echo: Echo = print
) -> DeployOutcome:
    from devices.budget import evaluate_budget, format_check_table
    from devices.profiling import profile_target, settings_for

    settings = settings_for(
        profile, warmup=config.profile.warmup, runs=config.profile.runs,
        threads=config.profile.threads or None, op_profiling=config.profile.op_profiling,
    )
    bundle = Path(dist_dir) / profile.name
    if profile.adapter in PRE_PROFILE_NOTES:
        echo(PRE_PROFILE_NOTES[profile.adapter](bundle / profile.artifact_file, profile))
    runs = (f"{settings.threads} thread(s), {settings.warmup} warm-up + {settings.runs} runs"
            if profile.adapter not in PRE_PROFILE_NOTES else "every bundled sample once")
    echo(f"profile    {profile.name} via {profile.adapter} ({profile.artifact_file}, {runs})")
    report = profile_target(profile, bundle, settings)
    check = evaluate_budget(report, profile.budget)
    table = format_check_table(check)
    atomic_write_text(bundle / "report.md", render_target_markdown(report, table))
    echo(latency_line(report))
    echo(table)
    return DeployOutcome(profile.name, bundle, report, check.passed)


def _mcu_readiness(artifact: Path, profile: TargetProfile) -> str:
    from devices.mcu.readiness import analyse

    budget = profile.budget
    return analyse(artifact, budget.flash_kb, budget.ram_kb).to_text()


# Microcontroller adapters: print the readiness report first; they run each bundled sample
# once (instruction counts are exact, so warm-up and repeated runs do not apply).
PRE_PROFILE_NOTES: dict[str, Callable[[Path, TargetProfile], str]] = {
    "mcu-qemu": _mcu_readiness,
    "mcu-serial": _mcu_readiness,
}


def deploy(
    config: PipelineConfig, target: str, *, build_dir: Path, dist_dir: Path,
    echo: Echo = print, force: tuple[str, ...] = (),
) -> DeployOutcome:
    build_artifacts(config, [target], build_dir=build_dir, dist_dir=dist_dir, echo=echo,
                    force=force)
    return profile_bundle(config, load_target(target, config), dist_dir, echo)


def deploy_fleet(
    config: PipelineConfig, targets: list[str], *, build_dir: Path, dist_dir: Path,
    echo: Echo = print, force: tuple[str, ...] = (),
) -> list[Any]:
    """Bundles for every target from one training run, then every device profiled
    concurrently; see pipeline/fleet.py."""
    from pipeline.fleet import copy_bundle, device_profiles, profile_fleet

    build_artifacts(config, targets, build_dir=build_dir, dist_dir=dist_dir, echo=echo,
                    force=force)
    devices = []
    for target in targets:
        for device in device_profiles(load_target(target, config)):
            if device.name != target:
                copy_bundle(dist_dir, target, device.name)
            devices.append(device)
    return profile_fleet(config, devices, dist_dir, echo)


def latency_line(report: dict[str, Any]) -> str:
    latency, accuracy = report["latency_ms"], report["accuracy"]
    text = (f"latency    median {_ms(latency['median'])} p90 {_ms(latency['p90'])} "
            f"init {_ms(latency['init'])}; top1 on {accuracy['samples']} bundled samples "
            f"{_fraction(accuracy['top1'])} (validation {_fraction(accuracy['reference_top1'])})")
    instructions = report.get("instructions")
    if instructions:
        text += (f"\ninstr.     {instructions['count']:,} per inference, "
                 f"{instructions['per_mac']:.2f} per MAC, est. {instructions['est_ms']:.2f} ms "
                 f"at {instructions['clock_mhz']} MHz (estimate: instruction-accurate emulator)")
    elif report["target"].get("emulated"):
        text += "\nnote       emulated target: timings are the emulator's, not the device's"
    return text


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} ms"


def _fraction(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


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
        f"{_fraction(report['accuracy']['reference_top1'])})\n\n"
        f"| latency | value |\n|---|---|\n{rows}\n\n```\n{check_table}\n```\n"
    )
