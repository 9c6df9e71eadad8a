"""Each criterion on a hand-built model whose least important channels are known."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import models
from devices.errors import PruningError
from devices.tf_env import keras
from pipeline.pruning import CRITERIA, analyse, get_criterion, prune_channels

RATIO_CRITERIA = sorted(set(CRITERIA) - {"seed"})  # seed selects by its two thresholds only


def _set_filter_norms(layer: Any, norms: list[float]) -> None:
    kernel, *rest = layer.get_weights()
    per_filter = kernel.reshape(-1, kernel.shape[-1]).shape[0]
    kernel = np.ones_like(kernel) * (np.asarray(norms, np.float32) / per_filter)
    layer.set_weights([kernel, *rest])


def _bn_model_with_gammas(gammas: list[float]) -> Any:
    model = models.create_model("seed_student", (28, 28, 1), 3, batch_norm=True, width=0.5)
    norm = model.get_layer("block1_bn")
    weights = norm.get_weights()
    weights[0] = np.asarray(gammas, np.float32)
    norm.set_weights(weights)
    return model


def _apoz_model() -> Any:
    """conv1: 6 channels; weight 0 and bias +1 (always active) / -1 (always zero), except
    channel 4: a random kernel with bias 0, active on about half the positions."""
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv2")(x)
    outputs = keras.layers.Dense(2, name="logits")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    kernel = np.zeros((3, 3, 1, 6), np.float32)
    kernel[..., 4] = np.random.default_rng(0).normal(size=(3, 3, 1))
    bias = np.array([1, -1, 1, -1, 0, 1], np.float32)
    model.get_layer("conv1").set_weights([kernel, bias])
    return model


def test_registry_lists_the_seed_criteria() -> None:
    assert {"l1", "apoz", "bn_scale"} <= set(CRITERIA)
    with pytest.raises(PruningError, match="unknown pruning criterion 'taylor'"):
        get_criterion("taylor")


def test_l1_by_ratio_drops_the_smallest_filters(weight_tools: Any) -> None:
    model = weight_tools.sequential_cnn()
    _set_filter_norms(model.get_layer("conv1"), [5, 1, 4, 2, 6, 3])
    pruned, plan = prune_channels(model, "l1", ratio=0.5)
    assert plan.decisions[0].producers == ("conv1",)
    assert plan.decisions[0].kept == (0, 2, 4)
    np.testing.assert_allclose(
        np.abs(pruned.get_layer("conv1").get_weights()[0]).sum(axis=(0, 1, 2)), [5, 4, 6],
        rtol=1e-5)


def test_l1_threshold_is_relative_to_the_largest_filter(weight_tools: Any) -> None:
    model = weight_tools.sequential_cnn()
    _set_filter_norms(model.get_layer("conv1"), [5, 1, 4, 2, 6, 3])
    _, plan = prune_channels(model, "l1", threshold=0.5, min_channels=1)  # prune < 3.0
    assert plan.decisions[0].kept == (0, 2, 4, 5)


def test_apoz_measures_activation_rates() -> None:
    model = _apoz_model()
    graph = analyse(model)
    samples = np.random.default_rng(1).normal(size=(32, 8, 8, 1)).astype(np.float32)
    scores = get_criterion("apoz").score(model, graph, samples, None)
    rates = scores[graph.group_of_producer("conv1").index]
    np.testing.assert_array_equal(rates[[0, 1, 2, 3, 5]], [1, 0, 1, 0, 1])
    assert 0.2 < rates[4] < 0.8


def test_apoz_threshold_prunes_rarely_active_channels() -> None:
    model = _apoz_model()
    samples = np.random.default_rng(1).normal(size=(32, 8, 8, 1)).astype(np.float32)
    _, plan = prune_channels(model, "apoz", threshold=0.1, min_channels=1, sample_inputs=samples)
    assert plan.layer_channels()["conv1"] == (6, 4)
    assert plan.decisions[0].kept == (0, 2, 4, 5)


def test_apoz_without_samples_is_refused() -> None:
    with pytest.raises(PruningError, match="apoz needs sample inputs"):
        prune_channels(_apoz_model(), "apoz", ratio=0.5)


def test_bn_scale_keeps_the_largest_gammas() -> None:
    model = _bn_model_with_gammas([0.1, 2.0, -3.0, 0.01, 0.5, -0.2, 1.0, 0.05])
    _, plan = prune_channels(model, "bn_scale", ratio=0.5)
    assert plan.layer_channels()["block1_conv"] == (8, 4)
    assert plan.decisions[0].kept == (1, 2, 4, 6)


def test_bn_scale_threshold_is_absolute() -> None:
    model = _bn_model_with_gammas([0.1, 2.0, -3.0, 0.01, 0.5, -0.2, 1.0, 0.05])
    _, plan = prune_channels(model, "bn_scale", threshold=0.15, min_channels=1)
    assert plan.decisions[0].kept == (1, 2, 4, 5, 6)


def test_bn_scale_without_batch_norm_is_refused(weight_tools: Any) -> None:
    message = "bn_scale needs a BatchNormalization.*none of conv1, conv2, fc1"
    with pytest.raises(PruningError, match=message):
        prune_channels(weight_tools.sequential_cnn(), "bn_scale", ratio=0.5)


def test_seed_prunes_by_either_of_the_articles_rules(weight_tools: Any) -> None:
    """Filter norms 5, 1, 4, 6, 3, 0.5 (beta = 0.3 prunes norms under 1.8) and biases that
    keep channels 2 and 5 always off (alpha = 0.1 prunes them): one rule alone misses some."""
    model = weight_tools.sequential_cnn()
    layer = model.get_layer("conv1")
    _set_filter_norms(layer, [5, 1, 4, 6, 3, 0.5])
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel, np.where(np.isin(np.arange(6), [2, 5]), -100.0, 100.0)])
    samples = np.random.default_rng(0).normal(
        size=(16, *model.input_shape[1:])).astype(np.float32)
    conv1 = {}
    for criterion, thresholds in (("l1", {"threshold": 0.3}), ("apoz", {"threshold": 0.1}),
                                  ("seed", {"threshold": 0.3, "activation_threshold": 0.1})):
        _, plan = prune_channels(model, criterion, min_channels=1, sample_inputs=samples,
                                 **thresholds)
        conv1[criterion] = plan.decisions[0].kept
    assert conv1 == {"l1": (0, 2, 3, 4), "apoz": (0, 1, 3, 4), "seed": (0, 3, 4)}


def test_conv_only_leaves_the_hidden_dense_layer_whole() -> None:
    model = models.create_model("seed_student", (28, 28, 1), 3)
    samples = np.random.default_rng(0).normal(size=(16, 28, 28, 1)).astype(np.float32)
    _, everything = prune_channels(model, "l1", ratio=0.5, sample_inputs=samples)
    pruned, conv_only = prune_channels(model, "l1", ratio=0.5, layers="conv")
    assert everything.layer_channels()["fc1"] == (32, 16)
    assert "fc1" not in conv_only.layer_channels() and conv_only.skipped == ("fc1",)
    assert conv_only.layer_channels()["block3_conv"] == (32, 16)
    assert pruned.get_layer("fc1").units == 32


def test_seed_without_both_thresholds_is_refused(weight_tools: Any) -> None:
    with pytest.raises(PruningError, match="prune.activation_threshold = alpha > 0"):
        prune_channels(weight_tools.sequential_cnn(), "seed", threshold=0.3,
                       sample_inputs=np.zeros((2, 12, 12, 2), np.float32))


@pytest.mark.parametrize("criterion", RATIO_CRITERIA)
def test_every_criterion_prunes_a_bn_student(criterion: str) -> None:
    model = models.create_model("seed_student", (28, 28, 1), 3, batch_norm=True)
    samples = np.random.default_rng(0).normal(size=(16, 28, 28, 1)).astype(np.float32)
    pruned, plan = prune_channels(model, criterion, ratio=0.5, sample_inputs=samples)
    expected = {"block1_conv": (16, 8), "block2_conv": (32, 16), "block3_conv": (32, 16),
                "fc1": (32, 16)}
    if criterion == "bn_scale":  # fc1 has no BatchNorm: left whole and listed as skipped
        del expected["fc1"]
        assert plan.skipped == ("fc1",)
    assert plan.layer_channels() == expected
    assert pruned(samples).shape == (16, 3)


def test_global_scope_takes_channels_where_they_matter_least() -> None:
    """bn_scale scores compare across layers: block2's tiny gammas go first, down to the
    floor, and the rest comes from the other layers' weakest channels."""
    model = models.create_model("seed_student", (28, 28, 1), 3, batch_norm=True)
    rng = np.random.default_rng(0)
    for name, low, high in (("block1_bn", 1.0, 2.0), ("block2_bn", 0.0, 0.01),
                            ("block3_bn", 1.0, 2.0)):
        norm = model.get_layer(name)
        weights = norm.get_weights()
        weights[0] = rng.uniform(low, high, weights[0].shape).astype(np.float32)
        norm.set_weights(weights)
    _, plan = prune_channels(model, "bn_scale", ratio=0.5, scope="global", min_channels=4)
    channels = plan.layer_channels()
    assert channels["block2_conv"] == (32, 4)  # 28 of the 40 pruned channels
    assert channels["block1_conv"][1] + channels["block3_conv"][1] == 48 - 12
    assert plan.to_dict()["scope"] == "global"


@pytest.mark.parametrize("criterion", RATIO_CRITERIA)
@pytest.mark.parametrize(("name", "input_shape"), [("resnet8", (16, 16, 3)),
                                                   ("ds_student", (16, 16, 1))])
def test_every_criterion_halves_every_group_of_the_zoo(criterion: str, name: str,
                                                       input_shape: tuple[int, ...],
                                                       weight_tools: Any) -> None:
    model = models.create_model(name, input_shape, 4)
    weight_tools.randomise_weights(model, seed=7)
    samples = np.random.default_rng(0).normal(size=(8, *input_shape)).astype(np.float32)
    pruned, plan = prune_channels(model, criterion, ratio=0.5, sample_inputs=samples)
    assert plan.skipped == ()
    for decision in plan.decisions:
        assert decision.channels_after == decision.channels_before // 2
        for producer in decision.producers:
            assert pruned.get_layer(producer).output.shape[-1] == decision.channels_after
    assert pruned(samples).shape == (8, 4)
