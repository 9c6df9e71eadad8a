"""Compression levels: a fraction of the teacher's MACs, reached by the student's width
(the student arms) or by the channel-prune ratio (the pruned arms); the hardware-aware arms
reach the same fraction of the teacher's measured cost on the study's first target (a
prune budget, pipeline/pruning/budget_search.py). Widths, ratios and the teacher's cost are
found on models built but not trained, so a level costs no training to plan."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from models.complexity import count_macs
from pipeline.config import PipelineConfig, PruneConfig
from pipeline.data import Dataset
from pipeline.pruning.channel import prune_channels
from pipeline.stages.train import build_for

MAX_PRUNE_RATIO = 0.95  # PruneConfig.ratio's upper bound
WIDTH_RANGE = (0.05, 8.0)  # TrainingSection.width's bounds
MAC_TOLERANCE = 0.10  # the arms of one level must reach MACs within 10% of the level's


@dataclass(frozen=True)
class LevelPlan:
    """How every arm reaches `fraction` of the teacher's MACs."""

    fraction: float
    label: str  # as written in study.levels, e.g. "1/4"
    teacher_macs: int
    student_width: float  # scratch, distill: the student at the level's MACs
    teacher_prune_ratio: float  # prune, prune+kd: the teacher cut to the level's MACs
    wide_student_width: float  # distill+prune: a student at twice the level's MACs ...
    student_prune_ratio: float  # ... cut by half
    # the hardware-aware arms: the teacher's cost on the first target, in its unit
    cost: LevelCost | None = None

    @property
    def macs(self) -> int:
        return round(self.fraction * self.teacher_macs)

    @property
    def budget(self) -> float | None:
        """The level's cost on the cost target: `fraction` of the teacher's."""
        return None if self.cost is None else self.fraction * self.cost.teacher


@dataclass(frozen=True)
class LevelCost:
    target: str  # the study's first target
    quantity: str  # what its budget holds: "instructions" or "latency_ms"
    teacher: float  # the untrained teacher's cost there (the cost table's prediction)


def solve_prune_ratio(
    wanted_fraction: float, macs_fraction_at: Callable[[float], float], tolerance: float = 2e-3,
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
    # channel counts are whole: the fraction moves in steps, so take the closer side
    return min((round(low, 3), round(high, 3)),
               key=lambda ratio: abs(macs_fraction_at(ratio) - wanted_fraction))


def _macs_at_width(section: Any, dataset: Dataset) -> Callable[[float], int]:
    cache: dict[float, int] = {}

    def macs(width: float) -> int:
        if width not in cache:
            cache[width] = count_macs(build_for(dataclasses.replace(section, width=width), dataset))
        return cache[width]

    return macs


def pruned_macs_fraction(section: Any, prune: PruneConfig, dataset: Dataset
                         ) -> Callable[[float], float]:
    """Remaining MACs of `section`'s model after channel pruning at `ratio`, as a fraction:
    the untrained model pruned with the config's own rule (scope, min_channels, round_to),
    so the kept channel counts are the prune stage's. L1 scores stand in for the criterion:
    per layer, the counts do not depend on the scores (a global scope's do, a little)."""
    model = build_for(section, dataset, seed=0)
    full = count_macs(model)
    cache: dict[float, float] = {}

    def fraction(ratio: float) -> float:
        if ratio not in cache:
            pruned, _ = prune_channels(model, "l1", ratio=ratio, layers=prune.layers,
                                       scope=prune.scope, min_channels=prune.min_channels,
                                       round_to=prune.round_to)
            cache[ratio] = count_macs(pruned) / full
        return cache[ratio]

    return fraction


def solve_width(macs: Callable[[float], int], wanted_macs: float,
                tolerance: float = 1e-3) -> float:
    """The width whose MACs (`macs(width)`, from `_macs_at_width`) come closest to
    `wanted_macs`."""
    low, high = WIDTH_RANGE
    if wanted_macs <= macs(low):
        return low
    if wanted_macs >= macs(high):
        return high
    while high - low > tolerance:  # MACs grow with the width (channel counts are rounded)
        middle = (low + high) / 2
        low, high = (middle, high) if macs(middle) < wanted_macs else (low, middle)
    below, above = round(low, 3), round(high, 3)
    return min((below, above), key=lambda width: abs(macs(width) - wanted_macs))


def plan_levels(config: PipelineConfig, dataset: Dataset, levels: list[tuple[str, float]],
                teacher_macs: int, cost: LevelCost | None = None) -> list[LevelPlan]:
    """One plan per (label, fraction); the student's MACs per width and the teacher's pruned
    fractions are computed once for every level; `cost`: the teacher's measured cost, for
    the hardware-aware arms."""
    student_macs = _macs_at_width(config.student, dataset)
    teacher_fraction = pruned_macs_fraction(config.teacher, config.prune, dataset)
    plans = []
    for label, fraction in levels:
        wanted = fraction * teacher_macs
        wide_width = solve_width(student_macs, min(2 * wanted, teacher_macs))
        wide = dataclasses.replace(config.student, width=wide_width)
        plans.append(LevelPlan(
            fraction=fraction, label=label, teacher_macs=teacher_macs,
            student_width=solve_width(student_macs, wanted),
            teacher_prune_ratio=solve_prune_ratio(fraction, teacher_fraction),
            wide_student_width=wide_width,
            student_prune_ratio=solve_prune_ratio(
                min(1.0, wanted / student_macs(wide_width)),
                pruned_macs_fraction(wide, config.prune, dataset)),
            cost=cost,
        ))
    return plans
