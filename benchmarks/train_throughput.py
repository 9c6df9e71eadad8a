"""Training throughput of each stage's loop beside a bare `model.fit` of the same model on
the same arrays.

    .venv/bin/python benchmarks/train_throughput.py [--data folder:PATH] [--images 10000]
        [--epochs 3] [--repeats 3]

Stages: the teacher (pipeline.training.train_classifier), distillation (train_distilled:
the teacher's forward pass on the same augmented batch the student trains on) and
fine-tuning (the prune stage's `kd` and `finetune` strategies run these same two loops, on
the pruned model). Each is timed with and without augmentation; the bare loop is
`model.fit(x, y)` of the same model on the NumPy arrays (for distillation, the same
Distiller: the teacher's forward pass and the student's step), with augmentation by
Keras' own RandomTranslation and RandomFlip layers in front of the model.
Epoch times after the first (tracing) are kept; runs are interleaved and the median of
`--repeats` is printed, since this machine's speed drifts (seen: the same command at 3,200
and 6,400 images/s).
Without --data it uses random CIFAR-shaped images (throughput does not depend on them).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devices.tf_env import keras, tf  # noqa: E402
from models import create_model  # noqa: E402
from pipeline.config import AUGMENT_SHIFT_PIXELS, StudentConfig, TeacherConfig  # noqa: E402
from pipeline.data import DataConfig, Dataset, load_dataset  # noqa: E402
from pipeline.distiller import Distiller  # noqa: E402
from pipeline.progress import QUIET, set_verbosity  # noqa: E402
from pipeline.training import train_classifier, train_distilled  # noqa: E402

BATCH_SIZE = 128


class EpochTimer(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.seconds.append(time.perf_counter() - self._started)


def _data(name: str | None, images: int) -> Dataset:
    if name:
        dataset = load_dataset(DataConfig(name=name, validation_split=0.0, test_split=0.05))
        x, y = dataset.x_train[:images], dataset.y_train[:images]
        labels = dataset.labels
    else:
        rng = np.random.default_rng(0)
        x = rng.normal(size=(images, 32, 32, 3)).astype(np.float32)
        y = rng.integers(0, 10, images)
        labels = tuple(str(i) for i in range(10))
    empty_x, empty_y = x[:0], y[:0]
    return Dataset("throughput", x, y, empty_x, empty_y, x[:1], y[:1], labels)


def _model(name: str, data: Dataset, width: float = 1.0) -> Any:
    keras.utils.set_random_seed(0)
    return create_model(name, data.input_shape, data.num_classes, width=width, batch_norm=True)


def _images_per_second(data: Dataset, run: Callable[[EpochTimer], None]) -> float:
    timer = EpochTimer()
    run(timer)
    return len(data.x_train) / statistics.median(timer.seconds[1:])


def _keras_augmentation(data: Dataset) -> Any:
    """Keras' own preprocessing layers for the same shifts and flips: what a bare loop uses."""
    height, width = data.input_shape[:2]
    return keras.Sequential([
        keras.layers.RandomTranslation(AUGMENT_SHIFT_PIXELS / height,
                                       AUGMENT_SHIFT_PIXELS / width, fill_mode="constant",
                                       interpolation="nearest", seed=0),
        keras.layers.RandomFlip("horizontal", seed=0),
    ])


def _fit_bare(model: Any, data: Dataset, epochs: int, augment: bool) -> float:
    """`model.fit` on the arrays; with augment, on a tf.data batch stream through Keras'
    layers, the usual way."""
    # The accuracy metric the stages track, so both loops do the same work per step.
    metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    if isinstance(model, Distiller):
        model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=metrics, alpha=0.1,
                      temperature=4.0)
    else:
        model.compile(keras.optimizers.Adam(1e-3),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=metrics)
    source: dict[str, Any] = {"x": data.x_train, "y": data.y_train, "batch_size": BATCH_SIZE}
    if augment:
        layers = _keras_augmentation(data)
        stream = tf.data.Dataset.from_tensor_slices((data.x_train, data.y_train))
        source = {"x": stream.shuffle(len(data.x_train), seed=0).batch(BATCH_SIZE).map(
            lambda images, labels: (layers(images, training=True), labels)).prefetch(2)}
    return _images_per_second(data, lambda timer: model.fit(
        **source, epochs=epochs, verbose=0, callbacks=[timer]))


def _bare(model_name: str, width: float, epochs: int, augment: bool
          ) -> Callable[[Dataset], float]:
    return lambda data: _fit_bare(_model(model_name, data, width), data, epochs, augment)


def _bare_distiller(width: float, epochs: int, augment: bool) -> Callable[[Dataset], float]:
    """The same Distiller model (teacher forward + student step) fit on the bare arrays."""
    def measure(data: Dataset) -> float:
        model = Distiller(teacher=_model("seed_teacher", data),
                          student=_model("seed_student", data, width))
        return _fit_bare(model, data, epochs, augment)
    return measure


def _teacher(augment: bool, epochs: int) -> Callable[[Dataset], float]:
    settings = TeacherConfig(batch_size=BATCH_SIZE, augment=augment, epochs=epochs,
                             early_stopping_patience=0)

    def measure(data: Dataset) -> float:
        model = _model("seed_teacher", data)
        return _images_per_second(data, lambda timer: train_classifier(
            model, data, settings, callbacks=(timer,)))
    return measure


def _distilled(augment: bool, epochs: int, width: float) -> Callable[[Dataset], float]:
    settings = StudentConfig(batch_size=BATCH_SIZE, augment=augment, epochs=epochs,
                             early_stopping_patience=0)

    def measure(data: Dataset) -> float:
        teacher, student = _model("seed_teacher", data), _model("seed_student", data, width)
        return _images_per_second(data, lambda timer: train_distilled(
            student, teacher, data, settings, callbacks=(timer,)))
    return measure


def _finetuned(augment: bool, epochs: int) -> Callable[[Dataset], float]:
    settings = StudentConfig(batch_size=BATCH_SIZE, augment=augment, epochs=epochs,
                             early_stopping_patience=0)

    def measure(data: Dataset) -> float:
        model = _model("seed_student", data, 0.5)  # a pruned student's size
        return _images_per_second(data, lambda timer: train_classifier(
            model, data, settings, callbacks=(timer,)))
    return measure


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="a dataset name, e.g. folder:PATH")
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    set_verbosity(QUIET)  # the stages' epoch lines off: the bare fit prints none either
    data = _data(args.data, args.images)
    epochs = max(2, args.epochs)
    # (stage, augment, its loop, the bare fit of the same model)
    rows = [
        ("teacher", False, _teacher(False, epochs), _bare("seed_teacher", 1.0, epochs, False)),
        ("teacher", True, _teacher(True, epochs), _bare("seed_teacher", 1.0, epochs, True)),
        ("distillation", False, _distilled(False, epochs, 1.0),
         _bare_distiller(1.0, epochs, False)),
        ("distillation", True, _distilled(True, epochs, 1.0), _bare_distiller(1.0, epochs, True)),
        ("fine-tuning (finetune)", True, _finetuned(True, epochs),
         _bare("seed_student", 0.5, epochs, True)),
        ("fine-tuning (kd)", True, _distilled(True, epochs, 0.5),
         _bare_distiller(0.5, epochs, True)),
    ]
    results: dict[int, tuple[list[float], list[float]]] = {i: ([], []) for i in range(len(rows))}
    for _ in range(args.repeats):  # interleaved, so drift hits every row alike
        for index, (_, _, stage, bare) in enumerate(rows):
            results[index][0].append(stage(data))
            results[index][1].append(bare(data))
    print(f"{len(data.x_train)} images {data.input_shape}, batch {BATCH_SIZE}, median of "
          f"{args.repeats} interleaved runs, images/s")
    print(f"{'stage':<24}{'augment':>8}{'stage':>10}{'bare fit':>10}{'ratio':>8}")
    worst = float("inf")
    for index, (name, augment, _, _) in enumerate(rows):
        stage, bare = (statistics.median(values) for values in results[index])
        worst = min(worst, stage / bare)
        print(f"{name:<24}{'yes' if augment else 'no':>8}{stage:>10.0f}{bare:>10.0f}"
              f"{stage / bare:>8.2f}")
    return 0 if worst >= 1.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
