"""ResNet-8 of the MLPerf Tiny image-classification benchmark: a 16-filter stem, three
residual stacks of 16, 32 and 64 filters (the last two strided, with 1x1 projection
shortcuts), global average pooling and a dense classifier."""

from __future__ import annotations

from typing import Any

from devices.tf_env import keras
from models.layers import conv_block
from models.registry import register_model, scaled


def _residual_stack(x: Any, filters: int, strides: int, name: str) -> Any:
    y = conv_block(x, filters, 3, strides=strides, name=f"{name}_a")
    y = conv_block(y, filters, 3, name=f"{name}_b", activation=False)
    if strides != 1 or x.shape[-1] != filters:
        x = conv_block(x, filters, 1, strides=strides, name=f"{name}_shortcut", activation=False)
    x = keras.layers.Add(name=f"{name}_add")([x, y])
    return keras.layers.ReLU(name=f"{name}_relu")(x)


@register_model("resnet8")
def resnet8(input_shape: tuple[int, ...], num_classes: int, width: float = 1.0) -> Any:
    """MLPerf Tiny ResNet-8: 16-32-64 filters with residual Adds (78k parameters at width 1)."""
    inputs = keras.Input(input_shape, name="input")
    x = conv_block(inputs, scaled(16, width), 3, name="stem")
    x = _residual_stack(x, scaled(16, width), 1, "stack1")
    x = _residual_stack(x, scaled(32, width), 2, "stack2")
    x = _residual_stack(x, scaled(64, width), 2, "stack3")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="resnet8")
