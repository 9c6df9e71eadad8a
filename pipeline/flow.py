"""The stage graph, in run order. Each stage module exposes `STAGE`; `quantize.method`
picks the stages after the final model (`QUANTIZE_FLOWS`), and compressing a user's own
model directly (a file teacher, `prune.source = "teacher"`) runs no student stage."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable

from devices.errors import ConfigError
from pipeline.config import POST_TRAINING, PipelineConfig
from pipeline.model_files import is_model_file
from pipeline.stage import Stage
from pipeline.stages.export import export_stage
from pipeline.stages.validate import validate_stage

STAGE_MODULES: tuple[str, ...] = (
    "pipeline.stages.train",
    "pipeline.stages.distill",
    "pipeline.stages.prune",
)
STUDENT_STAGE = "student"
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


def compresses_teacher_directly(config: PipelineConfig | None) -> bool:
    """A file teacher pruned as it is: nothing reads a student, so none is trained. A zoo
    teacher with prune.source = "teacher" keeps its student stage: the study's pruned-teacher
    arms have always listed it upstream, and their cache keys stay as they were."""
    return (config is not None and config.prune.source == "teacher"
            and is_model_file(config.teacher.model))


def _trained_stages(config: PipelineConfig | None) -> list[Stage]:
    trained = [importlib.import_module(module).STAGE for module in STAGE_MODULES]
    if not compresses_teacher_directly(config):
        return trained
    return [dataclasses.replace(stage, upstream=tuple(
        name for name in stage.upstream if name != STUDENT_STAGE))
        for stage in trained if stage.name != STUDENT_STAGE]


def stages(config: PipelineConfig | None = None) -> list[Stage]:
    """The stages `config` runs (without one: the post-training flow)."""
    method = POST_TRAINING if config is None else config.quantize.method
    return _trained_stages(config) + QUANTIZE_FLOWS[method]()


def stage_names(config: PipelineConfig | None = None) -> list[str]:
    return [stage.name for stage in stages(config)]


def check_stage_name(name: str, names: list[str] | None = None) -> str:
    names = names if names is not None else stage_names()
    if name not in names:
        raise ConfigError(f"unknown stage {name!r}; expected one of {', '.join(names)}")
    return name
