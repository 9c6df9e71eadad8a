"""Static int8 quantization of an ONNX model with onnxruntime: QDQ format, per-channel
int8 weights, activations calibrated (min/max) on the representative data.

The QDQ model keeps float inputs and outputs; QuantizeLinear/DequantizeLinear pairs
around each op carry the int8 arithmetic, which onnxruntime fuses into integer kernels.

The settings come from `export.onnx_int8`, a scheme of
pipeline.conversion.onnx_int8_schemes (which explains why the default is what it is).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from devices.errors import ArtifactError, ExportError
from pipeline.conversion.onnx_converter import check_onnx
from pipeline.conversion.onnx_int8_schemes import OnnxInt8Scheme

CALIBRATION_BATCH = 32

QUANT_TYPES = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}


class ArrayCalibrationReader(CalibrationDataReader):
    """Feeds the representative samples to the calibrator in small batches."""

    def __init__(self, input_name: str, samples: np.ndarray) -> None:
        self._batches = iter(
            [samples[start : start + CALIBRATION_BATCH].astype(np.float32)
             for start in range(0, len(samples), CALIBRATION_BATCH)]
        )
        self._input_name = input_name

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {self._input_name: batch}


def quantize_onnx_int8(
    fp32_content: bytes, representative: np.ndarray, settings: OnnxInt8Scheme
) -> bytes:
    """int8 QDQ model bytes from float ONNX bytes; ExportError if onnxruntime fails."""
    input_name = onnx.load_from_string(fp32_content).graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="onnx-int8-") as folder:
        float_path = Path(folder) / "model.onnx"
        prepared_path = Path(folder) / "model_prepared.onnx"
        quantized_path = Path(folder) / "model_int8.onnx"
        float_path.write_bytes(fp32_content)
        try:
            # Symbolic shape inference chokes on some tf2onnx graphs and is not needed here.
            quant_pre_process(float_path, prepared_path, skip_symbolic_shape=True)
            quantize_static(
                prepared_path, quantized_path,
                ArrayCalibrationReader(input_name, representative),
                quant_format=QuantFormat.QDQ, per_channel=settings.per_channel,
                reduce_range=settings.reduce_range,
                activation_type=QUANT_TYPES[settings.activations],
                weight_type=QUANT_TYPES[settings.weights],
            )
        except Exception as exc:  # onnxruntime raises assorted errors while rewriting
            raise ExportError(
                f"ONNX int8 static quantization failed: {' '.join(str(exc).split())[:2000]} (hint: "
                "check that the float ONNX model runs in onnxruntime)"
            ) from exc
        content = quantized_path.read_bytes()
    try:
        check_onnx(content, "ONNX int8")
    except ArtifactError as exc:
        raise ExportError(str(exc)) from exc
    return content
