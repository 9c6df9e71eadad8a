"""BatchNorm re-calibration after surgery and the Network Slimming penalty."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import models
from devices.errors import PruningError
from devices.tf_env import keras
from pipeline.pruning import prune_channels
from pipeline.pruning.recalibration import recalibrate_batch_norm
from pipeline.pruning.slimming import add_slimming_penalty


def test_recalibration_sets_moving_statistics_to_the_inputs(weight_tools: Any) -> None:
    model = models.create_model("seed_student", (28, 28, 1), 3, batch_norm=True)
    weight_tools.randomise_weights(model, seed=4)
    pruned, _ = prune_channels(model, "l1", ratio=0.5)
    samples = np.random.default_rng(5).normal(size=(40, 28, 28, 1)).astype(np.float32)

    assert recalibrate_batch_norm(pruned, samples) == 3

    for name in ("block1_bn", "block3_bn"):
        layer = pruned.get_layer(name)
        inputs = keras.Model(pruned.inputs, layer.input)(samples).numpy()
        inputs = inputs.reshape(-1, inputs.shape[-1])
        np.testing.assert_allclose(layer.moving_mean.numpy(), inputs.mean(axis=0), rtol=1e-4,
                                   atol=1e-4)
        np.testing.assert_allclose(layer.moving_variance.numpy(), inputs.var(axis=0),
                                   rtol=1e-3, atol=1e-4)
    # gamma and beta are trained weights: untouched
    kept = pruned.get_layer("block1_bn").gamma.numpy()
    assert set(np.round(kept, 6)) <= set(np.round(model.get_layer("block1_bn").gamma.numpy(), 6))


def test_recalibration_without_batch_norm_changes_nothing(weight_tools: Any) -> None:
    model = weight_tools.sequential_cnn()
    before = [w.copy() for w in model.get_weights()]
    assert recalibrate_batch_norm(model, np.zeros((4, 12, 12, 2), np.float32)) == 0
    for old, new in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)


def test_slimming_penalty_is_l1_of_the_gammas() -> None:
    model = models.create_model("ds_student", (16, 16, 1), 3, width=0.5)
    gammas = [layer.gamma.numpy() for layer in model.layers
              if isinstance(layer, keras.layers.BatchNormalization)]
    assert add_slimming_penalty(model, 0.01) == len(gammas) == 7
    expected = 0.01 * sum(np.abs(g).sum() for g in gammas)
    assert float(model.losses[0]) == pytest.approx(expected, rel=1e-5)


def test_slimming_needs_batch_norm(weight_tools: Any) -> None:
    with pytest.raises(PruningError, match="slimming_penalty = 0.01 needs BatchNormalization"):
        add_slimming_penalty(weight_tools.sequential_cnn(), 0.01)
