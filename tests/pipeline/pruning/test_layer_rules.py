"""The one layer table: exact-type lookup, refusals by name, rules a user registers for
their own layers, and the start-of-run check."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import models
from devices.errors import PruningError
from devices.tf_env import keras, tf
from pipeline.pruning import (
    LAYER_RULES,
    analyse,
    apply_keep,
    check_prunable,
    per_channel_rule,
    producer_rule,
    prune_channels,
    register_layer_rule,
)
from pipeline.pruning.tf_ops import TF_OP_RULES, elementwise, register_tf_op
from tests.float_tolerance import assert_float32_close

L = keras.layers


class ChannelScale(L.Layer):
    """A user's layer: one learned factor per channel."""

    def build(self, input_shape: Any) -> None:
        self.factor = self.add_weight(name="factor", shape=(int(input_shape[-1]),),
                                      initializer="ones")

    def call(self, inputs: Any) -> Any:
        return inputs * self.factor


class Applies(L.Layer):
    """A user's layer whose constructor takes a function and has no get_config: Keras
    cannot write its config, so it cannot be rebuilt narrower."""

    def __init__(self, function: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.function = function

    def call(self, inputs: Any) -> Any:
        return self.function(inputs)


class PointwiseDense(L.Dense):
    """A user's subclass with its parent's weight layout, registered with a builder."""


def _model_with(layer: Any, width: int = 6) -> Any:
    inputs = keras.Input((8, 8, 2))
    x = L.Conv2D(width, 3, name="conv")(inputs)
    x = layer(x)
    x = L.Conv2D(4, 1, name="reader")(x)
    outputs = L.Dense(2, name="logits")(L.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs)


def test_lookup_is_by_exact_type_with_one_rule_per_type() -> None:
    transposed, conv = LAYER_RULES[L.Conv2DTranspose], LAYER_RULES[L.Conv2D]
    assert transposed is not conv and transposed.output_axis == -2 and conv.output_axis == -1
    assert LAYER_RULES[L.SeparableConv2D].kernel == "pointwise_kernel"
    assert LAYER_RULES[L.Dense].width_key == "units"
    assert LAYER_RULES[L.DepthwiseConv2D].sparsity_kernel is None  # TFMOT leaves it dense


def test_a_custom_layer_is_refused_until_registered(weight_tools: Any) -> None:
    model = _model_with(ChannelScale(name="scale"))
    with pytest.raises(PruningError, match=r"'scale' \(ChannelScale\): no channel rule.*"
                                           r"register_layer_rule"):
        analyse(model)

    register_layer_rule(ChannelScale, per_channel_rule())
    weight_tools.randomise_vectors(model, seed=1)
    graph = analyse(model)
    assert graph.group_of_producer("conv").members == ("scale",)
    keep = weight_tools.kill_channels(model, graph, seed=2)
    inputs = weight_tools.sample_inputs(model, count=3)
    pruned = apply_keep(model, graph, keep)  # rebuilt without registering it as serialisable
    assert pruned.get_layer("scale").get_weights()[0].shape == (
        len(keep[graph.group_of_producer("conv").index]),)
    assert_float32_close(pruned(inputs).numpy(), model(inputs).numpy())


def test_a_registered_producer_prunes_like_its_parent() -> None:
    register_layer_rule(PointwiseDense, producer_rule(input_axis=0, width_key="units",
                                                      convolution=False))
    model = _model_with(PointwiseDense(6, name="mine"))
    pruned, plan = prune_channels(model, "l1", ratio=0.5)
    assert plan.layer_channels()["mine"] == (6, 3)
    assert pruned.get_layer("mine").units == 3


def test_tf_ops_are_taught_by_symbol() -> None:
    inputs = keras.Input((8, 8, 2))
    x = tf.math.cumsum(L.Conv2D(4, 3, name="conv")(inputs), axis=1)
    model = keras.Model(inputs, L.Dense(2)(L.GlobalAveragePooling2D()(x)))
    with pytest.raises(PruningError, match=r"op tf.math.cumsum has no channel rule"):
        analyse(model)
    register_tf_op("math.cumsum", elementwise)  # along positions: channel i stays channel i
    try:
        assert analyse(model).group_of_producer("conv").prunable
    finally:
        del TF_OP_RULES["math.cumsum"]


def test_check_prunable_accepts_the_zoo_and_refuses_what_would_fail_later() -> None:
    check_prunable(models.create_model("resnet8", (16, 16, 3), 4))
    with pytest.raises(PruningError, match=r"'scale_by' \(Lambda\): no channel rule"):
        check_prunable(_model_with(L.Lambda(lambda t: t * 2.0, name="scale_by")))
    register_layer_rule(Applies, per_channel_rule())
    with pytest.raises(PruningError, match=r"'relu_of' \(Applies\): Keras cannot write its "
                                           r"config .*non-serializable argument values"):
        check_prunable(_model_with(Applies(tf.nn.relu, name="relu_of")))
    inputs = keras.Input((6,))
    only_logits = keras.Model(inputs, L.Dense(3, name="logits")(inputs))
    with pytest.raises(PruningError, match=r"no channel group that can be pruned "
                                           r"\(logits: reaches the model's output\)"):
        check_prunable(only_logits)


def test_fixed_groups_are_listed_in_the_plan() -> None:
    inputs = keras.Input((6,))
    hidden = L.Dense(5, name="hidden")(inputs)
    other = L.Dense(4, name="other")(inputs)
    x = L.Concatenate()([L.Activation("softmax", name="mix")(hidden), other])
    _, plan = prune_channels(keras.Model(inputs, L.Dense(2, name="logits")(x)), "l1", ratio=0.5)
    assert plan.fixed == ("hidden: mix applies softmax across channels",
                          "logits: reaches the model's output")
    assert plan.layer_channels() == {"other": (4, 2)}
    assert np.all(plan.to_dict()["fixed"] == list(plan.fixed))
