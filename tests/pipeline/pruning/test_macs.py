"""MAC counts of the layer types the pruner now takes (models/complexity.py), worked out by
hand: a pruned model's MACs are only as right as these."""

from __future__ import annotations

from typing import Any

from devices.tf_env import keras
from models.complexity import count_macs, layer_costs

L = keras.layers


def _macs(layer: Any, input_shape: tuple[int, ...]) -> int:
    inputs = keras.Input(input_shape)
    model = keras.Model(inputs, layer(inputs))
    return {cost.name: cost.macs for cost in layer_costs(model)}[layer.name]


def test_grouped_conv_reads_only_its_groups_inputs() -> None:
    # output 8x8x6; each output reads 3x3 of its group's 8 / 2 = 4 inputs
    assert _macs(L.Conv2D(6, 3, groups=2, name="g"), (10, 10, 8)) == 8 * 8 * 6 * 3 * 3 * 4


def test_separable_conv_is_depthwise_then_pointwise() -> None:
    layer = L.SeparableConv2D(5, 3, depth_multiplier=2, padding="same", name="s")
    # depthwise: 6x6 positions x 4 inputs x 2 x 3x3; pointwise: 6x6 x 8 x 5
    assert _macs(layer, (6, 6, 4)) == 6 * 6 * 4 * 2 * 9 + 6 * 6 * 8 * 5


def test_transposed_conv_scatters_each_input_through_its_kernel() -> None:
    layer = L.Conv2DTranspose(3, 3, strides=2, padding="same", name="t")
    assert _macs(layer, (4, 4, 5)) == 4 * 4 * 5 * 3 * 3 * 3  # input positions x in x k x out


def test_nested_models_and_the_headline_count_them() -> None:
    block_input = keras.Input((6, 6, 4))
    block = keras.Model(block_input, L.Conv2DTranspose(2, 1, name="up")(block_input),
                        name="block")
    inputs = keras.Input((6, 6, 3))
    x = L.SeparableConv2D(4, 1, name="sep")(inputs)
    model = keras.Model(inputs, block(x))
    macs = {cost.name: cost.macs for cost in layer_costs(model) if cost.macs}
    assert macs == {"sep": 6 * 6 * 3 * 1 + 6 * 6 * 3 * 4, "block/up": 6 * 6 * 4 * 2}
    assert count_macs(model) == 6 * 6 * 3 * 1 + 6 * 6 * 3 * 4 + 6 * 6 * 4 * 2
