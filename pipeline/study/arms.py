"""The study's arms: each one is the user's config plus the `--set` items that make it,
at one level and seed. Which arms learn from the teacher is read back from the stage
records (points.py), not assumed from these names."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from devices.errors import ConfigError
from pipeline.config import LABELS_ONLY, PipelineConfig
from pipeline.model_files import is_model_file
from pipeline.study.levels import LevelPlan

Overrides = dict[str, Any]

ARM_LABELS = {
    "scratch": "the student on labels alone (the control)",
    "distill": "the student distilled from the teacher",
    "prune": "the teacher channel-pruned, fine-tuned on labels alone",
    "prune+kd": "the teacher channel-pruned, fine-tuned against the unpruned teacher",
    "distill+prune": "a distilled student twice the size, channel-pruned by half",
    "prune-hw": "the teacher pruned to the level's measured cost on the first target, "
                "channels chosen per layer by what each costs there, fine-tuned on labels",
    "distill+prune-hw": "the distilled student twice the size, pruned to the level's measured "
                        "cost per layer, fine-tuned against the teacher",
}
# reach a level by the first target's measured cost (a prune budget), not by MACs
HARDWARE_ARMS = ("prune-hw", "distill+prune-hw")


# every arm but the hardware-aware ones ignores a prune.budget of the user's config (whose
# steps and step_samples _budget reads)
NO_BUDGET: Overrides = {"prune.budget": None}


def _student_only(width: float, loss: str) -> Overrides:
    return {"student.width": width, "student.loss": loss, "prune.method": "none", **NO_BUDGET}


def _scratch(plan: LevelPlan, config: PipelineConfig) -> Overrides:
    return _student_only(plan.student_width, LABELS_ONLY)


def _distill(plan: LevelPlan, config: PipelineConfig) -> Overrides:
    return _student_only(plan.student_width, config.student.loss)


def _pruned(width: float, source: str, ratio: float, finetune: str,
            config: PipelineConfig) -> Overrides:
    # channel pruning by ratio (threshold 0): whole channels go, so the MACs really fall
    return {"student.width": width, "student.loss": config.student.loss,
            "prune.method": "channel", "prune.source": source, "prune.ratio": ratio,
            "prune.threshold": 0.0, "prune.finetune": finetune, **NO_BUDGET}


def _prune(plan: LevelPlan, config: PipelineConfig) -> Overrides:
    # student.width: the prune stage reads the student stage, so it is the distill arm's
    # student (a cache hit), though this arm never uses it
    return _pruned(plan.student_width, "teacher", plan.teacher_prune_ratio, "finetune", config)


def _prune_kd(plan: LevelPlan, config: PipelineConfig) -> Overrides:
    return _pruned(plan.student_width, "teacher", plan.teacher_prune_ratio, "kd", config)


def _distill_prune(plan: LevelPlan, config: PipelineConfig) -> Overrides:
    return _pruned(plan.wide_student_width, "student", plan.student_prune_ratio, "kd", config)


def _budget(plan: LevelPlan, config: PipelineConfig) -> Overrides:
    """The level's cost as a prune budget on the cost target (the config's own budget
    settings, steps and candidates, where it has a budget)."""
    if plan.cost is None or plan.budget is None:
        raise ConfigError("a hardware-aware arm needs the level's measured cost (hint: the "
                          "study's first target must be one a budget can measure: mcu, host)")
    limit: float | int = (round(plan.budget) if plan.cost.quantity == "instructions"
                          else round(plan.budget, 6))
    budget: dict[str, Any] = {"target": plan.cost.target, plan.cost.quantity: limit}
    if config.prune.budget is not None:
        budget |= {"steps": config.prune.budget.steps,
                   "step_samples": config.prune.budget.step_samples}
    return {"prune.budget": budget}


def _prune_hw(plan: LevelPlan, config: PipelineConfig) -> Overrides:
    return _prune(plan, config) | _budget(plan, config)


def _distill_prune_hw(plan: LevelPlan, config: PipelineConfig) -> Overrides:
    return _distill_prune(plan, config) | _budget(plan, config)


ARMS: dict[str, Callable[[LevelPlan, PipelineConfig], Overrides]] = {
    "scratch": _scratch,
    "distill": _distill,
    "prune": _prune,
    "prune+kd": _prune_kd,
    "distill+prune": _distill_prune,
    "prune-hw": _prune_hw,
    "distill+prune-hw": _distill_prune_hw,
}


def refuse_file_student(config: PipelineConfig) -> None:
    """Before any level is planned: the levels are reached by the student's width."""
    if is_model_file(config.student.model):
        raise ConfigError(f"the study sizes the student by student.width, and student.model = "
                          f"{config.student.model!r} is a file of fixed size (hint: a zoo "
                          "student, e.g. student.model = \"seed_student\"; the teacher may "
                          "be a file)")


def arm_overrides(arm: str, plan: LevelPlan, config: PipelineConfig, seed: int) -> Overrides:
    if config.student.loss == LABELS_ONLY:
        raise ConfigError('the study compares distillation with training on labels, so '
                          'student.loss must name a distillation loss (hint: set '
                          'student.loss = "kd")')
    return ARMS[arm](plan, config) | {"student.seed": seed, "student.baseline": False}
