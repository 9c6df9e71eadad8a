"""The seed article's models (section 5.2): three 3x3 convs with 2x2 max pooling between,
then two dense layers. Teacher 32-64-64 / 64, student 16-32-32 / 32."""

from __future__ import annotations

from typing import Any

from devices.tf_env import keras
from models.layers import conv_block
from models.registry import register_model, scaled


def _seed_cnn(
    name: str, filters: tuple[int, int, int], dense_units: int,
    input_shape: tuple[int, ...], num_classes: int, width: float, batch_norm: bool,
) -> Any:
    inputs = keras.Input(input_shape, name="input")
    x = inputs
    for index, channels in enumerate(filters, start=1):
        x = conv_block(
            x, scaled(channels, width), 3, name=f"block{index}", padding="valid",
            batch_norm=batch_norm,
        )
        if index < len(filters):
            x = keras.layers.MaxPooling2D(2, name=f"block{index}_pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(scaled(dense_units, width), activation="relu", name="fc1")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


@register_model("seed_teacher")
def seed_teacher(
    input_shape: tuple[int, ...], num_classes: int, width: float = 1.0, batch_norm: bool = False
) -> Any:
    """Seed teacher: conv 32-64-64 + dense 64 (93k parameters on 28x28x1)."""
    return _seed_cnn("seed_teacher", (32, 64, 64), 64, input_shape, num_classes, width, batch_norm)


@register_model("seed_student")
def seed_student(
    input_shape: tuple[int, ...], num_classes: int, width: float = 1.0, batch_norm: bool = False
) -> Any:
    """Seed student: conv 16-32-32 + dense 32 (24k parameters on 28x28x1)."""
    return _seed_cnn("seed_student", (16, 32, 32), 32, input_shape, num_classes, width, batch_norm)
