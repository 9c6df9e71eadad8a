"""Small building blocks shared by the zoo's models."""

from __future__ import annotations

from typing import Any

from devices.tf_env import keras

# Keras' default 0.99 needs thousands of steps before the moving statistics settle; the
# small datasets this pipeline targets train for a few hundred, so use a faster average.
BATCH_NORM_MOMENTUM = 0.9


def conv_block(
    x: Any, filters: int, kernel_size: int, *, name: str, strides: int = 1,
    padding: str = "same", batch_norm: bool = True, activation: bool = True,
) -> Any:
    """Conv2D (+ BatchNorm) (+ ReLU). With batch norm the conv has no bias: BN supplies it."""
    x = keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding=padding, use_bias=not batch_norm,
        name=f"{name}_conv",
    )(x)
    if batch_norm:
        x = keras.layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM, name=f"{name}_bn")(x)
    if activation:
        x = keras.layers.ReLU(name=f"{name}_relu")(x)
    return x


def depthwise_block(x: Any, *, name: str, strides: int = 1) -> Any:
    x = keras.layers.DepthwiseConv2D(
        3, strides=strides, padding="same", use_bias=False, name=f"{name}_dw"
    )(x)
    x = keras.layers.BatchNormalization(
        momentum=BATCH_NORM_MOMENTUM, name=f"{name}_dw_bn"
    )(x)
    return keras.layers.ReLU(name=f"{name}_dw_relu")(x)
