"""Shared training machinery: tf.data input pipelines, optimizers with a learning-rate
schedule, early stopping on validation accuracy, and plain or distilled fitting."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from devices.tf_env import keras, tf
from pipeline.config import AUGMENT_SHIFT_PIXELS, StudentConfig, TrainingSection
from pipeline.data import Dataset
from pipeline.distiller import Distiller, plain_cross_entropy
from pipeline.distribute import replicas_in_sync
from pipeline.progress import keras_verbose

# Training steps per call into TensorFlow: the same steps in the same order (the weights
# come out identical, tests/pipeline/test_distiller.py), without a trip through Python
# between steps, which costs small models several percent (benchmarks/train_throughput.py).
STEPS_PER_EXECUTION = 16


@dataclass(frozen=True)
class TrainingHistory:
    epochs_run: int
    wall_time_s: float
    history: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"epochs_run": self.epochs_run, "wall_time_s": self.wall_time_s,
                "history": self.history}


def seed_everything(seed: int) -> None:
    keras.utils.set_random_seed(seed)


Targets = np.ndarray | tuple[np.ndarray, ...]  # labels, or (labels, teacher logits)


def make_input_pipeline(
    x: np.ndarray, y: Targets, batch_size: int, *, shuffle: bool, augment: bool, seed: int,
    shift: int = AUGMENT_SHIFT_PIXELS,
) -> Any:
    # Batches are gathered from whole arrays by shuffled indices, as Keras does for arrays:
    # shuffling and batching single images costs more than a small model's training step.
    images, targets = tf.constant(x), tf.nest.map_structure(tf.constant, y)
    indices = tf.data.Dataset.range(len(x))
    if shuffle:
        indices = indices.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    dataset = indices.batch(batch_size).map(
        lambda batch: (tf.gather(images, batch),
                       tf.nest.map_structure(lambda array: tf.gather(array, batch), targets)),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if augment:
        # One seed pair per batch, new ones every epoch: stateless ops stay reproducible.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        dataset = tf.data.Dataset.zip((dataset, seeds)).map(
            _augmenter(x.shape[1:], shift), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _augmenter(shape: tuple[int, ...], pad: int) -> Any:
    """Random shifts of up to `pad` pixels (`augment_shift`; zero padding, then a crop at a random
    offset per image) and horizontal flips for colour images only (a flipped digit is
    another glyph), on whole batches at once: per-image map calls cost a fifth of the
    training throughput (benchmarks/train_throughput.py)."""
    height, width, channels = (int(d) for d in shape)

    def augment(batch: tuple[Any, Any], seed: Any) -> tuple[Any, Any]:
        images, labels = batch
        count = tf.shape(images)[0]
        shift_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        offsets = tf.random.stateless_uniform(
            [count, 2], shift_seed, minval=0, maxval=2 * pad + 1, dtype=tf.int32)
        padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        rows = offsets[:, :1] + tf.range(height)[tf.newaxis, :]
        columns = tf.range(width)[tf.newaxis, :]
        if channels == 3:  # a flip reads the columns backwards: one gather does both
            flip = tf.random.stateless_uniform([count, 1], flip_seed) < 0.5
            columns = tf.where(flip, width - 1 - columns, columns)
        images = tf.gather(padded, rows, axis=1, batch_dims=1)
        images = tf.gather(images, offsets[:, 1:] + columns, axis=2, batch_dims=1)
        return images, labels

    return augment


def make_optimizer(
    settings: TrainingSection, *, learning_rate: float, total_steps: int
) -> keras.optimizers.Optimizer:
    schedules = {
        "constant": lambda: learning_rate,
        "cosine": lambda: keras.optimizers.schedules.CosineDecay(
            learning_rate, decay_steps=max(1, total_steps), alpha=0.01
        ),
        "step": lambda: keras.optimizers.schedules.PiecewiseConstantDecay(
            [total_steps // 2, (3 * total_steps) // 4],
            [learning_rate, learning_rate * 0.1, learning_rate * 0.01],
        ),
    }
    rate = schedules[settings.schedule]()
    optimizers = {
        "adam": lambda: keras.optimizers.Adam(rate),
        "sgd": lambda: keras.optimizers.SGD(rate, momentum=0.9, nesterov=True),
    }
    return optimizers[settings.optimizer]()


def _callbacks(settings: TrainingSection, extra: tuple[Any, ...]) -> list[Any]:
    callbacks = list(extra)
    if settings.early_stopping_patience > 0:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_accuracy", mode="max", patience=settings.early_stopping_patience,
                restore_best_weights=True,
            )
        )
    return callbacks


def _fit(
    trainer: keras.Model, data: Dataset, settings: TrainingSection, *, epochs: int,
    learning_rate: float, seed: int, callbacks: tuple[Any, ...], compile_options: dict[str, Any],
    train_targets: Targets | None = None,
) -> TrainingHistory:
    seed_everything(seed)
    # batch_size is per replica; under a strategy Keras splits each global batch.
    global_batch_size = settings.batch_size * replicas_in_sync()
    steps_per_epoch = int(np.ceil(len(data.x_train) / global_batch_size))
    trainer.compile(
        optimizer=make_optimizer(
            settings, learning_rate=learning_rate, total_steps=steps_per_epoch * epochs
        ),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        steps_per_execution=STEPS_PER_EXECUTION,
        **compile_options,
    )
    train = make_input_pipeline(
        data.x_train, data.y_train if train_targets is None else train_targets,
        global_batch_size, shuffle=True,
        augment=settings.augment, seed=seed, shift=settings.augment_shift,
    )
    has_validation = len(data.x_val) > 0
    validation = (
        make_input_pipeline(data.x_val, data.y_val, 256, shuffle=False, augment=False, seed=seed)
        if has_validation else None
    )
    started = time.perf_counter()
    history = trainer.fit(
        train, validation_data=validation, epochs=epochs,
        callbacks=_callbacks(settings, callbacks) if has_validation else list(callbacks),
        verbose=keras_verbose(),
    )
    return TrainingHistory(
        epochs_run=len(history.epoch),
        wall_time_s=round(time.perf_counter() - started, 3),
        history={key: [float(v) for v in values] for key, values in history.history.items()},
    )


def hard_label_loss(label_smoothing: float) -> Any:
    """Cross-entropy of integer labels against logits; with label smoothing the target puts
    1 - label_smoothing on the label and spreads the rest evenly over every class."""
    if label_smoothing == 0:
        return plain_cross_entropy

    def smoothed(labels: Any, logits: Any) -> Any:
        targets = tf.one_hot(tf.cast(tf.reshape(labels, [-1]), tf.int32), tf.shape(logits)[-1])
        return keras.losses.categorical_crossentropy(
            targets, logits, from_logits=True, label_smoothing=label_smoothing)

    return smoothed


def train_classifier(
    model: keras.Model, data: Dataset, settings: TrainingSection, *, epochs: int | None = None,
    learning_rate: float | None = None, seed: int = 0, callbacks: tuple[Any, ...] = (),
) -> TrainingHistory:
    """Plain supervised training on hard labels (cross-entropy on logits)."""
    return _fit(
        model, data, settings, epochs=epochs or settings.epochs,
        learning_rate=learning_rate or settings.learning_rate, seed=seed, callbacks=callbacks,
        compile_options={"loss": hard_label_loss(settings.label_smoothing)},
    )


def train_distilled(
    student: keras.Model, teacher: keras.Model, data: Dataset, settings: StudentConfig, *,
    epochs: int | None = None, learning_rate: float | None = None, seed: int = 0,
    callbacks: tuple[Any, ...] = (),
) -> TrainingHistory:
    """Distillation from a frozen teacher; the student's weights are trained in place.
    `teacher_view = "clean"` computes the teacher's logits once, on the unaugmented training
    images, instead of on every augmented batch (`augmented`, the default)."""
    distiller = Distiller(teacher=teacher, student=student)
    targets = (data.y_train, predict_logits(teacher, data.x_train).astype(np.float32)) if (
        settings.teacher_view == "clean") else None
    return _fit(
        distiller, data, settings, epochs=epochs or settings.epochs,
        learning_rate=learning_rate or settings.learning_rate, seed=seed, callbacks=callbacks,
        compile_options={
            "alpha": settings.alpha, "temperature": settings.temperature,
            "loss_kind": settings.loss, "contrastive_weight": settings.contrastive_weight,
            "hard_loss": hard_label_loss(settings.label_smoothing),
        },
        train_targets=targets,
    )


def predict_logits(model: keras.Model, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Plain local forward passes: the same numbers inside or outside a distribution
    strategy (`model.predict` would split batches across replicas)."""
    batches = [model(x[start:start + batch_size], training=False).numpy()
               for start in range(0, len(x), batch_size)]
    return np.concatenate(batches) if batches else np.zeros((0,) + model.output_shape[1:])


def top1(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(predict_logits(model, x), axis=-1) == y))
