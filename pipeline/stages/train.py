"""Teacher training stage: the zoo model trained on hard labels, or the user's own trained
model (`teacher.model = "file:PATH"`), evaluated as it is and fine-tuned only when
`teacher.finetune_epochs` asks. `model_for` builds either kind for every stage that needs
a model from a config section (the student too)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from models import create_model, model_options
from models.complexity import count_macs, count_params
from pipeline.config import StudentConfig, TeacherConfig, TrainingSection
from pipeline.data import Dataset
from pipeline.distribute import describe
from pipeline.model_files import model_label, model_source
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


@dataclass(frozen=True)
class BuiltModel:
    model: Any
    file: dict[str, Any] | None = None  # a file model's record (model_files.FileModelRecord)


SECTION_NAMES: dict[type, str] = {TeacherConfig: "teacher", StudentConfig: "student"}


def _zoo_model(section: TrainingSection, dataset: Dataset, seed: int | None) -> BuiltModel:
    options: dict[str, Any] = {"width": section.width}
    if "batch_norm" in model_options(section.model):  # the others have it built in or none
        options["batch_norm"] = section.batch_norm
    return BuiltModel(create_model(section.model, dataset.input_shape, dataset.num_classes,
                                   **options))


def _file_model(section: TrainingSection, dataset: Dataset, seed: int | None) -> BuiltModel:
    """The user's file; a student with `init = "scratch"` keeps its architecture only."""
    from pipeline.model_files.loading import load_file_model  # deferred: TF, maybe Keras 3

    loaded = load_file_model(section.model, section=SECTION_NAMES[type(section)],
                             trusted=bool(section.trust_model_code), dataset=dataset)
    if not (isinstance(section, StudentConfig) and section.init == "scratch"):
        return BuiltModel(loaded.model, loaded.record.to_dict())
    from devices.tf_env import keras  # deferred: TensorFlow only to build a model

    fresh = keras.models.clone_model(loaded.model)  # new layers, weights from initializers
    return BuiltModel(fresh, loaded.record.to_dict() | {"init": "scratch"})


MODEL_SOURCES: dict[str, Callable[[TrainingSection, Dataset, int | None], BuiltModel]] = {
    "zoo": _zoo_model,  # by model_files.model_source(section.model)
    "file": _file_model,
}


def model_for(section: TrainingSection, dataset: Dataset, seed: int | None = None
              ) -> BuiltModel:
    """The section's model, a zoo model or a file; with `seed`, new weights are
    reproducible."""
    if seed is not None:
        seed_everything(seed)
    return MODEL_SOURCES[model_source(section.model)](section, dataset, seed)


def build_for(section: TrainingSection, dataset: Dataset, seed: int | None = None) -> Any:
    return model_for(section, dataset, seed).model


def result_for(
    name: str, model: Any, dataset: Dataset, history: TrainingHistory, saved_bytes: int,
    distribute: dict[str, Any],
) -> TrainResult:
    return TrainResult(
        model=model_label(name), top1=top1(model, dataset.x_test, dataset.y_test),
        params=count_params(model), macs=count_macs(model), bytes=saved_bytes,
        wall_time_s=history.wall_time_s, epochs_run=history.epochs_run, history=history.history,
        distribute=distribute,
    )


def _trained_teacher(section: TeacherConfig, built: BuiltModel, dataset: Dataset, seed: int
                     ) -> tuple[TrainingHistory, dict[str, Any]]:
    return train_classifier(built.model, dataset, section, seed=seed), {}


def _file_teacher(section: TeacherConfig, built: BuiltModel, dataset: Dataset, seed: int
                  ) -> tuple[TrainingHistory, dict[str, Any]]:
    """Evaluated as saved, then fine-tuned only when asked."""
    as_saved = top1(built.model, dataset.x_test, dataset.y_test)
    extra = {"file": built.file, "top1_as_saved": as_saved, "classes": dataset.num_classes,
             "normalisation": dataset.normalisation.get("convention", "dataset")}
    if not section.finetune_epochs:
        # nothing trained: no training setting is in its cache key (runner.keyed_section),
        # so none is in its record either
        return TrainingHistory(epochs_run=0, wall_time_s=0.0), extra | {"distribute": None}
    history = train_classifier(built.model, dataset, section, epochs=section.finetune_epochs,
                               seed=seed)
    return history, extra


TeacherTraining = Callable[[TeacherConfig, BuiltModel, Dataset, int],
                           tuple[TrainingHistory, dict[str, Any]]]
TEACHER_TRAINING: dict[str, TeacherTraining] = {
    "zoo": _trained_teacher,  # by model_files.model_source(teacher.model)
    "file": _file_teacher,
}


def run_teacher(context: StageContext) -> dict[str, Any]:
    section = context.config.teacher
    seed = section.training_seed(context.config.data)
    built = model_for(section, context.dataset, seed=seed)
    history, extra = TEACHER_TRAINING[model_source(section.model)](
        section, built, context.dataset, seed)
    path = save_model(built.model, context.out_dir)
    return result_for(
        section.model, built.model, context.dataset, history, path.stat().st_size,
        describe(context.config.distribute, section.batch_size),
    ).to_dict() | extra


def near_chance_warnings(record: dict[str, Any]) -> tuple[str, ...]:
    """A file teacher that scores near chance was, most often, fed inputs in another
    convention than it was trained with: say so, and name the setting."""
    if "top1_as_saved" not in record:
        return ()
    chance = 1.0 / record["classes"]
    if record["top1_as_saved"] >= chance + 0.1 * (1.0 - chance):
        return ()
    return (f"teacher.model {record['model']} scores {record['top1_as_saved']:.1%} on the test "
            f"split as saved, near chance ({chance:.1%} for {record['classes']} classes): check "
            f"data.normalisation (now \"{record['normalisation']}\"), the input convention the "
            "model was trained with: \"raw\" (0..255, the model rescales itself), \"unit\" "
            "(0..1) or \"mean_std\" with data.mean and data.std",)


STAGE = Stage(
    name="teacher", version=2, sections=("teacher", "distribute"), upstream=(),
    run=run_teacher, headline=top1_headline, trains=True, warnings=near_chance_warnings,
)
