"""A MobileNet-style depthwise-separable student: a strided stem conv, then blocks of
3x3 depthwise + 1x1 pointwise convs (each with BatchNorm and ReLU), global average
pooling and a dense classifier."""

from __future__ import annotations

from typing import Any

from devices.tf_env import keras
from models.layers import conv_block, depthwise_block
from models.registry import register_model, scaled

# (pointwise filters, depthwise stride) per block
BLOCKS: tuple[tuple[int, int], ...] = ((32, 2), (64, 1), (64, 1))


@register_model("ds_student")
def ds_student(input_shape: tuple[int, ...], num_classes: int, width: float = 1.0) -> Any:
    """Depthwise-separable student: stem 16, blocks 32-64-64 (MobileNet-style)."""
    inputs = keras.Input(input_shape, name="input")
    x = conv_block(inputs, scaled(16, width), 3, strides=2, name="stem")
    for index, (filters, strides) in enumerate(BLOCKS, start=1):
        x = depthwise_block(x, name=f"block{index}", strides=strides)
        x = conv_block(x, scaled(filters, width), 1, name=f"block{index}_pw")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="ds_student")
