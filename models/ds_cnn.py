"""MobileNet-style depthwise-separable students: a stem conv, then blocks of 3x3 depthwise +
1x1 pointwise convs (each with BatchNorm and ReLU), global average pooling and a dense
classifier.

`ds_student` strides its stem (small grey inputs); `ds_cifar` keeps the stem at full
resolution, where a 32x32 colour image's detail is, and strides in the depthwise convs,
whose MACs are cheap. Its widths are multiples of 16 so the int8 SIMD kernels run without
remainder loops; at width 1 it holds 38k parameters and 4.4 M MACs on CIFAR-10 (inside a
Cortex-M4's flash and the 40k / 6 M limits of configs/cifar10.toml)."""

from __future__ import annotations

from typing import Any

from devices.tf_env import keras
from models.layers import conv_block, depthwise_block
from models.registry import register_model, scaled

Blocks = tuple[tuple[int, int], ...]  # (pointwise filters, depthwise stride) per block
DS_STUDENT_BLOCKS: Blocks = ((32, 2), (64, 1), (64, 1))
DS_CIFAR_BLOCKS: Blocks = ((64, 2), (64, 1), (128, 2), (128, 1))


def _depthwise_separable(
    name: str, stem: tuple[int, int], blocks: Blocks, input_shape: tuple[int, ...],
    num_classes: int, width: float,
) -> Any:
    stem_filters, stem_strides = stem
    inputs = keras.Input(input_shape, name="input")
    x = conv_block(inputs, scaled(stem_filters, width), 3, strides=stem_strides, name="stem")
    for index, (filters, strides) in enumerate(blocks, start=1):
        x = depthwise_block(x, name=f"block{index}", strides=strides)
        x = conv_block(x, scaled(filters, width), 1, name=f"block{index}_pw")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


@register_model("ds_student")
def ds_student(input_shape: tuple[int, ...], num_classes: int, width: float = 1.0) -> Any:
    """Depthwise-separable student: stem 16, blocks 32-64-64 (MobileNet-style)."""
    return _depthwise_separable("ds_student", (16, 2), DS_STUDENT_BLOCKS, input_shape,
                                num_classes, width)


@register_model("ds_cifar")
def ds_cifar(input_shape: tuple[int, ...], num_classes: int, width: float = 1.0) -> Any:
    """Depthwise-separable student for 32x32 colour: full-resolution stem 32, blocks
    64/2-64-128/2-128 (38k parameters, 4.4 M MACs on CIFAR-10)."""
    return _depthwise_separable("ds_cifar", (32, 1), DS_CIFAR_BLOCKS, input_shape,
                                num_classes, width)
