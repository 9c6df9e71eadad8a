"""Retraining strategies after pruning (the seed article's section 4.2), a registry:

- `finetune`: continue from the pruned weights on hard labels;
- `retrain`: re-initialise the pruned architecture and train it from scratch;
- `kd`: fine-tune the pruned weights against the teacher through the Distiller.

All use the lead's training functions (pipeline.training); `callbacks` carries TFMOT's
UpdatePruningStep for the magnitude modes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from devices.errors import PruningError
from devices.tf_env import keras
from pipeline.config import StudentConfig
from pipeline.data import Dataset
from pipeline.training import train_classifier, train_distilled


@dataclass(frozen=True)
class RetrainSettings:
    training: StudentConfig  # batch size, optimizer, schedule, temperature, alpha, ...
    epochs: int
    learning_rate: float
    seed: int = 0
    callbacks: tuple[Any, ...] = ()


Trained = tuple[Any, dict[str, Any]]  # (model, training history as a dict)
Strategy = Callable[[Any, Any, Dataset, RetrainSettings], Trained]


def _finetune(model: Any, teacher: Any, data: Dataset, settings: RetrainSettings) -> Trained:
    history = train_classifier(
        model, data, settings.training, epochs=settings.epochs,
        learning_rate=settings.learning_rate, seed=settings.seed, callbacks=settings.callbacks,
    )
    return model, history.to_dict()


def _retrain(model: Any, teacher: Any, data: Dataset, settings: RetrainSettings) -> Trained:
    keras.utils.set_random_seed(settings.seed)
    fresh = keras.models.clone_model(model)  # same architecture, new initial weights
    return _finetune(fresh, teacher, data, settings)


def _distill(model: Any, teacher: Any, data: Dataset, settings: RetrainSettings) -> Trained:
    if teacher is None:
        raise PruningError(
            "retraining strategy kd needs the teacher model, got none "
            "(hint: pass teacher=..., or set prune.finetune = \"finetune\")"
        )
    history = train_distilled(
        model, teacher, data, settings.training, epochs=settings.epochs,
        learning_rate=settings.learning_rate, seed=settings.seed, callbacks=settings.callbacks,
    )
    return model, history.to_dict()


STRATEGIES: dict[str, Strategy] = {"finetune": _finetune, "retrain": _retrain, "kd": _distill}


def retrain(
    strategy: str, model: Any, teacher: Any, data: Dataset, settings: RetrainSettings
) -> tuple[Any, dict[str, Any]]:
    """Train `model` with `strategy`; returns the trained model (a new one for `retrain`)
    and the training history as a dict. Zero epochs returns the model untouched."""
    if strategy not in STRATEGIES:
        raise PruningError(
            f"unknown retraining strategy {strategy!r}; expected one of "
            f"{', '.join(sorted(STRATEGIES))} (hint: set prune.finetune)"
        )
    if settings.epochs <= 0:
        return model, {"epochs_run": 0}
    return STRATEGIES[strategy](model, teacher, data, settings)
