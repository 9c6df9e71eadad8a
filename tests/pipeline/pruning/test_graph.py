"""Channel dependency groups for each supported topology, and refusals."""

from __future__ import annotations

from typing import Any

import pytest

import models
from devices.errors import PruningError
from devices.tf_env import keras
from pipeline.pruning.graph import analyse


def _summary(model: Any) -> dict[tuple[str, ...], tuple[int, tuple[str, ...], tuple[str, ...]]]:
    graph = analyse(model)
    return {
        group.producers: (group.channels, group.members, tuple(c.layer for c in group.consumers))
        for group in graph.prunable_groups()
    }


def test_sequential_groups_follow_flatten(weight_tools: Any) -> None:
    graph = analyse(weight_tools.sequential_cnn())
    conv2 = graph.group_of_producer("conv2")
    assert conv2.members == ("relu2", "flatten")
    assert [(c.layer, c.spatial_repeat) for c in conv2.consumers] == [("fc1", 25)]
    assert graph.group_of_producer("fc1").members == ("drop",)
    assert [g.producers for g in graph.prunable_groups()] == [("conv1",), ("conv2",), ("fc1",)]
    assert not graph.group_of_producer("logits").prunable


def test_batch_norm_joins_its_conv() -> None:
    model = models.create_model("seed_student", (28, 28, 1), 10, batch_norm=True)
    groups = _summary(model)
    assert groups[("block1_conv",)] == (16, ("block1_bn", "block1_relu", "block1_pool"),
                                        ("block2_conv",))
    assert groups[("block3_conv",)][2] == ("fc1",)


def test_residual_adds_share_one_group() -> None:
    groups = _summary(models.create_model("resnet8", (32, 32, 3), 10))
    # identity shortcut: the stem and stack1's second conv feed one Add
    stem = groups[("stem_conv", "stack1_b_conv")]
    assert stem[0] == 16
    assert "stack1_add" in stem[1]
    assert stem[2] == ("stack1_a_conv", "stack2_a_conv", "stack2_shortcut_conv")
    # projection shortcut: the 1x1 conv and the branch's second conv are pruned together
    assert groups[("stack3_shortcut_conv", "stack3_b_conv")][2] == ("logits",)
    assert groups[("stack2_a_conv",)][2] == ("stack2_b_conv",)
    assert len(groups) == 6


def test_depthwise_is_pruned_with_its_input() -> None:
    groups = _summary(models.create_model("ds_student", (28, 28, 1), 10))
    assert groups[("stem_conv",)] == (
        16, ("stem_bn", "stem_relu", "block1_dw", "block1_dw_bn", "block1_dw_relu"),
        ("block1_pw_conv",))
    assert groups[("block3_pw_conv",)][2] == ("logits",)


def test_input_channels_are_fixed() -> None:
    graph = analyse(models.create_model("ds_student", (8, 8, 3), 4))
    input_group = graph.groups_read_by("stem_conv")[0]
    assert not input_group.prunable
    assert input_group.reason == "carries the model's input channels"


class _Opaque(keras.layers.Layer):
    """A layer type the pruner has never heard of."""

    def call(self, inputs: Any) -> Any:
        return inputs * 2.0


def test_unsupported_layer_is_refused_by_name_and_type() -> None:
    inputs = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = _Opaque(name="opaque")(x)
    outputs = keras.layers.Dense(3, name="logits")(keras.layers.Flatten()(x))
    with pytest.raises(PruningError, match=r"'opaque' \(_Opaque\): no channel rule"):
        analyse(keras.Model(inputs, outputs))


def test_a_reshape_that_moves_channels_keeps_them_whole() -> None:
    inputs = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.Reshape((6, 24), name="odd_reshape")(x)
    outputs = keras.layers.Dense(3, name="logits")(keras.layers.Flatten()(x))
    graph = analyse(keras.Model(inputs, outputs))
    assert not graph.group_of_producer("conv").prunable
    assert graph.group_of_producer("conv").reason == (
        "odd_reshape reshapes (6, 6, 4) to (6, 24), moving channels")


def test_concatenate_keeps_each_input_in_its_own_group() -> None:
    inputs = keras.Input((8, 8, 2))
    a = keras.layers.Conv2D(4, 1, name="a")(inputs)
    b = keras.layers.Conv2D(3, 1, name="b")(inputs)
    x = keras.layers.Concatenate(name="join")([a, b])
    x = keras.layers.BatchNormalization(name="bn")(x)
    outputs = keras.layers.Dense(3, name="logits")(keras.layers.GlobalAveragePooling2D()(x))
    graph = analyse(keras.Model(inputs, outputs))
    group_a, group_b = graph.group_of_producer("a"), graph.group_of_producer("b")
    assert group_a.index != group_b.index and group_a.prunable and group_b.prunable
    assert "bn" in group_a.members and "bn" in group_b.members
    assert [c.layer for c in group_a.consumers] == ["logits"]
    layout = graph.layer_inputs["logits"][0]
    assert layout.offsets(group_a.index) == [0] and layout.offsets(group_b.index) == [4]


def test_depth_multiplier_keeps_its_channels_whole() -> None:
    inputs = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(4, 1, name="conv")(inputs)
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(x)
    outputs = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))
    graph = analyse(keras.Model(inputs, outputs))
    assert graph.group_of_producer("conv").reason == (
        "dw has depth_multiplier=2, 2 outputs per channel")


def test_shared_layer_is_refused() -> None:
    inputs = keras.Input((8, 8, 2))
    shared = keras.layers.Conv2D(2, 1, padding="same", name="shared")
    x = shared(shared(inputs))
    outputs = keras.layers.Dense(3)(keras.layers.Flatten()(x))
    with pytest.raises(PruningError, match=r"'shared' \(Conv2D\): used 2 times"):
        analyse(keras.Model(inputs, outputs))


def test_softmax_group_stays_whole() -> None:
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(5, name="hidden")(inputs)
    x = keras.layers.Activation("softmax", name="mix")(hidden)
    outputs = keras.layers.Dense(2, name="logits")(x)
    graph = analyse(keras.Model(inputs, outputs))
    assert graph.group_of_producer("hidden").reason == "mix applies softmax across channels"


class _MyConv(keras.layers.Conv2D):
    """A user's Conv2D subclass: it may lay its weights out differently."""


def test_conv_subclass_is_refused_until_it_has_a_rule() -> None:
    """Lookup is by exact type: Conv2DTranspose subclasses Conv2D with its kernel as
    (h, w, out, in), so a subclass never inherits its parent's rule."""
    inputs = keras.Input((8, 8, 2))
    x = _MyConv(4, 3, padding="same", name="mine")(inputs)
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    with pytest.raises(PruningError, match=r"'mine' \(_MyConv\): no channel rule"):
        analyse(keras.Model(inputs, outputs))
