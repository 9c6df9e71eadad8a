"""The stage graph, in run order. Each stage module exposes `STAGE`."""

from __future__ import annotations

import importlib

from pipeline.errors import ConfigError
from pipeline.stage import Stage

STAGE_MODULES: tuple[str, ...] = (
    "pipeline.stages.train",
    "pipeline.stages.distill",
)


def stages() -> list[Stage]:
    return [importlib.import_module(module).STAGE for module in STAGE_MODULES]


def stage_names() -> list[str]:
    return [stage.name for stage in stages()]


def check_stage_name(name: str, names: list[str] | None = None) -> str:
    names = names if names is not None else stage_names()
    if name not in names:
        raise ConfigError(f"unknown stage {name!r}; expected one of {', '.join(names)}")
    return name
