"""`make study`: plan the levels, measure every point, answer, write dist/study/."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devices.base import TargetProfile
from devices.errors import ConfigError
from models.complexity import count_macs
from pipeline.config import BUDGET_QUANTITIES, STUDY_ARMS, PipelineConfig, with_values
from pipeline.data import load_dataset
from pipeline.hardware_cost.model_cost import model_cost, target_cost_model
from pipeline.profile import Echo
from pipeline.report import STUDY_FOLDER
from pipeline.stages.train import build_for
from pipeline.study.answer import answer_study
from pipeline.study.arms import HARDWARE_ARMS, arm_overrides, refuse_file_student
from pipeline.study.executors import PointsJob, load_executor
from pipeline.study.levels import LevelCost, LevelPlan, plan_levels
from pipeline.study.points import Point, PointSpec, export_for


@dataclass(frozen=True)
class Study:
    config: PipelineConfig
    targets: tuple[str, ...]
    plans: tuple[LevelPlan, ...]
    points: tuple[Point, ...]
    answers: dict[str, Any]
    dataset: dict[str, Any]
    seconds: float


def plan_points(config: PipelineConfig, plans: list[LevelPlan], targets: list[TargetProfile]
                ) -> list[PointSpec]:
    specs = []
    for plan in plans:
        for seed in range(config.study.seeds):
            for arm in config.study.arms:
                overrides = arm_overrides(arm, plan, config, seed) | export_for(targets)
                specs.append(PointSpec(arm, plan.label, seed, with_values(config, overrides),
                                       overrides))
    return specs


def _amount(value: float, quantity: str) -> str:
    return f"{value:,.0f}" if quantity == "instructions" else f"{value:.4g}"


def arms_for_target(config: PipelineConfig, target: TargetProfile, echo: Echo
                    ) -> PipelineConfig:
    """The hardware-aware arms need a first target whose cost a budget measures; the default
    arm list leaves them out elsewhere (said), a list that names them is refused."""
    wanted = [arm for arm in config.study.arms if arm in HARDWARE_ARMS]
    if not wanted or target.adapter in BUDGET_QUANTITIES:
        return config
    if config.study.arms != STUDY_ARMS:
        raise ConfigError(
            f"study arms {', '.join(wanted)} reach each level by the first target's measured "
            f"cost, and {target.name} (adapter {target.adapter}) has no cost measurer (hint: "
            "put mcu or host first in --targets, or leave those arms out of study.arms)")
    echo(f"study      {', '.join(wanted)} left out: {target.name} has no cost measurer (the "
         "first target must be mcu or host)")
    kept = tuple(arm for arm in config.study.arms if arm not in HARDWARE_ARMS)
    return with_values(config, {"study.arms": kept})


def teacher_cost(config: PipelineConfig, target: TargetProfile, dataset: Any,
                 build_dir: Path, echo: Echo) -> LevelCost | None:
    """The untrained teacher's cost on the first target, from the cost table (measured
    where the table lacks an op), when a hardware-aware arm runs."""
    if not any(arm in HARDWARE_ARMS for arm in config.study.arms):
        return None
    cost_model = target_cost_model(target.name, config, build_dir, echo)
    teacher = model_cost(build_for(config.teacher, dataset), cost_model, dataset.x_train)
    quantity = "instructions" if cost_model.measurer.unit == "instructions" else "latency_ms"
    return LevelCost(target.name, quantity, teacher)


def run_study(config: PipelineConfig, targets: list[TargetProfile], *, build_dir: Path,
              dist_dir: Path, echo: Echo = print, cluster: str | None = None) -> Study:
    """`cluster`: the Ray address for `study.executor = "ray"` (`--cluster`)."""
    if not targets:
        raise ConfigError("the study needs a target (hint: make study TARGET=mcu)")
    refuse_file_student(config)
    executor = load_executor(config.study.executor)
    executor.check(cluster)  # before the data loads: a missing extra, no cluster
    started = time.perf_counter()
    dataset = load_dataset(config.data)
    if len(dataset.y_val) == 0:
        raise ConfigError("the study picks arms on validation top-1, and data.validation_split "
                          "is 0 (hint: set data.validation_split = 0.1)")
    teacher_macs = count_macs(build_for(config.teacher, dataset))
    config = arms_for_target(config, targets[0], echo)
    cost = teacher_cost(config, targets[0], dataset, Path(build_dir), echo)
    plans = plan_levels(config, dataset,
                        list(zip(config.study.levels, config.study.level_fractions())),
                        teacher_macs, cost)
    for plan in plans:
        echo(f"level      {plan.label} of the teacher's {teacher_macs:,} MACs = {plan.macs:,}: "
             f"student width {plan.student_width}, teacher prune ratio "
             f"{plan.teacher_prune_ratio}, student width {plan.wide_student_width} pruned "
             f"{plan.student_prune_ratio}"
             + ("" if plan.budget is None or cost is None else
                f"; {cost.target} {cost.quantity} {_amount(plan.budget, cost.quantity)} (the "
                "hardware-aware arms)"))
    specs = plan_points(config, plans, targets)
    job = PointsJob(tuple(specs), tuple(targets), dataset, Path(build_dir),
                    Path(dist_dir) / STUDY_FOLDER / "points", echo, cluster)
    points = executor.measure_points(job)
    names = tuple(t.name for t in targets)
    answers = answer_study(points, [(plan.label, plan.macs) for plan in plans], names,
                           {plan.label: plan.budget for plan in plans if plan.budget})
    return Study(config, names, tuple(plans), tuple(points), answers, dataset.summary(),
                 round(time.perf_counter() - started, 1))

