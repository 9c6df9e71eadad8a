"""Distillation stage: the student trained against the frozen teacher; with
`student.baseline = true` the same student is also trained without a teacher, so the report
can show what distillation bought; with `student.loss = "labels"` only that one is trained.
The student is a zoo model, or the user's own (`student.model = "file:PATH"`), trained from
its saved weights or, with `student.init = "scratch"`, from new ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.config import LABELS_ONLY
from pipeline.distribute import describe
from pipeline.stage import Stage, StageContext, load_model, save_model, top1_headline
from pipeline.stages.train import BuiltModel, model_for, result_for
from pipeline.training import train_classifier, train_distilled

SCRATCH_FOLDER = "scratch"


def run_distill(context: StageContext) -> dict[str, Any]:
    section, dataset = context.config.student, context.dataset
    if section.loss == LABELS_ONLY:
        record = _train_on_labels(context, context.out_dir)
        record |= {"loss": LABELS_ONLY, "temperature": None, "alpha": None,
                   "contrastive_weight": None, "teacher_view": None, "scratch": None}
        return record
    seed = section.training_seed(context.config.data)
    teacher = load_model(context.upstream["teacher"].path)
    built = model_for(section, dataset, seed=seed)
    student = built.model
    history = train_distilled(student, teacher, dataset, section, seed=seed)
    path = save_model(student, context.out_dir)
    distribute = describe(context.config.distribute, section.batch_size)
    record = result_for(
        section.model, student, dataset, history, path.stat().st_size, distribute
    ).to_dict() | _file_fields(built)
    record["loss"], record["temperature"], record["alpha"] = (
        section.loss, section.temperature, section.alpha
    )
    record["contrastive_weight"] = section.contrastive_weight if section.loss == "seed" else None
    record["teacher_view"] = section.teacher_view
    record["scratch"] = _train_on_labels(context, context.out_dir / SCRATCH_FOLDER) if (
        section.baseline
    ) else None
    return record


def _train_on_labels(context: StageContext, out_dir: Path) -> dict[str, Any]:
    """The student without a teacher: the same model and settings, trained on the labels."""
    section, dataset = context.config.student, context.dataset
    seed = section.training_seed(context.config.data)
    built = model_for(section, dataset, seed=seed)
    history = train_classifier(built.model, dataset, section, seed=seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = save_model(built.model, out_dir)
    distribute = describe(context.config.distribute, section.batch_size)
    return result_for(
        section.model, built.model, dataset, history, path.stat().st_size, distribute
    ).to_dict() | _file_fields(built)


def _file_fields(built: BuiltModel) -> dict[str, Any]:
    """A file student's record says which file, and how it was read."""
    return {"file": built.file} if built.file is not None else {}


def headline(record: dict[str, Any]) -> str:
    text = top1_headline(record)
    if record.get("scratch"):
        text += f" (scratch {record['scratch']['top1']:.4f})"
    return text


STAGE = Stage(
    name="student", version=3, sections=("student", "distribute"), upstream=("teacher",),
    run=run_distill, headline=headline, trains=True,
)
