"""The stage graph, in run order. Each stage module exposes `STAGE`; `quantize.method`
picks the stages after the final model (`QUANTIZE_FLOWS`)."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from devices.errors import ConfigError
from pipeline.config import POST_TRAINING, PipelineConfig
from pipeline.stage import Stage
from pipeline.stages.export import export_stage
from pipeline.stages.validate import validate_stage

STAGE_MODULES: tuple[str, ...] = (
    "pipeline.stages.train",
    "pipeline.stages.distill",
    "pipeline.stages.prune",
)
FINAL_MODEL_STAGE = "pruned"  # the prune stage passes the student through when method=none
QAT_MODULE = "pipeline.stages.qat"  # imported when used: it loads TensorFlow and TFMOT


def _post_training() -> list[Stage]:
    return [export_stage(FINAL_MODEL_STAGE), validate_stage(FINAL_MODEL_STAGE)]


def _quantization_aware() -> list[Stage]:
    """The QAT stage before export, which ships its int8 TFLite file; the same stages
    (and cache keys) as post-training up to the final model."""
    qat = importlib.import_module(QAT_MODULE).qat_stage(FINAL_MODEL_STAGE)
    return [qat, export_stage(FINAL_MODEL_STAGE, supplier=qat.name),
            validate_stage(FINAL_MODEL_STAGE)]


QUANTIZE_FLOWS: dict[str, Callable[[], list[Stage]]] = {
    "ptq": _post_training,
    "qat": _quantization_aware,
}


def stages(config: PipelineConfig | None = None) -> list[Stage]:
    """The stages `config` runs (without one: the post-training flow)."""
    trained = [importlib.import_module(module).STAGE for module in STAGE_MODULES]
    method = POST_TRAINING if config is None else config.quantize.method
    return trained + QUANTIZE_FLOWS[method]()


def stage_names(config: PipelineConfig | None = None) -> list[str]:
    return [stage.name for stage in stages(config)]


def check_stage_name(name: str, names: list[str] | None = None) -> str:
    names = names if names is not None else stage_names()
    if name not in names:
        raise ConfigError(f"unknown stage {name!r}; expected one of {', '.join(names)}")
    return name
