"""From the cached stages to devices: `artifacts` (bundles), `deploy` (bundles + profile +
budget check), `profile` and `check` — the commands of docs/architecture.md, Contracts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from devices.base import TargetProfile
from devices.errors import ArtifactError
from devices.profiles import load_profile
from devices.registry import adapter_class
from pipeline.bundle import bundle_accuracy, bundle_locks, write_device_bundle
from pipeline.config import PipelineConfig
from pipeline.distribute import cluster_role
from pipeline.fleet import copy_bundle, device_profiles, profile_fleet
from pipeline.hardware_cost.budget_record import budget_summary
from pipeline.profile import DeployOutcome, Echo, profile_bundle
from pipeline.runner import Runner, RunResult
from pipeline.stages.export import ExportResult
from pipeline.stages.validate import ValidateResult
from pipeline.summary import stage_summary
from pipeline.version import __version__

METRIC_KEYS = ("model", "top1", "params", "macs", "bytes", "wall_time_s", "epochs_run",
               "history", "distribute")
PRUNED_KEYS = METRIC_KEYS + ("top1_before_finetune", "top1_before_pruning", "method",
                             "params_before", "macs_before", "bytes_before",
                             "criterion", "finetune", "source", "mac_ratio", "layer_channels",
                             "sparsity", "gzip_bytes_before", "gzip_bytes_after", "layer_costs")
# metrics.qat (quantize.method = "qat"): the fine-tuning, and the int8 TFLite top-1 of QAT's
# file and of post-training quantization of the same final model, on the same test split
QAT_KEYS = ("model", "top1", "params", "macs", "float_top1", "int8_top1", "ptq_top1",
            "gain_points", "finetune", "epochs", "epochs_run", "learning_rate", "scheme",
            "calibrated_ranges", "wall_time_s", "history", "note")


def load_target(name: str, config: PipelineConfig) -> TargetProfile:
    return load_profile(name, overrides=config.overrides_for(name))


def manifest_metrics(run: RunResult, config: PipelineConfig) -> dict[str, Any]:
    """metrics.teacher / student / student_scratch / pruned (docs/architecture.md, Contracts)."""
    def pick(record: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
        return {key: record[key] for key in keys if key in record}

    metrics = {"teacher": pick(run.record("teacher"), METRIC_KEYS)}
    # a file teacher compressed directly runs no student stage (flow.py)
    student = run.record("student") if "student" in run.outcomes else {}
    if student:
        metrics["student"] = pick(student, METRIC_KEYS)
    if student.get("scratch"):
        metrics["student_scratch"] = pick(student["scratch"], METRIC_KEYS)
    if "pruned" in run.outcomes:
        pruned = run.record("pruned")
        metrics["pruned"] = pick(pruned, PRUNED_KEYS)
        metrics["pruned"].setdefault("source", config.prune.source)
        if pruned.get("budget"):  # prune.budget: what it asked and what the target measured
            metrics["pruned"]["budget"] = budget_summary(pruned["budget"])
        history = metrics["pruned"].get("history") or {}
        # The fine-tuning record nests Keras' per-epoch history beside its epoch count.
        metrics["pruned"]["history"] = history.get("history", history)
    if "qat" in run.outcomes:
        metrics["qat"] = pick(run.record("qat"), QAT_KEYS)
    return metrics


def write_target_bundle(
    profile: TargetProfile, run: RunResult, config: PipelineConfig, dist_dir: Path
) -> Path:

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
    adapter = adapter_class(profile.adapter)
    # before anything is written: ops the target lacks, a file that kills its referee
    adapter.check_artifact(profile, artifact, f"{profile.name}'s {profile.artifact_file}")
    metrics = manifest_metrics(run, config)
    metrics["artifacts"] = _artifact_metrics(
        run, artifact, dataset, samples, adapter.accuracy_kernels
    )
    return write_device_bundle(
        dist_dir, profile, artifact, labels=list(dataset.labels),
        x_samples=dataset.x_test[:samples], y_samples=dataset.y_test[:samples],
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
    run: RunResult, artifact: Path, dataset: Any, samples: int, kernels: str
) -> dict[str, dict[str, Any]]:
    """The validate stage's records with each file's weight bytes, plus the shipped
    artifact's top-1 on exactly the samples bundled in inputs.npz (`bundle_accuracy`)."""
    records = ValidateResult.from_dict(run.record("validate")).manifest_metrics()
    exported = ExportResult.from_dict(run.record("export"))
    for file, record in records.items():
        record["weight_bytes"] = exported.artifact(file).weight_bytes
        if exported.artifact(file).scheme is not None:
            record["quantization_scheme"] = exported.artifact(file).scheme
    records[artifact.name] |= bundle_accuracy(
        artifact, dataset.x_test[:samples], dataset.y_test[:samples], kernels)
    return records


def build_artifacts(
    config: PipelineConfig, targets: list[str], *, build_dir: Path, dist_dir: Path,
    echo: Echo = print, force: tuple[str, ...] = (),
) -> dict[str, Path]:
    with bundle_locks(dist_dir, targets, echo):
        return _build_artifacts(config, targets, build_dir=build_dir, dist_dir=dist_dir,
                                echo=echo, force=force)


def _build_artifacts(
    config: PipelineConfig, targets: list[str], *, build_dir: Path, dist_dir: Path,
    echo: Echo = print, force: tuple[str, ...] = (),
) -> dict[str, Path]:
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


def deploy(
    config: PipelineConfig, target: str, *, build_dir: Path, dist_dir: Path,
    echo: Echo = print, force: tuple[str, ...] = (),
) -> DeployOutcome:
    with bundle_locks(dist_dir, [target], echo):
        _build_artifacts(config, [target], build_dir=build_dir, dist_dir=dist_dir, echo=echo,
                         force=force)
        return profile_bundle(config, load_target(target, config), dist_dir, echo)


def deploy_fleet(
    config: PipelineConfig, targets: list[str], *, build_dir: Path, dist_dir: Path,
    echo: Echo = print, force: tuple[str, ...] = (),
) -> list[Any]:
    """Bundles for every target from one training run, then every device profiled
    concurrently; see pipeline/fleet.py."""
    devices = [(target, device) for target in targets
               for device in device_profiles(load_target(target, config))]
    with bundle_locks(dist_dir, [*targets, *(device.name for _, device in devices)], echo):
        _build_artifacts(config, targets, build_dir=build_dir, dist_dir=dist_dir, echo=echo,
                         force=force)
        for target, device in devices:
            if device.name != target:
                copy_bundle(dist_dir, target, device.name)
        return profile_fleet(config, [device for _, device in devices], dist_dir, echo)
