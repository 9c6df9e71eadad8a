"""The stage graph, in run order. Each stage module exposes `STAGE`."""

from __future__ import annotations

import importlib

from devices.errors import ConfigError
from pipeline.stage import Stage
from pipeline.stages.export import export_stage
from pipeline.stages.validate import validate_stage

STAGE_MODULES: tuple[str, ...] = (
    "pipeline.stages.train",
    "pipeline.stages.distill",
    "pipeline.stages.prune",
)
FINAL_MODEL_STAGE = "pruned"  # the prune stage passes the student through when method=none


def stages() -> list[Stage]:
    trained = [importlib.import_module(module).STAGE for module in STAGE_MODULES]
    return trained + [export_stage(FINAL_MODEL_STAGE), validate_stage(FINAL_MODEL_STAGE)]


def stage_names() -> list[str]:
    return [stage.name for stage in stages()]


def check_stage_name(name: str, names: list[str] | None = None) -> str:
    names = names if names is not None else stage_names()
    if name not in names:
        raise ConfigError(f"unknown stage {name!r}; expected one of {', '.join(names)}")
    return name
