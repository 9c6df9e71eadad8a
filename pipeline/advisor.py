"""Distill, prune or both? Three arms run against one target budget:

- `distill`        distillation only: the distilled student, `prune.method = none`;
- `prune`          pruning only: the TEACHER pruned to about the student's MACs
                   (`prune.source = teacher`, ratio solved from MACs), then fine-tuned;
- `distill+prune`  both: the distilled student pruned with the config's prune settings.

Each arm is the user's config plus a few overrides, run through the Runner, so stages two
arms share (the teacher, the student) and every earlier run come from the stage cache.
`choose_arm` is the decision, a pure function of the arms' numbers and the budget.

Stand-ins where the target did not measure an arm (each named in the arm's `*_source`):
- latency: the target's latency_report.json measured one config; the arm built from that
  config (same config fingerprint as dist/<target>/manifest.json) gets the measured value,
  the others the measured value scaled by their MACs ratio (ms per MAC held constant);
- size (flash): the bytes of the target's artifact from the arm's export record (for a C
  target, the int8 TFLite model its sources are generated from);
- accuracy: that artifact's top-1 from the arm's validate record, else the Keras top-1;
- RAM: measured for the profiled arm only; unverified for the others.
A limit an arm has no number for is listed as unverified and does not disqualify it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from devices.artifact_kinds import model_file
from devices.budget import read_report
from devices.bundle import LATENCY_REPORT, MANIFEST, read_manifest
from devices.errors import ConfigError
from devices.text import format_table
from models.complexity import count_macs
from pipeline import flow
from pipeline.config import PipelineConfig, build_config
from pipeline.plots import non_dominated
from pipeline.report import _final_stage, target_latency
from pipeline.runner import Runner
from pipeline.stages.train import build_for

ARM_LABELS = {
    "distill": "distillation only",
    "prune": "pruning only (teacher pruned to the student's MACs)",
    "distill+prune": "distillation + pruning",
}
MAX_PRUNE_RATIO = 0.95  # PruneConfig.ratio's upper bound
PRUNE_STAGE = "pruned"  # pipeline.stages.prune's Stage name
ARTIFACT_STAGES = ("validate", "export", PRUNE_STAGE)  # run the arms up to the last present
BYTES_PER_WEIGHT = {"fp32": 4, "fp16": 2, "dynamic": 1, "int8": 1}


@dataclass(frozen=True)
class ArmRecord:
    name: str  # a key of ARM_LABELS
    top1: float
    params: int
    macs: int
    bytes: int | None  # the target's artifact (or its stand-in)
    latency_ms: float | None
    ram_kb: float | None = None
    top1_source: str = "Keras model"
    bytes_source: str = ""
    latency_source: str = ""
    overrides: tuple[str, ...] = ()  # `--set` items that reproduce the arm
    records: dict[str, Any] = field(default_factory=dict)  # the stage records it came from

    @property
    def label(self) -> str:
        return ARM_LABELS.get(self.name, self.name)


@dataclass(frozen=True)
class LimitCheck:
    limit: str  # budget field: latency_ms, min_accuracy, flash_kb, ram_kb
    what: str
    unit: str
    bound: float
    value: float | None
    passed: bool | None  # None: the arm has no number for this limit (unverified)

    @property
    def excess(self) -> float | None:
        """How far past the limit (> 0 = broken), in the limit's unit."""
        if self.value is None:
            return None
        return self.bound - self.value if self.limit == "min_accuracy" else (
            self.value - self.bound)

    @property
    def relative_excess(self) -> float | None:
        return None if self.excess is None or not self.bound else self.excess / self.bound

    def describe(self) -> str:
        if self.value is None:
            return f"{self.what}: unverified (no number for this arm)"
        relation = ">=" if self.limit == "min_accuracy" else "<="
        text = (f"{self.what} {_number(self.value, self.unit)} vs limit {relation} "
                f"{_number(self.bound, self.unit)}")
        if self.passed is False:
            text += (f": misses by {_number(abs(self.excess), self.unit, difference=True)} "
                     f"({abs(self.relative_excess or 0):.1%})")
        return text


@dataclass(frozen=True)
class Recommendation:
    arm: str | None  # None: no arm meets the budget
    meets_budget: bool
    rationale: str
    arms: tuple[ArmRecord, ...]
    checks: dict[str, tuple[LimitCheck, ...]]
    front: tuple[str, ...]  # arms on the accuracy/latency/size front
    target: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "arm": self.arm, "meets_budget": self.meets_budget,
                "rationale": self.rationale, "front": list(self.front),
                "arms": [asdict(arm) | {"label": arm.label} for arm in self.arms],
                "checks": {name: [asdict(check) | {"excess": check.excess}
                                  for check in checks]
                           for name, checks in self.checks.items()}}


def _number(value: float, unit: str, difference: bool = False) -> str:
    if unit == "%":  # accuracies are fractions; their differences are points of top-1
        return f"{100 * value:.2f} points" if difference else f"{100 * value:.2f}%"
    return f"{value:,.3f} {unit}" if abs(value) < 10 else f"{value:,.1f} {unit}"


# --- the decision (pure) -----------------------------------------------------------------


def check_arm(arm: ArmRecord, budget: Any) -> tuple[LimitCheck, ...]:
    """Every limit of `budget` (devices.base.Budget) the arm can be held against."""
    stat = getattr(budget, "latency_stat", "median")
    limits: list[tuple[str, str, str, float | None, Callable[[float, float], bool]]] = [
        ("latency_ms", f"latency {stat}", "ms", arm.latency_ms, lambda v, b: v <= b),
        ("min_accuracy", "top-1", "%", arm.top1, lambda v, b: v >= b),
        ("flash_kb", "size", "kB", None if arm.bytes is None else arm.bytes / 1024.0,
         lambda v, b: v <= b),
        ("ram_kb", "RAM", "kB", arm.ram_kb, lambda v, b: v <= b),
    ]
    checks = []
    for limit, what, unit, value, within in limits:
        bound = getattr(budget, limit, None)
        if bound is None:
            continue
        passed = None if value is None else bool(within(value, bound))
        checks.append(LimitCheck(limit, what, unit, float(bound), value, passed))
    return tuple(checks)


def _front(arms: Sequence[ArmRecord]) -> tuple[str, ...]:
    objectives: list[Callable[[ArmRecord], float | None]] = [lambda arm: -arm.top1]
    if all(arm.latency_ms is not None for arm in arms):
        objectives.append(lambda arm: arm.latency_ms)
    if all(arm.bytes is not None for arm in arms):
        objectives.append(lambda arm: arm.bytes)
    return tuple(arms[index].name for index in non_dominated(arms, objectives))


def _arm_summary(arm: ArmRecord) -> str:
    latency = "latency not profiled" if arm.latency_ms is None else (
        _number(arm.latency_ms, "ms") + (f" ({arm.latency_source})" if arm.latency_source
                                          else ""))
    size = "size unknown" if arm.bytes is None else f"{arm.bytes:,} B"
    return (f"{arm.label}: top-1 {100 * arm.top1:.2f}%, {arm.macs:,} MACs, {latency}, "
            f"{size}")


def _worst_relative_excess(checks: Sequence[LimitCheck]) -> float:
    return max((check.relative_excess or 0.0) for check in checks if check.passed is False)


def choose_arm(arms: Sequence[ArmRecord], budget: Any, target: str = "") -> Recommendation:
    """The front arm that meets `budget` with the best top-1 (ties: faster, then smaller).
    When none meets it, say which limit each arm misses and by how much."""
    if not arms:
        raise ConfigError("the advisor got no arms to compare (hint: run `make advise`)")
    arms = tuple(arms)
    checks = {arm.name: check_arm(arm, budget) for arm in arms}
    front = _front(arms)
    passing = [arm for arm in arms if not any(c.passed is False for c in checks[arm.name])]
    where = f" on {target}" if target else ""
    lines = []
    if passing:
        best = max(passing, key=lambda arm: (arm.top1, -(arm.latency_ms or 0.0),
                                             -(arm.bytes or 0)))
        lines.append(f"Recommended{where}: {best.label} — the most accurate arm within the "
                     f"budget ({_arm_summary(best)}).")
        lines += [f"  - {check.describe()}" for check in checks[best.name]]
        for arm in arms:
            if arm is best:
                continue
            verdict = "meets the budget" if arm in passing else "breaks the budget: " + "; ".join(
                c.describe() for c in checks[arm.name] if c.passed is False)
            lines.append(f"Compared: {_arm_summary(arm)} — {verdict}.")
    else:
        best = None
        lines.append(f"No arm meets the budget{where}.")
        for arm in sorted(arms, key=lambda arm: _worst_relative_excess(checks[arm.name])):
            failed = "; ".join(c.describe() for c in checks[arm.name] if c.passed is False)
            lines.append(f"  - {arm.label}: {failed}.")
        closest = min(arms, key=lambda arm: _worst_relative_excess(checks[arm.name]))
        lines.append(f"Closest: {closest.label} ({_arm_summary(closest)}).")
    unverified = sorted({c.what for arm_checks in checks.values() for c in arm_checks
                         if c.passed is None})
    if unverified:
        lines.append(f"Unverified for some arms (no number): {', '.join(unverified)}.")
    lines.append(f"Accuracy/latency/size front: {', '.join(ARM_LABELS.get(n, n) for n in front)}.")
    return Recommendation(best.name if best else None, best is not None, "\n".join(lines),
                          arms, checks, front, target)


# --- the prune-only arm's ratio ----------------------------------------------------------


def quadratic_macs_fraction(ratio: float) -> float:
    """Remaining MACs of a conv chain whose every layer loses `ratio` of its channels:
    a layer's MACs scale with in x out channels, so ~ (1 - ratio)^2."""
    return (1.0 - ratio) ** 2


def solve_prune_ratio(
    wanted_fraction: float,
    macs_fraction_at: Callable[[float], float] = quadratic_macs_fraction,
    tolerance: float = 1e-3,
) -> float:
    """The prune.ratio whose remaining MACs fraction is `wanted_fraction` (bisection; the
    fraction falls as the ratio grows). Clamped to [0, MAX_PRUNE_RATIO]."""
    if wanted_fraction >= macs_fraction_at(0.0):
        return 0.0
    if wanted_fraction <= macs_fraction_at(MAX_PRUNE_RATIO):
        return MAX_PRUNE_RATIO
    low, high = 0.0, MAX_PRUNE_RATIO
    while high - low > tolerance:
        middle = (low + high) / 2
        if macs_fraction_at(middle) > wanted_fraction:
            low = middle
        else:
            high = middle
    return round((low + high) / 2, 3)


def _width_scaled_macs_fraction(config: PipelineConfig, dataset: Any) -> Callable[[float], float]:
    """Remaining MACs of the teacher with every layer `ratio` narrower: its zoo model built
    (not trained) at width x (1 - ratio). Counts first and last layers right, which the
    quadratic rule overestimates."""

    section = config.teacher
    full = count_macs(build_for(section, dataset))
    cache: dict[float, float] = {}

    def fraction(ratio: float) -> float:
        if ratio not in cache:
            width = max(section.width * (1.0 - ratio), 0.01)
            narrower = build_for(_replace(section, width=width), dataset)
            cache[ratio] = count_macs(narrower) / full
        return cache[ratio]

    return fraction


def _replace(section: Any, **changes: Any) -> Any:
    return dataclasses.replace(section, **changes)


# --- running the arms --------------------------------------------------------------------


def arm_config(config: PipelineConfig, overrides: dict[str, Any]) -> PipelineConfig:
    """`config` with `section.key` overrides, validated like `--set` items."""
    raw = config.to_dict()
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        raw[section][name] = value
    return build_config(raw, config.target_overrides, config.target_settings)


def _arm_overrides(config: PipelineConfig) -> dict[str, dict[str, Any]]:
    method = config.prune.method if config.prune.method != "none" else "channel"
    return {
        "distill": {"prune.method": "none"},
        "distill+prune": {"prune.method": method, "prune.source": "student"},
        "prune": {"prune.method": method, "prune.source": "teacher", "prune.threshold": 0.0},
    }


def _artifact_numbers(records: dict[str, Any], file: str) -> dict[str, Any]:
    exported = next((a for a in (records.get("export") or {}).get("artifacts", [])
                     if a.get("file") == file), None)
    validated = next((a for a in (records.get("validate") or {}).get("artifacts", [])
                      if a.get("file") == file), None)
    return {"bytes": exported.get("bytes") if exported else None,
            "top1": validated.get("top1") if validated else None}




@dataclass(frozen=True)
class Measurement:
    """What dist/<target>/ holds about the one config that was profiled there."""

    fingerprint: str | None
    macs: int | None
    latency_ms: float | None
    source: str
    ram_kb: float | None


def read_measurement(dist_dir: Path, target: str) -> Measurement | None:
    folder = Path(dist_dir) / target
    if not (folder / LATENCY_REPORT).is_file() or not (folder / MANIFEST).is_file():
        return None
    report = read_report(folder / LATENCY_REPORT)
    manifest = read_manifest(folder)
    metrics = manifest.metrics
    value, source = target_latency(report)
    memory = report.get("memory") or {}
    ram = memory["arena_bytes"] / 1024.0 if memory.get("arena_bytes") is not None else (
        memory["peak_rss_mb"] * 1024.0 if memory.get("peak_rss_mb") is not None else None)
    return Measurement(manifest.config_fingerprint,
                       (metrics.get(_final_stage(metrics)) or {}).get("macs"), value,
                       f"{source} on {target}", ram)


def arm_record(name: str, overrides: dict[str, Any], records: dict[str, Any], profile: Any,
               fingerprint: str, measurement: Measurement | None) -> ArmRecord:
    model = records[PRUNE_STAGE]
    file = model_file(profile.artifact_format, profile.artifact_precision)  # flash stand-in
    artifact = _artifact_numbers(records, file)
    latency, latency_source, ram = None, "not profiled", None
    if measurement and measurement.latency_ms is not None:
        if measurement.fingerprint == fingerprint:
            latency, latency_source, ram = (measurement.latency_ms, measurement.source,
                                            measurement.ram_kb)
        elif measurement.macs:
            latency = measurement.latency_ms * model["macs"] / measurement.macs
            latency_source = (f"estimated: {measurement.latency_ms:.4g} ms {measurement.source}"
                              f" x MACs ratio")
    if artifact["bytes"] is not None:
        size, size_source = artifact["bytes"], f"{file} from the export stage"
    else:
        weight = BYTES_PER_WEIGHT[profile.artifact_precision]
        size = model["params"] * weight
        size_source = f"estimated: {model['params']:,} params x {weight} B"
    return ArmRecord(
        name=name, top1=artifact["top1"] if artifact["top1"] is not None else model["top1"],
        params=model["params"], macs=model["macs"], bytes=size, latency_ms=latency,
        ram_kb=ram, top1_source=f"{file} on the test split" if artifact["top1"] is not None
        else "Keras model on the test split", bytes_source=size_source,
        latency_source=latency_source,
        overrides=tuple(f"{key}={value}" for key, value in overrides.items()),
        records={stage: {k: v for k, v in record.items() if k != "history"}
                 for stage, record in records.items() if isinstance(record, dict)},
    )


def _last_stage(stage_names: Sequence[str]) -> str:
    if PRUNE_STAGE not in stage_names:
        raise ConfigError(f"the advisor needs the prune stage; the flow has only "
                          f"{', '.join(stage_names)} (hint: add pipeline.stages.prune to "
                          "pipeline/flow.py)")
    return next(stage for stage in ARTIFACT_STAGES if stage in stage_names)


def advise(config: PipelineConfig, target_profile: Any, build_dir: Path = Path("build"),
           echo: Callable[[str], None] = print, dist_dir: Path = Path("dist")) -> Recommendation:
    """Run (from cache where possible) the three arms and choose one for the target."""

    until = _last_stage(flow.stage_names())
    measurement = read_measurement(dist_dir, target_profile.name)
    overrides = _arm_overrides(config)
    results: dict[str, tuple[dict[str, Any], PipelineConfig, Any]] = {}
    first = arm_config(config, overrides["distill"])
    echo(f"advisor: arm {ARM_LABELS['distill']} (--set prune.method=none)")
    run = Runner(first, build_dir, echo=echo).run(until)
    teacher_macs, student_macs = run.record("teacher")["macs"], run.record("student")["macs"]
    ratio = solve_prune_ratio(student_macs / teacher_macs,
                              _width_scaled_macs_fraction(config, run.dataset))
    overrides["prune"]["prune.ratio"] = ratio
    echo(f"advisor: teacher {teacher_macs:,} MACs, student {student_macs:,} MACs -> "
         f"prune-only ratio {ratio}")
    results["distill"] = (overrides["distill"], first, run)
    for name in ("prune", "distill+prune"):
        arm = arm_config(config, overrides[name])
        echo(f"advisor: arm {ARM_LABELS[name]} "
             f"({' '.join(f'--set {k}={v}' for k, v in overrides[name].items())})")
        results[name] = (overrides[name], arm, Runner(arm, build_dir, echo=echo).run(until))
    arms = [arm_record(name, arm_overrides, {stage: outcome.record for stage, outcome
                                             in run.outcomes.items()},
                       target_profile, arm.fingerprint(), measurement)
            for name, (arm_overrides, arm, run) in results.items()]
    return choose_arm(arms, target_profile.budget, target_profile.name)


def format_recommendation(recommendation: Recommendation) -> str:
    """A table of the three arms, then the rationale."""
    rows = [(arm.label, f"{100 * arm.top1:.2f}%", arm.params, arm.macs, arm.bytes,
             None if arm.latency_ms is None else round(arm.latency_ms, 4),
             "yes" if not any(c.passed is False for c in recommendation.checks[arm.name])
             else "no") for arm in recommendation.arms]
    table = format_table(("arm", "top-1", "params", "MACs", "bytes", "latency (ms)",
                          "meets budget"), rows)
    return f"{table}\n\n{recommendation.rationale}"
