"""Teacher training stage: the zoo model trained on hard labels."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from models import create_model, model_options
from models.complexity import count_macs, count_params
from pipeline.data import Dataset
from pipeline.distribute import describe
from pipeline.stage import Stage, StageContext, save_model, top1_headline
from pipeline.training import TrainingHistory, seed_everything, top1, train_classifier


@dataclass(frozen=True)
class TrainResult:
    model: str
    top1: float
    params: int
    macs: int
    bytes: int
    wall_time_s: float
    epochs_run: int
    history: dict[str, list[float]]
    distribute: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_for(section: Any, dataset: Dataset, seed: int | None = None) -> Any:
    """The section's zoo model; with `seed`, its initial weights are reproducible."""
    if seed is not None:
        seed_everything(seed)
    options: dict[str, Any] = {"width": section.width}
    if "batch_norm" in model_options(section.model):  # the others have it built in or none
        options["batch_norm"] = section.batch_norm
    return create_model(section.model, dataset.input_shape, dataset.num_classes, **options)


def result_for(
    name: str, model: Any, dataset: Dataset, history: TrainingHistory, saved_bytes: int,
    distribute: dict[str, Any],
) -> TrainResult:
    return TrainResult(
        model=name, top1=top1(model, dataset.x_test, dataset.y_test),
        params=count_params(model), macs=count_macs(model), bytes=saved_bytes,
        wall_time_s=history.wall_time_s, epochs_run=history.epochs_run, history=history.history,
        distribute=distribute,
    )


def run_teacher(context: StageContext) -> dict[str, Any]:
    section = context.config.teacher
    seed = section.training_seed(context.config.data)
    model = build_for(section, context.dataset, seed=seed)
    history = train_classifier(model, context.dataset, section, seed=seed)
    path = save_model(model, context.out_dir)
    return result_for(
        section.model, model, context.dataset, history, path.stat().st_size,
        describe(context.config.distribute, section.batch_size),
    ).to_dict()


STAGE = Stage(
    name="teacher", version=2, sections=("teacher", "distribute"), upstream=(),
    run=run_teacher, headline=top1_headline, trains=True,
)
