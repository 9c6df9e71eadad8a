"""Surgery exactness: channels whose outgoing weights are zero can be cut without changing
the model's outputs, for every supported topology."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import models
from devices.errors import PruningError
from models.complexity import count_params
from pipeline.pruning.graph import analyse
from pipeline.pruning.surgery import apply_keep
from tests.float_tolerance import assert_float32_close

TOPOLOGIES = {
    "sequential_cnn": lambda tools: tools.sequential_cnn(),
    "seed_student_bn": lambda tools: models.create_model(
        "seed_student", (20, 20, 1), 4, batch_norm=True),
    "resnet8": lambda tools: models.create_model("resnet8", (16, 16, 3), 4, width=0.5),
    "ds_student": lambda tools: models.create_model("ds_student", (16, 16, 1), 4, width=0.5),
}


def _drop_every_third(channels: int) -> list[int]:
    return [c for c in range(channels) if c % 3 == 1]


@pytest.mark.parametrize("topology", sorted(TOPOLOGIES))
def test_pruning_dead_channels_keeps_outputs_exact(topology: str, weight_tools: Any) -> None:
    model = TOPOLOGIES[topology](weight_tools)
    weight_tools.randomise_weights(model, seed=1)
    graph = analyse(model)
    keep = {}
    for group in graph.prunable_groups():
        dropped = _drop_every_third(group.channels)
        weight_tools.zero_outgoing(model, graph, group.index, dropped)
        keep[group.index] = np.array([c for c in range(group.channels) if c not in dropped])
    inputs = np.random.default_rng(2).normal(size=(8, *model.input_shape[1:])).astype(np.float32)

    pruned = apply_keep(model, graph, keep)

    assert count_params(pruned) < count_params(model)
    for group_index, kept in keep.items():
        for producer in graph.groups[group_index].producers:
            assert pruned.get_layer(producer).output.shape[-1] == len(kept)
    expected = model(inputs, training=False).numpy()
    actual = pruned(inputs, training=False).numpy()
    assert_float32_close(actual, expected)


def test_pruning_live_channels_changes_outputs(weight_tools: Any) -> None:
    """Control for the exactness test: without zeroing, removing channels must show."""
    model = weight_tools.sequential_cnn()
    weight_tools.randomise_weights(model, seed=1)
    graph = analyse(model)
    group = graph.group_of_producer("conv2")
    pruned = apply_keep(model, graph, {group.index: np.arange(group.channels - 2)})
    inputs = np.random.default_rng(2).normal(size=(4, 12, 12, 2)).astype(np.float32)
    difference = np.max(np.abs(model(inputs).numpy() - pruned(inputs).numpy()))
    assert difference > 1e-3


def test_kept_weights_are_the_original_ones(weight_tools: Any) -> None:
    model = weight_tools.sequential_cnn()
    weight_tools.randomise_weights(model, seed=3)
    graph = analyse(model)
    conv2 = graph.group_of_producer("conv2")
    pruned = apply_keep(model, graph, {conv2.index: np.array([5, 1, 6])})
    original_kernel = model.get_layer("conv2").get_weights()[0]
    np.testing.assert_array_equal(pruned.get_layer("conv2").get_weights()[0],
                                  original_kernel[..., [1, 5, 6]])
    # flatten: 5x5 positions x 8 channels -> fc1 keeps rows position * 8 + {1, 5, 6}
    rows = [p * 8 + c for p in range(25) for c in (1, 5, 6)]
    np.testing.assert_array_equal(pruned.get_layer("fc1").get_weights()[0],
                                  model.get_layer("fc1").get_weights()[0][rows])


def test_fixed_group_is_refused(weight_tools: Any) -> None:
    model = weight_tools.sequential_cnn()
    graph = analyse(model)
    logits = graph.group_of_producer("logits")
    with pytest.raises(PruningError, match="reaches the model's output"):
        apply_keep(model, graph, {logits.index: np.arange(2)})


def test_bad_indices_are_refused(weight_tools: Any) -> None:
    model = weight_tools.sequential_cnn()
    graph = analyse(model)
    conv1 = graph.group_of_producer("conv1")
    with pytest.raises(PruningError, match=r"not distinct indices in 0\.\.5"):
        apply_keep(model, graph, {conv1.index: np.array([0, 6])})
