"""Session fixtures: tiny full-int8 .tflite models converted with TensorFlow, as the export
stage makes them (int8 inputs and outputs, representative dataset)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

INPUT_SHAPE = (12, 12, 1)
CLASSES = 4


@dataclass(frozen=True)
class ConvertedModel:
    path: Path
    samples: np.ndarray  # float32 NHWC, as inputs.npz `x`
    labels: np.ndarray


def _convert(model, samples: np.ndarray, path: Path) -> Path:
    from pipeline.conversion.tflite_converter import convert_tflite

    path.write_bytes(convert_tflite(model, "int8", samples[:32]))
    return path


def _samples(seed: int, count: int = 40, shape: tuple[int, ...] = INPUT_SHAPE
             ) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, (count, *shape)).astype(np.float32)
    y = rng.integers(0, CLASSES, count).astype(np.int64)
    return x, y


def _zoo_model(name: str, width: float, seed: int, folder: Path,
               shape: tuple[int, ...] = INPUT_SHAPE) -> ConvertedModel:
    from devices.tf_env import tf
    from models.registry import create_model

    tf.keras.utils.set_random_seed(seed)
    model = create_model(name, shape, CLASSES, width=width)
    x, y = _samples(seed, shape=shape)
    return ConvertedModel(_convert(model, x, folder / f"{name}_int8.tflite"), x, y)


@pytest.fixture(scope="session")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mcu_models")


@pytest.fixture(scope="session")
def resnet8_int8(model_folder: Path) -> ConvertedModel:
    """ResNet-8 of the model zoo at width 0.25 (residual Adds, strided 1x1 shortcuts)."""
    return _zoo_model("resnet8", 0.25, 1, model_folder)


@pytest.fixture(scope="session")
def ds_student_int8(model_folder: Path) -> ConvertedModel:
    """The depthwise-separable student of the model zoo at width 0.25."""
    return _zoo_model("ds_student", 0.25, 2, model_folder)


@pytest.fixture(scope="session")
def seed_student_int8(model_folder: Path) -> ConvertedModel:
    """The seed article's student of the model zoo at width 0.5 on 28x28 (conv, pool, dense)."""
    return _zoo_model("seed_student", 0.5, 4, model_folder, shape=(28, 28, 1))


@pytest.fixture(scope="session")
def small_cnn_int8(model_folder: Path) -> ConvertedModel:
    """conv -> max pool -> depthwise -> average pool -> flatten -> dense, with ReLU6."""
    from devices.tf_env import keras, tf

    tf.keras.utils.set_random_seed(3)
    inputs = keras.Input(INPUT_SHAPE)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    x = keras.layers.ReLU(max_value=6.0)(x)
    x = keras.layers.AveragePooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(CLASSES)(x)
    x_data, y_data = _samples(3)
    path = _convert(keras.Model(inputs, outputs), x_data, model_folder / "small_cnn.tflite")
    return ConvertedModel(path, x_data, y_data)
