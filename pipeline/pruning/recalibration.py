"""BatchNorm re-calibration after surgery ("adaptive BN"): removing channels upstream shifts
the statistics every later BatchNorm sees, and its stored moving mean/variance then
normalise with stale numbers (a pruned BN model can drop to chance before any retraining).
Re-estimating them on sample inputs changes no trained weight."""

from __future__ import annotations

from typing import Any

import numpy as np

from devices.tf_env import keras

BATCH = 128


def _batch_norms(model: Any) -> list[Any]:
    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


def _input_moments(model: Any, layer: Any, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probe = keras.Model(model.inputs, layer.input)
    channels = int(layer.input.shape[-1])
    total = np.zeros(channels, np.float64)
    total_squares = np.zeros(channels, np.float64)
    count = 0
    for start in range(0, len(samples), BATCH):
        values = probe(samples[start:start + BATCH], training=False).numpy()
        values = values.reshape(-1, channels).astype(np.float64)
        total += values.sum(axis=0)
        total_squares += np.square(values).sum(axis=0)
        count += len(values)
    mean = total / count
    return mean, np.maximum(total_squares / count - np.square(mean), 0.0)


def recalibrate_batch_norm(model: Any, samples: np.ndarray) -> int:
    """Set every BatchNorm's moving mean/variance to its input's statistics on `samples`,
    in graph order (each layer sees the already re-calibrated ones before it). Returns the
    number of layers updated."""
    norms = _batch_norms(model)
    for layer in norms:
        mean, variance = _input_moments(model, layer, samples)
        weights = {variable.name.split("/")[-1].split(":")[0]: value
                   for variable, value in zip(layer.weights, layer.get_weights(), strict=True)}
        weights["moving_mean"] = mean.astype(np.float32)
        weights["moving_variance"] = variance.astype(np.float32)
        layer.set_weights([weights[v.name.split("/")[-1].split(":")[0]] for v in layer.weights])
    return len(norms)
