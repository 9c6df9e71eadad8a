"""One point of the study: an arm at a level and seed, trained through the stage cache,
exported, validated, its accuracy measured per image on validation and test, and its own
artifact profiled on every target. Profiles are stage-cache entries keyed by the artifact's
sha256 and the target's settings (build/cache/study-profile/<key>/: the bundle as profiled,
sealed), so a warm study costs no device time."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from devices.artifact_kinds import format_of, model_file
from devices.base import TargetProfile
from devices.budget import evaluate_budget, read_report
from devices.bundle import LATENCY_REPORT
from devices.errors import PipelineError
from devices.fsutil import atomic_directory, sha256_file
from pipeline.bundle import BUNDLE_RUNNERS
from pipeline.cache import StageCache
from pipeline.config import LABELS_ONLY, PipelineConfig, canonical_json, section_to_dict
from pipeline.data import Dataset
from pipeline.deploy import write_target_bundle
from pipeline.hardware_cost.budget_record import budget_summary
from pipeline.profile import Echo, profile_bundle
from pipeline.report import target_latency
from pipeline.runner import Runner, RunResult

PROFILE_CACHE = "study-profile"


@dataclass(frozen=True)
class PointSpec:
    arm: str
    level: str
    seed: int
    config: PipelineConfig
    overrides: dict[str, Any]

    @property
    def name(self) -> str:  # a folder name: arm, level and seed
        level = self.level.replace("/", "-")
        return f"{self.arm.replace('+', '-')}_{level}_seed{self.seed}"


@dataclass
class Point:
    """A measured point; `record` is its row of study.json."""

    record: dict[str, Any]
    val_correct: np.ndarray | None = None
    test_correct: np.ndarray | None = None
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.record.get("error") is not None


def export_for(targets: list[TargetProfile]) -> dict[str, Any]:
    """Only the artifacts the targets run: a study point exports one file, not eight."""
    formats = sorted({"tflite" if t.artifact_format == "c" else t.artifact_format
                      for t in targets})
    return {"export.formats": formats,
            "export.precisions": sorted({t.artifact_precision for t in targets})}


def learnt_from_teacher(student: dict[str, Any], pruned: dict[str, Any]) -> bool:
    """From the stage records: the student distilled (and kept), or a kd fine-tune."""
    kept_student = pruned.get("method") == "none" or pruned.get("source") == "student"
    distilled = student.get("loss") != LABELS_ONLY
    return (kept_student and distilled) or pruned.get("finetune") == "kd"


def _origin(run: RunResult) -> dict[str, Any]:
    # a file teacher pruned directly trains no student (flow.compresses_teacher_directly)
    student = run.record("student") if "student" in run.outcomes else {}
    pruned = run.record("pruned")
    pruned_source = None if pruned.get("method") == "none" else pruned.get("source")
    from_teacher = learnt_from_teacher(student, pruned)
    return {
        "finetune": pruned.get("finetune"),
        # a pruned teacher was trained on the labels (the teacher stage has no other loss)
        "loss": student.get("loss") if pruned_source != "teacher" else LABELS_ONLY,
        "teacher": run.outcomes["teacher"].entry.key if from_teacher else None,
        "pruned_from": None if pruned_source is None else run.outcomes[pruned_source].entry.key,
    }


def _correct(artifact: Path, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per image, right or not, with the optimised kernels the validate stage uses (the
    reference kernels a C target matches can round a near-tie differently; each target's
    profile checks its own outputs on the bundled images)."""
    logits = BUNDLE_RUNNERS[format_of(artifact)](artifact, x, "optimised")
    return np.argmax(logits, axis=-1) == np.asarray(y)


def profile_key(profile: TargetProfile, config: PipelineConfig, sha256: str) -> str:
    """The profile's cache key: the artifact, the target's settings and [profile]."""
    payload = {"artifact": sha256, "target": dataclasses.asdict(profile),
               "profile": section_to_dict(config.profile)}
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


def _latency(report: dict[str, Any], profile: TargetProfile, sha256: str
             ) -> tuple[dict[str, Any] | None, str | None]:
    """The report's numbers, or None and why: a profile of another file, or an emulator's
    wall clock (a microcontroller's exact instruction count is kept: it is the device's)."""
    if report["artifact"]["sha256"] != sha256:
        return None, (f"the {profile.name} report profiled {report['artifact']['sha256'][:12]}, "
                      f"not this point's artifact {sha256[:12]}")
    value, source = target_latency(report)
    if report["target"]["emulated"] and not report["instructions"]:
        return None, (f"{profile.name} is emulated: its timings are the emulator's (accuracy "
                      "and bit-identity only)")
    if value is None:
        return None, f"the {profile.name} report has no latency"
    instructions = report["instructions"] or {}
    return {"ms": value, "stat": report["budget"]["limits"].get("latency_stat", "median"),
            "source": source, "instructions": instructions.get("count"),
            "artifact_sha256": report["artifact"]["sha256"],
            "bundle_top1": report["accuracy"]["top1"]}, None


def profile_point(spec: PointSpec, run: RunResult, profile: TargetProfile, sha256: str,
                  points_dir: Path, build_dir: Path, echo: Echo) -> dict[str, Any]:
    """The target's latency report for this point's artifact, from the stage cache's
    `study-profile` entry (the bundle as profiled, sealed like a stage's files) or bundled
    and profiled through the adapter into one; the bundle is then shown in
    dist/study/points/<point>/<target>/."""
    cache = StageCache(Path(build_dir) / "cache")

    def bundle_and_profile(scratch: Path) -> dict[str, Any]:
        write_target_bundle(profile, run, spec.config, scratch)
        profile_bundle(spec.config, profile, scratch, lambda line: echo("    " + line))
        return {"target": profile.name, "artifact_sha256": sha256}

    entry, _ = cache.compute_once(
        PROFILE_CACHE, profile_key(profile, spec.config, sha256), bundle_and_profile,
        lambda lock: echo(f"    profile    waiting: another run is profiling this artifact on "
                          f"{profile.name} (lock {lock})"))
    bundle = entry.path / profile.name
    _show(bundle, Path(points_dir) / spec.name / profile.name)
    return read_report(bundle / LATENCY_REPORT)


def _show(bundle: Path, folder: Path) -> None:
    with atomic_directory(folder) as scratch:
        shutil.copytree(bundle, scratch, dirs_exist_ok=True)


def failed_point(spec: PointSpec, error: str) -> Point:
    """A point whose stages were refused (e.g. int8 refused by validation): the point's
    record says why, the study goes on."""
    return Point(_base_record(spec) | {"error": error})


def _base_record(spec: PointSpec) -> dict[str, Any]:
    return {"arm": spec.arm, "level": spec.level, "seed": spec.seed,
            "overrides": [f"{k}={v}" for k, v in spec.overrides.items()], "error": None}


# profile_point's signature: an executor may wrap it (the Ray one: a target profiled on a
# worker, whose failure there is this point's, not profiled again here)
Profiler = Callable[[PointSpec, RunResult, TargetProfile, str, Path, Path, Echo],
                    dict[str, Any]]


def measure_point(spec: PointSpec, targets: list[TargetProfile], dataset: Dataset, *,
                  build_dir: Path, points_dir: Path, echo: Echo,
                  profiler: Profiler = profile_point) -> Point:
    record = _base_record(spec)
    try:
        run = Runner(spec.config, build_dir, echo=lambda line: echo("    " + line)).run(
            dataset=dataset)
    except PipelineError as error:  # e.g. int8 refused by validation: the point, not the study
        return failed_point(spec, str(error))
    pruned = run.record("pruned")
    primary = targets[0]
    artifact = run.outcomes["export"].entry.path / model_file(primary.artifact_format,
                                                              primary.artifact_precision)
    sha256 = sha256_file(artifact)
    val_correct = _correct(artifact, dataset.x_val, dataset.y_val)
    test_correct = _correct(artifact, dataset.x_test, dataset.y_test)
    record |= {"macs": pruned["macs"], "params": pruned["params"],
               "bytes": artifact.stat().st_size, "artifact": artifact.name,
               "artifact_sha256": sha256,
               "top1_val": float(np.mean(val_correct)) if len(val_correct) else None,
               "top1_test": float(np.mean(test_correct)), **_origin(run),
               "prune_budget": budget_summary(pruned["budget"]) if pruned.get("budget") else None,
               "latency": {}, "budget": {}, "ops": {}}
    point = Point(record, val_correct, test_correct)
    for profile in targets:
        own = run.outcomes["export"].entry.path / model_file(profile.artifact_format,
                                                             profile.artifact_precision)
        own_sha = sha256 if own == artifact else sha256_file(own)
        try:
            report = profiler(spec, run, profile, own_sha, points_dir, build_dir, echo)
        except PipelineError as error:  # a device that failed: this point is not measured
            record["latency"][profile.name] = {"ms": None, "reason": str(error)}
            record["budget"][profile.name] = {"passed": False, "violations": [str(error)]}
            continue
        point.reports[profile.name] = report
        if report.get("ops"):  # where the cost went, op by op (the microcontrollers')
            record["ops"][profile.name] = [
                {key: row.get(key) for key in ("name", "output_shape", "instructions", "ms")}
                for row in report["ops"]]
        latency, reason = _latency(report, profile, own_sha)
        record["latency"][profile.name] = latency or {"ms": None, "reason": reason}
        check = evaluate_budget(report, profile.budget)  # the evaluator `make check` uses
        record["budget"][profile.name] = {"passed": check.passed,
                                          "violations": check.violations}
    return point
