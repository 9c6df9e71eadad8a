"""Keras -> TFLite flatbuffer in one of four precisions.

Each precision is one small function that configures the converter; the registry maps
the config name to it, so a new precision is one function and one line.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from devices.errors import ExportError
from devices.tf_env import tf
from pipeline.conversion.tflite_inspect import check_fully_integer

ConverterSetup = Callable[[Any, np.ndarray], None]


def _representative_dataset(samples: np.ndarray) -> Callable[[], Iterator[list[np.ndarray]]]:
    def generate() -> Iterator[list[np.ndarray]]:
        for sample in samples:
            yield [sample[np.newaxis].astype(np.float32)]

    return generate


def _fp32(converter: Any, representative: np.ndarray) -> None:
    """Plain float conversion: nothing to configure."""


def _fp16(converter: Any, representative: np.ndarray) -> None:
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]


def _dynamic(converter: Any, representative: np.ndarray) -> None:
    # Without a representative dataset DEFAULT gives int8 weights, float activations.
    converter.optimizations = [tf.lite.Optimize.DEFAULT]


def _int8(converter: Any, representative: np.ndarray) -> None:
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = _representative_dataset(representative)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8


TFLITE_PRECISIONS: dict[str, ConverterSetup] = {
    "fp32": _fp32,
    "fp16": _fp16,
    "dynamic": _dynamic,
    "int8": _int8,
}

# Precisions whose file must hold no float tensor at all.
FULL_INTEGER_PRECISIONS = frozenset({"int8"})


def convert_tflite(model: Any, precision: str, representative: np.ndarray) -> bytes:
    """The flatbuffer bytes; ExportError when conversion fails or leaves float ops in int8."""
    if precision not in TFLITE_PRECISIONS:
        raise ExportError(
            f"unknown TFLite precision {precision!r}; expected one of "
            f"{', '.join(TFLITE_PRECISIONS)}"
        )
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    TFLITE_PRECISIONS[precision](converter, representative)
    try:
        with warnings.catch_warnings():
            # int8 I/O makes the converter ask for input statistics it then computes itself.
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
            content = converter.convert()
    except Exception as exc:  # the converter raises ConverterError, ValueError, RuntimeError
        raise ExportError(
            f"TFLite {precision} conversion of model {getattr(model, 'name', '?')!r} failed: "
            f"{' '.join(str(exc).split())[:2000]} (hint: an op without a TFLite kernel for this "
            "precision; try another precision or replace the layer)"
        ) from exc
    if precision in FULL_INTEGER_PRECISIONS:
        check_fully_integer(content, label=f"TFLite {precision}")
    return bytes(content)
