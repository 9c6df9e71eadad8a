"""MAC and parameter counts against values worked out by hand."""

import pytest

from devices.tf_env import keras
from models.complexity import count_macs, layer_costs


def _costs(*layers: keras.layers.Layer, input_shape: tuple) -> dict:
    inputs = keras.Input(input_shape)
    x = inputs
    for layer in layers:
        x = layer(x)
    model = keras.Model(inputs, x)
    return {cost.name: cost for cost in layer_costs(model)}


def test_conv2d() -> None:
    costs = _costs(keras.layers.Conv2D(8, 3, padding="valid", name="c"), input_shape=(10, 10, 4))
    # output 8x8x8, each output sums 3*3*4 products
    assert costs["c"].macs == 8 * 8 * 8 * 3 * 3 * 4
    assert costs["c"].params == 3 * 3 * 4 * 8 + 8


def test_strided_same_conv() -> None:
    costs = _costs(keras.layers.Conv2D(6, 3, strides=2, padding="same", name="c"),
                   input_shape=(9, 9, 2))
    assert costs["c"].macs == 5 * 5 * 6 * 3 * 3 * 2


def test_depthwise_conv2d() -> None:
    costs = _costs(keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="d"),
                   input_shape=(7, 7, 5))
    assert costs["d"].macs == 7 * 7 * 5 * 3 * 3
    assert costs["d"].params == 3 * 3 * 5


def test_dense() -> None:
    costs = _costs(keras.layers.Flatten(name="f"), keras.layers.Dense(7, name="d"),
                   input_shape=(3, 4, 2))
    assert costs["d"].macs == 24 * 7 and costs["d"].params == 24 * 7 + 7
    assert costs["f"].macs == 0


@pytest.mark.parametrize("layer_type", [keras.layers.MaxPooling2D, keras.layers.AveragePooling2D])
def test_pooling(layer_type: type) -> None:
    costs = _costs(layer_type(2, name="p"), input_shape=(8, 6, 3))
    assert costs["p"].macs == 4 * 3 * 3 * 2 * 2  # every output reads a 2x2 window


def test_global_pooling_and_add() -> None:
    inputs = keras.Input((5, 5, 4))
    added = keras.layers.Add(name="a")([inputs, inputs, inputs])
    pooled = keras.layers.GlobalAveragePooling2D(name="g")(added)
    costs = {c.name: c for c in layer_costs(keras.Model(inputs, pooled))}
    assert costs["a"].macs == 5 * 5 * 4 * 2  # two additions per output element
    assert costs["g"].macs == 5 * 5 * 4


def test_headline_counts_only_compute_layers() -> None:
    inputs = keras.Input((6, 6, 1))
    x = keras.layers.Conv2D(2, 3, name="c")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.MaxPooling2D(2, name="p")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(3, name="d")(x)
    model = keras.Model(inputs, x)
    conv, pool, dense = 4 * 4 * 2 * 9, 2 * 2 * 2 * 4, 8 * 3
    assert count_macs(model) == conv + dense
    assert count_macs(model, compute_only=False) == conv + pool + dense
