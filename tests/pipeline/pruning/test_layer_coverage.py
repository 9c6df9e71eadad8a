"""The channel rules beyond plain chains, on hand-built functional models that are no known
architecture: concatenation, squeeze-and-excitation, grouped, separable and transposed
convolutions, upsampling, padding and cropping, reshapes, per-channel constants and
TensorFlow ops. Each goes through the dead-channel test (channels whose readers' weights are
zero are pruned and the outputs do not change) and through `prune_channels`."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from devices.errors import PruningError
from devices.tf_env import keras, tf
from pipeline.pruning import CRITERIA, analyse, apply_keep, prune_channels
from tests.float_tolerance import assert_float32_close

L = keras.layers
RATIO_CRITERIA = sorted(set(CRITERIA) - {"seed"})  # seed selects by its thresholds only


def _hard_swish(x: Any) -> Any:
    """MobileNetV3's: x * relu6(x + 3) / 6, as TFOpLambda ops and a Multiply."""
    return L.Multiply()([x, L.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)])


def mixed_model() -> Any:
    """Concat of a separable and a grouped branch, an SE block (tf.reduce_mean), a transposed
    conv, upsampling, padding and cropping, per-channel constants, (1, 1, C) reshapes and a
    Dense after Flatten of a concatenation."""
    inputs = keras.Input((12, 12, 3))
    x = L.Rescaling([0.5, 1.0, 2.0], offset=-0.1, name="rescale")(inputs)
    x = L.Conv2D(8, 3, padding="same", name="stem")(x)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = _hard_swish(x)
    separable = L.SeparableConv2D(6, 3, padding="same", depth_multiplier=2, name="separable")(x)
    grouped = L.Conv2D(8, 3, padding="same", groups=2, name="grouped")(x)
    x = L.Concatenate(name="concat")([separable, grouped])
    x = L.BatchNormalization(name="concat_bn")(x)
    x = L.Activation("swish", name="concat_swish")(x)
    squeezed = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
    squeezed = L.Conv2D(4, 1, activation="relu", name="se_reduce")(squeezed)
    squeezed = L.Conv2D(14, 1, activation="sigmoid", name="se_expand")(squeezed)
    x = L.Multiply(name="se_scale")([x, squeezed])
    x = L.Conv2DTranspose(10, 3, strides=2, padding="same", name="up_conv")(x)
    x = L.PReLU(name="prelu")(x)
    x = L.UpSampling2D(name="upsample")(x)
    x = L.ZeroPadding2D(((1, 0), (0, 1)), name="pad")(x)
    x = L.Cropping2D(((0, 1), (1, 0)), name="crop")(x)
    x = L.Rescaling([0.5 + 0.1 * c for c in range(10)], offset=0.25, name="channel_scale")(x)
    x = L.Normalization(axis=-1, mean=list(range(10)), variance=[2.0] * 10, name="norm")(x)
    x = L.Conv2D(12, 3, strides=4, groups=2, name="grouped_2")(x)
    x = L.DepthwiseConv2D(3, padding="same", name="depthwise")(x)
    x = L.Normalization(axis=-1, name="adapted_norm")(x)
    x = L.MaxPooling2D(2, name="pool")(x)
    pooled = L.GlobalAveragePooling2D(name="gap")(x)
    pooled = L.Reshape((1, 1, 12), name="to_pixel")(pooled)
    pooled = L.Reshape((12,), name="to_vector")(pooled)
    branch = L.Dense(6, name="branch_dense")(pooled)
    flat = L.Flatten(name="flatten")(L.Concatenate(name="flat_concat")([x, x * 2.0]))
    x = L.Concatenate(name="heads")([L.Dense(5, name="flat_dense")(flat), branch])
    x = L.Dropout(0.2, name="drop")(x)
    outputs = L.Dense(3, name="logits")(x)
    model = keras.Model(inputs, outputs, name="mixed")
    model.get_layer("adapted_norm").adapt(np.random.default_rng(0).normal(
        size=(4, *model.get_layer("adapted_norm").input_shape[1:])).astype(np.float32))
    return model


def _dead_channel_check(model: Any, weight_tools: Any) -> tuple[Any, Any, dict[int, Any]]:
    weight_tools.randomise_vectors(model, seed=1)
    inputs = weight_tools.sample_inputs(model, count=4, seed=2)
    original = model(inputs, training=False).numpy()
    graph = analyse(model)
    keep = weight_tools.kill_channels(model, graph, fraction=0.3, seed=3)
    expected = model(inputs, training=False).numpy()
    assert np.max(np.abs(expected - original)) > 1e-3 * np.max(np.abs(original))
    pruned = apply_keep(model, graph, keep)
    assert_float32_close(pruned(inputs, training=False).numpy(), expected)
    return graph, pruned, keep


def test_mixed_model_prunes_dead_channels_exactly(weight_tools: Any) -> None:
    model = mixed_model()
    graph, pruned, keep = _dead_channel_check(model, weight_tools)
    prunable = {group.producers for group in graph.prunable_groups()}
    assert prunable == {("stem",), ("separable", "se_expand"), ("grouped", "se_expand"),
                        ("se_reduce",),
                        ("up_conv",), ("grouped_2",), ("branch_dense",), ("flat_dense",)}
    assert len(keep) == len(prunable)
    assert pruned.count_params() < 0.8 * model.count_params()
    kept = len(keep[graph.group_of_producer("up_conv").index])
    assert len(pruned.get_layer("channel_scale").scale) == kept  # per-channel constants
    assert np.shape(pruned.get_layer("norm").mean) == (1, 1, 1, kept)
    assert pruned.get_layer("rescale").offset == -0.1  # the input's: a scalar, untouched


def test_concat_segments_squeeze_excitation_and_grouped_runs() -> None:
    graph = analyse(mixed_model())
    separable, grouped = graph.group_of_producer("separable"), graph.group_of_producer("grouped")
    # the SE expansion scales the whole concatenation: its 14 filters are cut 6 + 8, each
    # part pruned with the segment it scales
    assert separable.producers == ("separable", "se_expand") and separable.channels == 6
    assert grouped.producers == ("grouped", "se_expand") and grouped.channels == 8
    assert {"concat_bn", "se_scale"} <= set(separable.members) & set(grouped.members)
    assert grouped.blocks == 2 and separable.blocks == 1
    assert graph.group_of_producer("up_conv").blocks == 2  # read by grouped_2 (groups=2)
    assert [c.layer for c in separable.consumers] == ["se_reduce", "up_conv"]


def test_squeeze_excitation_joins_the_scaled_channels() -> None:
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 3, name="conv")(inputs)
    squeezed = L.GlobalAveragePooling2D(keepdims=True, name="squeeze")(x)
    squeezed = L.Conv2D(2, 1, activation="relu", name="reduce")(squeezed)
    squeezed = L.Conv2D(6, 1, name="expand")(squeezed)
    x = L.Multiply(name="scale")([x, tf.sigmoid(squeezed)])
    outputs = L.Dense(2, name="logits")(L.GlobalAveragePooling2D()(x))
    group = analyse(keras.Model(inputs, outputs)).group_of_producer("conv")
    assert group.producers == ("conv", "expand") and group.prunable
    assert [c.layer for c in group.consumers] == ["reduce", "logits"]


@pytest.mark.parametrize("criterion", RATIO_CRITERIA)
def test_every_criterion_prunes_the_mixed_model(criterion: str, weight_tools: Any) -> None:
    model = mixed_model()
    samples = weight_tools.sample_inputs(model, count=8)
    if criterion == "apoz":  # swish and hard-swish, no ReLU after the concatenation
        with pytest.raises(PruningError, match="apoz needs a ReLU on the channels of separable"):
            prune_channels(model, criterion, ratio=0.5, sample_inputs=samples)
        return
    pruned, plan = prune_channels(model, criterion, ratio=0.5, sample_inputs=samples)
    assert pruned.count_params() < model.count_params()
    assert pruned(samples).shape == (8, 3)
    kept = {decision.producers: decision.kept for decision in plan.decisions}
    if ("grouped",) in kept:  # same count in each of the two groups of 4
        assert np.bincount(np.asarray(kept[("grouped",)]) // 4).tolist() == [2, 2]
        assert pruned.get_layer("grouped").groups == 2


def test_transposed_conv_kernel_is_sliced_out_then_in(weight_tools: Any) -> None:
    """Conv2DTranspose keeps its kernel as (h, w, out, in)."""
    inputs = keras.Input((6, 6, 2))
    x = L.Conv2D(5, 3, padding="same", name="conv")(inputs)
    x = L.Conv2DTranspose(4, 3, strides=2, name="up")(x)
    outputs = L.Dense(2, name="logits")(L.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    weight_tools.randomise_weights(model)
    graph = analyse(model)
    keep = {graph.group_of_producer("conv").index: np.array([0, 2, 3]),
            graph.group_of_producer("up").index: np.array([1, 3])}
    pruned = apply_keep(model, graph, keep)
    kernel = model.get_layer("up").get_weights()[0]
    np.testing.assert_array_equal(pruned.get_layer("up").get_weights()[0],
                                  kernel[:, :, [1, 3]][..., [0, 2, 3]])


def test_grouped_conv_keeps_each_outputs_own_inputs(weight_tools: Any) -> None:
    inputs = keras.Input((6, 6, 2))
    x = L.Conv2D(8, 1, name="conv")(inputs)
    x = L.Conv2D(6, 3, groups=2, name="grouped")(x)  # inputs 0-3 -> outputs 0-2, 4-7 -> 3-5
    outputs = L.Dense(2, name="logits")(L.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    weight_tools.randomise_weights(model)
    graph = analyse(model)
    keep = {graph.group_of_producer("conv").index: np.array([1, 2, 4, 7]),
            graph.group_of_producer("grouped").index: np.array([0, 2, 3, 4])}
    pruned = apply_keep(model, graph, keep)
    kernel = model.get_layer("grouped").get_weights()[0]  # (3, 3, 4, 6)
    expected = np.stack([kernel[:, :, [1, 2], 0], kernel[:, :, [1, 2], 2],
                         kernel[:, :, [0, 3], 3], kernel[:, :, [0, 3], 4]], axis=-1)
    np.testing.assert_array_equal(pruned.get_layer("grouped").get_weights()[0], expected)
    with pytest.raises(PruningError, match=r"same count kept in each of its 2 runs"):
        apply_keep(model, graph, {graph.group_of_producer("conv").index: np.array([0, 1, 2])})


def test_depthwise_written_as_grouped_conv_carries_channels(weight_tools: Any) -> None:
    """ConvNeXt's depthwise conv is a Conv2D with groups == channels."""
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 1, name="conv")(inputs)
    x = L.Conv2D(6, 3, groups=6, padding="same", name="depthwise")(x)
    outputs = L.Dense(2, name="logits")(L.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    graph, pruned, keep = _dead_channel_check(model, weight_tools)
    assert "depthwise" in graph.group_of_producer("conv").members
    kept = len(keep[graph.group_of_producer("conv").index])
    assert pruned.get_layer("depthwise").groups == pruned.get_layer("depthwise").filters == kept


def test_check_prune_source_refuses_only_for_channel_pruning() -> None:
    from pipeline.config import PruneConfig
    from pipeline.stages.prune import check_prune_source

    inputs = keras.Input((8, 8, 2))
    x = L.Lambda(lambda t: t * 2.0, name="python_code")(L.Conv2D(4, 3)(inputs))
    model = keras.Model(inputs, L.Dense(2)(L.Flatten()(x)))
    check_prune_source(PruneConfig(method="magnitude"), model)
    with pytest.raises(PruningError, match=r"'python_code' \(Lambda\): no channel rule"):
        check_prune_source(PruneConfig(method="channel"), model)


def test_nested_models_are_pruned_through(weight_tools: Any) -> None:
    """A user's model made of models: a functional block fed by a prunable conv (its input
    shape follows the kept channels) and a Sequential head."""
    block_input = keras.Input((8, 8, 6))
    block_output = L.Conv2D(5, 3, name="conv")(L.ReLU()(L.BatchNormalization()(block_input)))
    block = keras.Model(block_input, block_output, name="block")
    head = keras.Sequential([keras.Input((5,)), L.Dense(4, activation="relu", name="hidden"),
                             L.Dense(3, name="logits")], name="head")
    inputs = keras.Input((10, 10, 3))
    x = L.Conv2D(6, 3, name="conv")(inputs)  # the same name as the block's own conv
    outputs = head(L.GlobalAveragePooling2D()(block(x)))
    model = keras.Model(inputs, outputs)
    graph, pruned, keep = _dead_channel_check(model, weight_tools)
    assert {group.producers for group in graph.prunable_groups()} == {
        ("conv",), ("block/conv",), ("head/hidden",)}
    assert pruned.get_layer("block").input_shape == (None, 8, 8, 5)
    assert pruned.get_layer("head").get_layer("hidden").units == 3


def test_one_dimensional_layers_and_permute(weight_tools: Any) -> None:
    inputs = keras.Input((16, 3))
    x = L.Conv1D(6, 3, name="conv1d")(inputs)
    x = L.SeparableConv1D(5, 3, name="separable1d")(x)
    x = L.UpSampling1D(name="upsample")(L.ZeroPadding1D(1, name="pad")(x))
    x = L.Permute((1, 2), name="same_order")(x)
    x = L.Conv1DTranspose(4, 3, name="transpose1d")(x)
    outputs = L.Dense(2, name="logits")(L.GlobalMaxPooling1D()(x))
    graph, _, keep = _dead_channel_check(keras.Model(inputs, outputs), weight_tools)
    assert len(keep) == 3


def test_tf_ops_carry_join_fix_or_refuse() -> None:
    inputs = keras.Input((8, 8, 3))
    a = L.Conv2D(6, 3, name="a")(inputs)
    b = L.Conv2D(6, 3, name="b")(inputs)
    c = L.Conv2D(6, 3, name="c")(inputs)
    joined = tf.math.multiply(tf.nn.relu6(a + 3.0), tf.sigmoid(b))
    per_channel = c * np.arange(6, dtype=np.float32)
    x = L.Concatenate()([joined, per_channel, tf.reduce_mean(a, axis=-1, keepdims=True)])
    outputs = L.Dense(2)(L.GlobalAveragePooling2D()(x))
    graph = analyse(keras.Model(inputs, outputs))
    assert graph.group_of_producer("a").producers == ("a", "b")
    assert graph.group_of_producer("a").reason.endswith("reduces over channels (axis=-1)")
    assert graph.group_of_producer("c").reason.endswith("holds a constant per channel in its call")

    unknown = tf.math.cumsum(L.Conv2D(4, 3)(inputs), axis=1)
    with pytest.raises(PruningError, match=r"\(TFOpLambda\): op tf.math.cumsum has no channel"):
        analyse(keras.Model(inputs, L.Dense(2)(L.Flatten()(unknown))))
