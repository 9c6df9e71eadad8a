"""Keras -> ONNX with tf2onnx, and onnx's checker on every produced model."""

from __future__ import annotations

from typing import Any

import onnx

from devices.errors import ArtifactError, ExportError
from devices.tf_env import tf  # before tf2onnx: it imports TensorFlow itself

ONNX_INPUT_NAME = "input"


def check_onnx(content: bytes, label: str) -> onnx.ModelProto:
    """Parse and run onnx.checker (full check, with shape inference); ArtifactError if bad."""
    try:
        model = onnx.load_from_string(content)
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # DecodeError, ValidationError, InferenceError
        raise ArtifactError(
            f"{label} is not a valid ONNX model: {' '.join(str(exc).split())[:1000]} "
            "(hint: the file is corrupt or truncated, or the converter produced an invalid graph)"
        ) from exc
    return model


def convert_onnx(model: Any, opset: int) -> bytes:
    """Serialised ONNX model with one float input named `input` and a dynamic batch."""
    import tf2onnx  # heavy: imported only when ONNX is asked for

    shape = (None, *(int(d) for d in model.input_shape[1:]))
    signature = (tf.TensorSpec(shape, tf.float32, name=ONNX_INPUT_NAME),)
    try:
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=opset)
    except Exception as exc:  # tf2onnx raises plain Exceptions for unsupported ops
        raise ExportError(
            f"ONNX conversion (opset {opset}) of model {getattr(model, 'name', '?')!r} "
            f"failed: {' '.join(str(exc).split())[:2000]} "
            "(hint: try another export.opset or replace the unsupported layer)"
        ) from exc
    content = proto.SerializeToString()
    try:
        check_onnx(content, f"ONNX fp32 (opset {opset})")
    except ArtifactError as exc:
        raise ExportError(str(exc)) from exc
    return content
